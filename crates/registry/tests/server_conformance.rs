//! The checklist of the OCI distribution-spec conformance suite (pull, push, content
//! discovery, content management, referrers), written for stencil from the spec, run
//! against stencil's registry server and against the CNCF `docker-registry`.
//!
//! Running the same checks on both proves the checks themselves: where the reference
//! registry passes a check, the check is right about the spec's behaviour. Where the two
//! differ, [`DOCKER_REGISTRY_DIFFERS`] names the check and why; the test fails if that
//! list is incomplete *or* stale, so it stays the documentation of the differences.

mod conformance;

use conformance::*;
use stencil_registry::server::ServerConfig;

/// Checks that `docker-registry` (distribution 2.8, Debian's package) fails, and why.
/// stencil passes all of them.
const DOCKER_REGISTRY_DIFFERS: &[(&str, &str)] = &[
    (
        "push monolithic: single POST ?digest= with the blob is 201",
        "distribution 2.8 ignores the body of a POST and opens a session (202), which the spec allows",
    ),
    (
        "push chunked: an out-of-order chunk is 416",
        "distribution 2.8 accepts the chunk (202) and only then breaks the session",
    ),
    (
        "push chunked: repeating a chunk is 416",
        "distribution 2.8 appends the repeated chunk (202) and fails the upload later",
    ),
    (
        "push chunked: a 416 reports the Range received",
        "follows from the 202 above",
    ),
    (
        "discovery: tags list is in lexical order",
        "distribution 2.8 lists tags in storage order",
    ),
    (
        "discovery: n=2 gives the first two tags",
        "distribution 2.8 does not page tags lists: n and last are ignored",
    ),
    (
        "discovery: n=2 gives a Link to the next page",
        "distribution 2.8 does not page tags lists",
    ),
    (
        "discovery: last=multi continues after it",
        "distribution 2.8 does not page tags lists",
    ),
    (
        "discovery: the last page has no Link",
        "distribution 2.8 does not page tags lists (it returns every tag)",
    ),
    (
        "push: GET of an unknown session is 404 BLOB_UPLOAD_UNKNOWN",
        "distribution 2.8 answers 404 BLOB_UPLOAD_INVALID for a session URL without its _state token",
    ),
    (
        "manifests: PUT with a subject answers OCI-Subject",
        "distribution 2.8 predates OCI distribution v1.1 and ignores subject",
    ),
    (
        "referrers: GET lists the referrer",
        "distribution 2.8 has no referrers API (404)",
    ),
    (
        "referrers: artifactType filter is applied and announced",
        "distribution 2.8 has no referrers API (404)",
    ),
    (
        "referrers: unknown subject gives an empty index",
        "distribution 2.8 has no referrers API (404)",
    ),
    (
        "discovery: /v1/search finds the repository",
        "distribution has no Docker Hub search endpoint (404)",
    ),
    (
        "errors: invalid repository name is 400 NAME_INVALID",
        "distribution's router does not match upper-case names and answers 404",
    ),
    (
        "management: DELETE of a tag is 202",
        "distribution 2.8 cannot delete a tag through the manifests endpoint",
    ),
    (
        "management: GET of a deleted tag is 404",
        "follows from the tag deletion distribution 2.8 refuses",
    ),
];

/// The outcome of each named check on one registry.
struct Checks {
    target: &'static str,
    results: Vec<(String, Result<(), String>)>,
}

impl Checks {
    fn new(target: &'static str) -> Checks {
        Checks {
            target,
            results: Vec::new(),
        }
    }

    /// The one check helper: `reply` must have one of `statuses` and, when `code` is
    /// given, carry that OCI error code.
    fn check(&mut self, name: &str, reply: &Reply, statuses: &[u16], code: Option<&str>) -> bool {
        let mut problems = Vec::new();
        if !statuses.contains(&reply.status) {
            problems.push(format!("status {} not in {statuses:?}", reply.status));
        }
        if let Some(code) = code
            && !reply.error_codes().iter().any(|found| found == code)
        {
            problems.push(format!(
                "error code {code} missing (codes {:?})",
                reply.error_codes()
            ));
        }
        let outcome = if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{}; body {:?}",
                problems.join(", "),
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
            ))
        };
        let passed = outcome.is_ok();
        self.results.push((name.to_owned(), outcome));
        passed
    }

    /// A check on a condition computed by the caller.
    fn expect(&mut self, name: &str, condition: bool, detail: impl FnOnce() -> String) -> bool {
        self.results.push((
            name.to_owned(),
            if condition { Ok(()) } else { Err(detail()) },
        ));
        condition
    }

    fn failures(&self) -> Vec<(&str, &str)> {
        self.results
            .iter()
            .filter_map(|(name, outcome)| {
                outcome
                    .as_ref()
                    .err()
                    .map(|why| (name.as_str(), why.as_str()))
            })
            .collect()
    }

    fn report(&self) -> String {
        self.results
            .iter()
            .map(|(name, outcome)| match outcome {
                Ok(()) => format!("  ok    {name}"),
                Err(why) => format!("  FAIL  {name}: {why}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Pushes `content` as one monolithic `POST ?digest=`; a registry that does not take
/// single-POST uploads answers 202 with a session (the spec allows it), which is then
/// closed with a `PUT` of the whole blob. Returns the first reply.
async fn push_blob(target: &Target, repo: &str, content: &[u8]) -> Reply {
    let digest = digest_of(content);
    let reply = target
        .send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[("content-type", "application/octet-stream")],
            content.to_vec(),
        )
        .await;
    if reply.status == 202
        && let Some(session) = reply.location()
    {
        let join = if session.contains('?') { '&' } else { '?' };
        let closed = target
            .send(
                "PUT",
                &format!("{session}{join}digest={digest}"),
                &[("content-type", "application/octet-stream")],
                content.to_vec(),
            )
            .await;
        assert_eq!(
            closed.status, 201,
            "{}: closing the upload of {digest} failed: {closed:?}",
            target.name
        );
    }
    reply
}

/// Runs the whole checklist against `target`.
async fn run_suite(target: &Target) -> Checks {
    let mut c = Checks::new(target.name);
    let repo = "conformance/one";
    let other = "conformance/two";
    let stranger = "conformance/three";

    // ---- base
    let reply = target.get("/v2/").await;
    c.check("base: GET /v2/ is 200", &reply, &[200], None);
    c.expect(
        "base: Docker-Distribution-API-Version is registry/2.0",
        reply.header("docker-distribution-api-version") == Some("registry/2.0"),
        || format!("{:?}", reply.headers),
    );

    // ---- push: blobs
    let layer_a = bytes(1, 3000);
    let layer_b = bytes(2, 5000);
    let layer_c = bytes(3, 1000);
    let config = config_json(&[
        digest_of(&layer_a),
        digest_of(&layer_b),
        digest_of(&layer_c),
    ]);

    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_a)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "push: GET of a blob not yet pushed is 404 BLOB_UNKNOWN",
        &reply,
        &[404],
        Some("BLOB_UNKNOWN"),
    );

    let reply = push_blob(target, repo, &config).await;
    c.check(
        "push monolithic: single POST ?digest= with the blob is 201",
        &reply,
        &[201],
        None,
    );
    c.expect(
        "push monolithic: POST ?digest= answers a Location",
        reply.location().is_some(),
        || format!("{:?}", reply.headers),
    );

    let reply = target
        .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
        .await;
    c.check(
        "push: POST opens an upload session (202)",
        &reply,
        &[202],
        None,
    );
    let session = reply.location().unwrap_or_default();
    c.expect(
        "push: the session has a Location",
        !session.is_empty(),
        || format!("{:?}", reply.headers),
    );
    let join = if session.contains('?') { '&' } else { '?' };
    let reply = target
        .send(
            "PUT",
            &format!("{session}{join}digest={}", digest_of(&layer_a)),
            &[("content-type", "application/octet-stream")],
            layer_a.clone(),
        )
        .await;
    c.check(
        "push monolithic: PUT with the whole blob closes the session (201)",
        &reply,
        &[201],
        None,
    );
    c.expect(
        "push monolithic: PUT answers Docker-Content-Digest",
        reply.header("docker-content-digest") == Some(digest_of(&layer_a).as_str()),
        || format!("{:?}", reply.headers),
    );

    // Streamed: PATCH without Content-Range, then PUT without body.
    let reply = target
        .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
        .await;
    let session = reply.location().unwrap_or_default();
    let reply = target
        .send(
            "PATCH",
            &session,
            &[("content-type", "application/octet-stream")],
            layer_b.clone(),
        )
        .await;
    c.check(
        "push streamed: PATCH with the blob is 202",
        &reply,
        &[202],
        None,
    );
    c.expect(
        "push streamed: PATCH answers Range 0-(size-1)",
        reply.header("range") == Some(format!("0-{}", layer_b.len() - 1).as_str()),
        || format!("{:?}", reply.headers),
    );
    let session = reply.location().unwrap_or(session);
    let join = if session.contains('?') { '&' } else { '?' };
    let reply = target
        .send(
            "PUT",
            &format!("{session}{join}digest={}", digest_of(&layer_b)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "push streamed: PUT with the digest is 201",
        &reply,
        &[201],
        None,
    );

    // Chunked, with order enforced: an out-of-order chunk on a fresh session, then a
    // well-ordered upload on another.
    let (chunk1, chunk2) = layer_c.split_at(400);
    let out_of_order = format!("{}-{}", chunk1.len(), layer_c.len() - 1);
    let reply = target
        .send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0")],
            vec![],
        )
        .await;
    let session = reply.location().unwrap_or_default();
    let reply = target
        .send(
            "PATCH",
            &session,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &out_of_order),
            ],
            chunk2.to_vec(),
        )
        .await;
    c.check(
        "push chunked: an out-of-order chunk is 416",
        &reply,
        &[416],
        None,
    );
    let reply = target
        .send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0")],
            vec![],
        )
        .await;
    let session = reply.location().unwrap_or_default();
    let first = format!("0-{}", chunk1.len() - 1);
    let reply = target
        .send(
            "PATCH",
            &session,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &first),
            ],
            chunk1.to_vec(),
        )
        .await;
    c.check("push chunked: the first chunk is 202", &reply, &[202], None);
    c.expect(
        "push chunked: Range after the first chunk",
        reply.header("range") == Some(first.as_str()),
        || format!("{:?}", reply.headers),
    );
    let session = reply.location().unwrap_or(session);
    let reply = target.send("GET", &session, &[], vec![]).await;
    c.check(
        "push chunked: GET of the session is 204",
        &reply,
        &[204],
        None,
    );
    c.expect(
        "push chunked: GET of the session reports the Range",
        reply.header("range") == Some(first.as_str()),
        || format!("{:?}", reply.headers),
    );
    let join = if session.contains('?') { '&' } else { '?' };
    let reply = target
        .send(
            "PUT",
            &format!("{session}{join}digest={}", digest_of(&layer_c)),
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &out_of_order),
            ],
            chunk2.to_vec(),
        )
        .await;
    c.check(
        "push chunked: PUT with the final chunk is 201",
        &reply,
        &[201],
        None,
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_c)),
            &[],
            vec![],
        )
        .await;
    c.expect(
        "push chunked: the blob reads back whole",
        reply.status == 200 && reply.body == layer_c,
        || format!("status {}, {} bytes", reply.status, reply.body.len()),
    );

    // A chunk sent twice, on a session of its own since a registry that takes it breaks
    // the session.
    let reply = target
        .send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0")],
            vec![],
        )
        .await;
    let session = reply.location().unwrap_or_default();
    let reply = target
        .send(
            "PATCH",
            &session,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &first),
            ],
            chunk1.to_vec(),
        )
        .await;
    let session = reply.location().unwrap_or(session);
    let again = target
        .send(
            "PATCH",
            &session,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", &first),
            ],
            chunk1.to_vec(),
        )
        .await;
    c.check(
        "push chunked: repeating a chunk is 416",
        &again,
        &[416],
        None,
    );
    c.expect(
        "push chunked: a 416 reports the Range received",
        again.header("range") == Some(first.as_str()),
        || format!("{:?}", again.headers),
    );

    // Wrong digests and unknown sessions.
    let reply = target
        .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
        .await;
    let session = reply.location().unwrap_or_default();
    let join = if session.contains('?') { '&' } else { '?' };
    let reply = target
        .send(
            "PUT",
            &format!("{session}{join}digest={}", digest_of(b"something else")),
            &[("content-type", "application/octet-stream")],
            b"some bytes".to_vec(),
        )
        .await;
    c.check(
        "push: PUT with a digest that does not match is 400 DIGEST_INVALID",
        &reply,
        &[400],
        Some("DIGEST_INVALID"),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/uploads/00000000-0000-0000-0000-000000000000"),
            &[],
            vec![],
        )
        .await;
    c.check(
        "push: GET of an unknown session is 404 BLOB_UPLOAD_UNKNOWN",
        &reply,
        &[404],
        Some("BLOB_UPLOAD_UNKNOWN"),
    );
    let reply = target
        .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
        .await;
    let session = reply.location().unwrap_or_default();
    let reply = target.send("DELETE", &session, &[], vec![]).await;
    c.check("push: DELETE of a session is 204", &reply, &[204], None);
    let reply = target.send("GET", &session, &[], vec![]).await;
    c.check(
        "push: a cancelled session is 404 BLOB_UPLOAD_UNKNOWN",
        &reply,
        &[404],
        Some("BLOB_UPLOAD_UNKNOWN"),
    );

    // Cross-repository mount.
    let reply = target
        .send(
            "POST",
            &format!(
                "/v2/{other}/blobs/uploads/?mount={}&from={repo}",
                digest_of(&layer_a)
            ),
            &[],
            vec![],
        )
        .await;
    c.check("push: cross-repository mount is 201", &reply, &[201], None);
    c.expect(
        "push: the mount answers the blob's Location",
        reply
            .location()
            .is_some_and(|l| l.ends_with(&digest_of(&layer_a))),
        || format!("{:?}", reply.headers),
    );
    let reply = target
        .send(
            "HEAD",
            &format!("/v2/{other}/blobs/{}", digest_of(&layer_a)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "push: the mounted blob is in the target repository",
        &reply,
        &[200],
        None,
    );
    let reply = target
        .send(
            "POST",
            &format!(
                "/v2/{other}/blobs/uploads/?mount={}&from={repo}",
                digest_of(b"never pushed")
            ),
            &[],
            vec![],
        )
        .await;
    c.check(
        "push: mounting an unknown blob opens a session (202)",
        &reply,
        &[202],
        None,
    );
    let reply = target
        .send(
            "POST",
            &format!("/v2/{other}/blobs/uploads/?mount={}", digest_of(&layer_b)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "push: mount without from is 201 or 202",
        &reply,
        &[201, 202],
        None,
    );

    // ---- push: manifests
    let manifest = manifest_json(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[
            (OCI_LAYER, &layer_a),
            (OCI_LAYER, &layer_b),
            (OCI_LAYER, &layer_c),
        ],
        serde_json::json!({}),
    );
    let manifest_digest = digest_of(&manifest);
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check(
        "manifests: GET of a tag not yet pushed is 404 MANIFEST_UNKNOWN",
        &reply,
        &[404],
        Some("MANIFEST_UNKNOWN"),
    );
    for tag in ["v1", "v2", "v3", "v4"] {
        let reply = target
            .send(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            )
            .await;
        c.check(
            &format!("manifests: PUT by tag {tag} is 201"),
            &reply,
            &[201],
            None,
        );
        c.expect(
            &format!("manifests: PUT by tag {tag} answers Location and Docker-Content-Digest"),
            reply.location().is_some()
                && reply.header("docker-content-digest") == Some(manifest_digest.as_str()),
            || format!("{:?}", reply.headers),
        );
    }
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/{manifest_digest}"),
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    c.check("manifests: PUT by digest is 201", &reply, &[201], None);
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/{}", digest_of(b"other")),
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    c.check(
        "manifests: PUT by a digest that does not match is 400 DIGEST_INVALID",
        &reply,
        &[400],
        Some("DIGEST_INVALID"),
    );
    let missing_layer = bytes(9, 100);
    let dangling = manifest_json(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &missing_layer)],
        serde_json::json!({}),
    );
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/dangling"),
            &[("content-type", OCI_MANIFEST)],
            dangling,
        )
        .await;
    c.check(
        "manifests: a manifest naming a missing blob is 400 MANIFEST_BLOB_UNKNOWN",
        &reply,
        &[400],
        Some("MANIFEST_BLOB_UNKNOWN"),
    );
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/broken"),
            &[("content-type", OCI_MANIFEST)],
            b"{not json".to_vec(),
        )
        .await;
    c.check(
        "manifests: invalid JSON is 400 MANIFEST_INVALID",
        &reply,
        &[400],
        Some("MANIFEST_INVALID"),
    );
    let index_typed = manifest_json(
        OCI_INDEX,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &layer_a)],
        serde_json::json!({}),
    );
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/confused"),
            &[("content-type", OCI_INDEX)],
            index_typed,
        )
        .await;
    c.check(
        "manifests: index media type over manifest content is 400 MANIFEST_INVALID",
        &reply,
        &[400],
        Some("MANIFEST_INVALID"),
    );

    // Docker schema 2 and an index.
    let docker_config = config_json(&[digest_of(&layer_a)]);
    push_blob(target, repo, &docker_config).await;
    let docker_manifest = manifest_json(
        DOCKER_MANIFEST,
        (DOCKER_CONFIG, &docker_config),
        &[(DOCKER_LAYER, &layer_a)],
        serde_json::json!({}),
    );
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/docker"),
            &[("content-type", DOCKER_MANIFEST)],
            docker_manifest.clone(),
        )
        .await;
    c.check(
        "manifests: docker schema 2 PUT is 201",
        &reply,
        &[201],
        None,
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/docker"),
            &[("accept", DOCKER_MANIFEST)],
            vec![],
        )
        .await;
    c.expect(
        "manifests: docker schema 2 reads back with its media type",
        reply.status == 200
            && reply.header("content-type") == Some(DOCKER_MANIFEST)
            && reply.body == docker_manifest,
        || format!("status {} {:?}", reply.status, reply.headers),
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(), "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": DOCKER_MANIFEST, "digest": digest_of(&docker_manifest), "size": docker_manifest.len(), "platform": { "os": "linux", "architecture": "arm64" } },
        ],
    }))
    .unwrap_or_default();
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/multi"),
            &[("content-type", OCI_INDEX)],
            index.clone(),
        )
        .await;
    c.check("manifests: index PUT is 201", &reply, &[201], None);
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/multi"),
            &[("accept", OCI_INDEX)],
            vec![],
        )
        .await;
    c.expect(
        "manifests: the index reads back byte for byte",
        reply.status == 200
            && reply.body == index
            && reply.header("content-type") == Some(OCI_INDEX),
        || format!("status {}", reply.status),
    );

    // ---- pull
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check("pull: GET manifest by tag is 200", &reply, &[200], None);
    c.expect(
        "pull: the manifest by tag is byte for byte the pushed one",
        reply.body == manifest,
        || format!("{} bytes", reply.body.len()),
    );
    c.expect(
        "pull: manifest Content-Type and Docker-Content-Digest",
        reply.header("content-type") == Some(OCI_MANIFEST)
            && reply.header("docker-content-digest") == Some(manifest_digest.as_str()),
        || format!("{:?}", reply.headers),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{manifest_digest}"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check("pull: GET manifest by digest is 200", &reply, &[200], None);
    let reply = target
        .send(
            "HEAD",
            &format!("/v2/{repo}/manifests/v1"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check("pull: HEAD manifest by tag is 200", &reply, &[200], None);
    c.expect(
        "pull: HEAD manifest has Content-Length and no body",
        reply.header("content-length") == Some(manifest.len().to_string().as_str())
            && reply.body.is_empty(),
        || format!("{:?}", reply.headers),
    );
    let reply = target
        .send(
            "HEAD",
            &format!("/v2/{repo}/manifests/{}", digest_of(b"nothing")),
            &[],
            vec![],
        )
        .await;
    c.check(
        "pull: HEAD of an unknown manifest is 404",
        &reply,
        &[404],
        None,
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{}", digest_of(b"nothing")),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check(
        "pull: GET of an unknown digest is 404 MANIFEST_UNKNOWN",
        &reply,
        &[404],
        Some("MANIFEST_UNKNOWN"),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("accept", DOCKER_MANIFEST)],
            vec![],
        )
        .await;
    c.check(
        "pull: an OCI manifest is not sent to a client accepting only docker schema 2",
        &reply,
        &[404],
        Some("MANIFEST_UNKNOWN"),
    );
    let reply = target
        .send("GET", "/v2/conformance/nosuch/manifests/v1", &[], vec![])
        .await;
    c.check(
        "pull: GET in an unknown repository is 404",
        &reply,
        &[404],
        None,
    );

    let reply = target
        .send(
            "HEAD",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_a)),
            &[],
            vec![],
        )
        .await;
    c.check("pull: HEAD blob is 200", &reply, &[200], None);
    c.expect(
        "pull: HEAD blob has Content-Length and Docker-Content-Digest",
        reply.header("content-length") == Some(layer_a.len().to_string().as_str())
            && reply.header("docker-content-digest") == Some(digest_of(&layer_a).as_str()),
        || format!("{:?}", reply.headers),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_a)),
            &[],
            vec![],
        )
        .await;
    c.expect(
        "pull: GET blob is 200 with the pushed bytes",
        reply.status == 200 && reply.body == layer_a,
        || format!("status {}", reply.status),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_a)),
            &[("range", "bytes=10-19")],
            vec![],
        )
        .await;
    c.check("pull: a Range request is 206", &reply, &[206], None);
    c.expect(
        "pull: a Range request returns that range with Content-Range",
        reply.body == layer_a[10..20]
            && reply.header("content-range")
                == Some(format!("bytes 10-19/{}", layer_a.len()).as_str()),
        || format!("{:?} {} bytes", reply.headers, reply.body.len()),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_a)),
            &[("range", "bytes=999999-")],
            vec![],
        )
        .await;
    c.check("pull: an unsatisfiable Range is 416", &reply, &[416], None);
    let reply = target
        .send(
            "HEAD",
            &format!("/v2/{repo}/blobs/{}", digest_of(b"nothing")),
            &[],
            vec![],
        )
        .await;
    c.check("pull: HEAD of an unknown blob is 404", &reply, &[404], None);
    let reply = target
        .send(
            "GET",
            &format!("/v2/{stranger}/blobs/{}", digest_of(&layer_a)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "pull: a blob of another repository is 404 BLOB_UNKNOWN",
        &reply,
        &[404],
        Some("BLOB_UNKNOWN"),
    );

    // ---- content discovery
    let reply = target.get(&format!("/v2/{repo}/tags/list")).await;
    let tags: Vec<String> = reply.json()["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    c.check("discovery: tags list is 200", &reply, &[200], None);
    let mut sorted = tags.clone();
    sorted.sort();
    c.expect(
        "discovery: tags list holds every tag",
        sorted == ["docker", "multi", "v1", "v2", "v3", "v4"],
        || format!("{tags:?}"),
    );
    c.expect(
        "discovery: tags list is in lexical order",
        tags == sorted,
        || format!("{tags:?}"),
    );
    let reply = target.get(&format!("/v2/{repo}/tags/list?n=2")).await;
    c.expect(
        "discovery: n=2 gives the first two tags",
        reply.json()["tags"] == serde_json::json!(["docker", "multi"]),
        || String::from_utf8_lossy(&reply.body).into_owned(),
    );
    c.expect(
        "discovery: n=2 gives a Link to the next page",
        reply
            .header("link")
            .is_some_and(|link| link.contains("last=multi") && link.contains("rel=\"next\"")),
        || format!("{:?}", reply.headers),
    );
    let reply = target
        .get(&format!("/v2/{repo}/tags/list?n=2&last=multi"))
        .await;
    c.expect(
        "discovery: last=multi continues after it",
        reply.json()["tags"] == serde_json::json!(["v1", "v2"]),
        || String::from_utf8_lossy(&reply.body).into_owned(),
    );
    let reply = target
        .get(&format!("/v2/{repo}/tags/list?n=10&last=v3"))
        .await;
    c.expect(
        "discovery: the last page has no Link",
        reply.json()["tags"] == serde_json::json!(["v4"]) && reply.header("link").is_none(),
        || {
            format!(
                "{:?} {}",
                reply.headers,
                String::from_utf8_lossy(&reply.body)
            )
        },
    );
    let reply = target.get("/v2/conformance/nosuch/tags/list").await;
    c.check(
        "discovery: tags of an unknown repository is 404 NAME_UNKNOWN",
        &reply,
        &[404],
        Some("NAME_UNKNOWN"),
    );
    let reply = target.get("/v2/_catalog").await;
    let repositories = reply.json()["repositories"].clone();
    c.expect(
        "discovery: the catalog lists the repositories",
        reply.status == 200 && repositories == serde_json::json!([repo, other]),
        || format!("{} {repositories}", reply.status),
    );
    let reply = target.get("/v2/_catalog?n=1").await;
    c.expect(
        "discovery: catalog n=1 pages with a Link",
        reply.json()["repositories"] == serde_json::json!([repo])
            && reply
                .header("link")
                .is_some_and(|link| link.contains("rel=\"next\"")),
        || format!("{:?}", reply.headers),
    );
    let reply = target.get("/v1/search?q=one&n=10").await;
    c.expect(
        "discovery: /v1/search finds the repository",
        reply.status == 200 && reply.json()["results"][0]["name"] == repo,
        || format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body)),
    );
    let reply = target.get("/v2/Conformance/tags/list").await;
    c.check(
        "errors: invalid repository name is 400 NAME_INVALID",
        &reply,
        &[400],
        Some("NAME_INVALID"),
    );

    // ---- referrers
    let empty = b"{}".to_vec();
    push_blob(target, repo, &empty).await;
    let referrer = manifest_json(
        OCI_MANIFEST,
        ("application/vnd.oci.empty.v1+json", &empty),
        &[],
        serde_json::json!({
            "artifactType": "application/vnd.example.sbom",
            "subject": { "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len() },
            "annotations": { "org.example.kind": "sbom" },
        }),
    );
    let reply = target
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/{}", digest_of(&referrer)),
            &[("content-type", OCI_MANIFEST)],
            referrer.clone(),
        )
        .await;
    c.check("manifests: PUT with a subject is 201", &reply, &[201], None);
    c.expect(
        "manifests: PUT with a subject answers OCI-Subject",
        reply.header("oci-subject") == Some(manifest_digest.as_str()),
        || format!("{:?}", reply.headers),
    );
    let reply = target
        .get(&format!("/v2/{repo}/referrers/{manifest_digest}"))
        .await;
    let listed = reply.json()["manifests"].clone();
    c.expect(
        "referrers: GET lists the referrer",
        reply.status == 200
            && listed[0]["digest"] == digest_of(&referrer)
            && listed[0]["artifactType"] == "application/vnd.example.sbom"
            && listed[0]["annotations"]["org.example.kind"] == "sbom",
        || format!("{} {listed}", reply.status),
    );
    let reply = target
        .get(&format!(
            "/v2/{repo}/referrers/{manifest_digest}?artifactType=application%2Fvnd.example.other"
        ))
        .await;
    c.expect(
        "referrers: artifactType filter is applied and announced",
        reply.status == 200
            && reply.json()["manifests"] == serde_json::json!([])
            && reply.header("oci-filters-applied") == Some("artifactType"),
        || format!("{} {:?}", reply.status, reply.headers),
    );
    let reply = target
        .get(&format!(
            "/v2/{repo}/referrers/{}",
            digest_of(b"no such subject")
        ))
        .await;
    c.expect(
        "referrers: unknown subject gives an empty index",
        reply.status == 200
            && reply.json()["manifests"] == serde_json::json!([])
            && reply.header("content-type") == Some(OCI_INDEX),
        || format!("{} {:?}", reply.status, reply.headers),
    );

    // ---- content management
    let reply = target
        .send("DELETE", &format!("/v2/{repo}/manifests/v4"), &[], vec![])
        .await;
    c.check("management: DELETE of a tag is 202", &reply, &[202], None);
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/v4"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check(
        "management: GET of a deleted tag is 404",
        &reply,
        &[404],
        None,
    );
    let reply = target
        .send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{manifest_digest}"),
            &[],
            vec![],
        )
        .await;
    c.check(
        "management: DELETE of a manifest by digest is 202",
        &reply,
        &[202],
        None,
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{manifest_digest}"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check(
        "management: GET of a deleted manifest is 404 MANIFEST_UNKNOWN",
        &reply,
        &[404],
        Some("MANIFEST_UNKNOWN"),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    c.check(
        "management: tags of a deleted manifest are gone",
        &reply,
        &[404],
        None,
    );
    let reply = target
        .send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{}", digest_of(b"nothing")),
            &[],
            vec![],
        )
        .await;
    c.check(
        "management: DELETE of an unknown manifest is 404 MANIFEST_UNKNOWN",
        &reply,
        &[404],
        Some("MANIFEST_UNKNOWN"),
    );
    let reply = target
        .send(
            "DELETE",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_b)),
            &[],
            vec![],
        )
        .await;
    c.check("management: DELETE of a blob is 202", &reply, &[202], None);
    let reply = target
        .send(
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest_of(&layer_b)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "management: GET of a deleted blob is 404 BLOB_UNKNOWN",
        &reply,
        &[404],
        Some("BLOB_UNKNOWN"),
    );
    let reply = target
        .send(
            "DELETE",
            &format!("/v2/{repo}/blobs/{}", digest_of(b"nothing")),
            &[],
            vec![],
        )
        .await;
    c.check(
        "management: DELETE of an unknown blob is 404 BLOB_UNKNOWN",
        &reply,
        &[404],
        Some("BLOB_UNKNOWN"),
    );
    let reply = target
        .send(
            "GET",
            &format!("/v2/{other}/blobs/{}", digest_of(&layer_a)),
            &[],
            vec![],
        )
        .await;
    c.check(
        "management: deleting in one repository leaves a mounted copy in another",
        &reply,
        &[200],
        None,
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stencil_passes_the_checklist() {
    let server = StencilServer::start(ServerConfig::loopback()).await;
    let checks = run_suite(&Target::new("stencil", &server.host)).await;
    let failures = checks.failures();
    assert!(
        failures.is_empty(),
        "stencil failed {} of {} checks:\n{}\nstore:\n{}",
        failures.len(),
        checks.results.len(),
        checks.report(),
        listing(server.root.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_registry_agrees_except_where_documented() {
    let Some(registry) = DockerRegistry::start("") else {
        return;
    };
    let checks = run_suite(&Target::new("docker-registry", &registry.host)).await;
    let failed: Vec<&str> = checks.failures().iter().map(|(name, _)| *name).collect();
    let documented: Vec<&str> = DOCKER_REGISTRY_DIFFERS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let undocumented: Vec<&&str> = failed
        .iter()
        .filter(|name| !documented.contains(name))
        .collect();
    let stale: Vec<&&str> = documented
        .iter()
        .filter(|name| !failed.contains(name))
        .collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "{}: undocumented differences {undocumented:?}, documented differences that no longer differ {stale:?}\n{}",
        checks.target,
        checks.report()
    );
}
