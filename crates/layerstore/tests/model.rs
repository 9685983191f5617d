//! Image model tables: document parsing and its refusals, media type mapping, platform
//! normalisation and matching, chain IDs.

use stencil_layerstore::ErrorKind;
use stencil_layerstore::content::sha256_digest;
use stencil_layerstore::image::{
    Document, Platform, chain_ids, media_type, parse_document, select_manifest,
};

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn manifest(media: Option<&str>) -> String {
    let media = media.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
    format!(
        r#"{{"schemaVersion":2,{media}"config":{{"mediaType":"{}","digest":"{DIGEST}","size":2}},"layers":[{{"mediaType":"{}","digest":"{DIGEST}","size":2}}]}}"#,
        media_type::DOCKER_CONFIG,
        media_type::DOCKER_LAYER_GZIP
    )
}

fn index(media: Option<&str>, platforms: &[(&str, &str, Option<&str>)]) -> String {
    let media = media.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
    let entries: Vec<String> = platforms
        .iter()
        .map(|(os, arch, variant)| {
            let variant = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
            format!(
                r#"{{"mediaType":"{}","digest":"{DIGEST}","size":2,"platform":{{"os":"{os}","architecture":"{arch}"{variant}}}}}"#,
                media_type::OCI_MANIFEST
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,{media}"manifests":[{}]}}"#,
        entries.join(",")
    )
}

/// Parses `bytes` as declared and checks the outcome: `Ok(media type, is index)` or the
/// error kind.
#[track_caller]
fn check(
    name: &str,
    bytes: &[u8],
    declared: Option<&str>,
    expected: Result<(&str, bool), ErrorKind>,
) {
    let got = parse_document(bytes, declared, None).map(|parsed| {
        let is_index = matches!(parsed.document, Document::Index(_));
        (parsed.media_type, is_index)
    });
    match (got, expected) {
        (Ok((media, is_index)), Ok((want_media, want_index))) => {
            assert_eq!(
                (media.as_str(), is_index),
                (want_media, want_index),
                "{name}"
            );
        }
        (Err(error), Err(kind)) => assert_eq!(error.kind(), kind, "{name}: {error}"),
        (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn documents() {
    let docker_manifest = manifest(Some(media_type::DOCKER_MANIFEST));
    let oci_manifest = manifest(Some(media_type::OCI_MANIFEST));
    let bare_manifest = manifest(None);
    let oci_index = index(Some(media_type::OCI_INDEX), &[("linux", "amd64", None)]);
    let docker_list = index(
        Some(media_type::DOCKER_MANIFEST_LIST),
        &[("linux", "arm64", None)],
    );
    let bare_index = index(None, &[]);
    let both = r#"{"schemaVersion":2,"manifests":[],"config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2},"layers":[]}"#;
    let index_claiming_manifest = index(Some(media_type::OCI_MANIFEST), &[]);
    let too_large = format!(
        r#"{{"schemaVersion":2,"manifests":[],"annotations":{{"pad":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let schema1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","fsLayers":[]}"#;

    check(
        "docker manifest",
        docker_manifest.as_bytes(),
        None,
        Ok((media_type::DOCKER_MANIFEST, false)),
    );
    check(
        "docker manifest, declared",
        docker_manifest.as_bytes(),
        Some(media_type::DOCKER_MANIFEST),
        Ok((media_type::DOCKER_MANIFEST, false)),
    );
    check(
        "oci manifest",
        oci_manifest.as_bytes(),
        None,
        Ok((media_type::OCI_MANIFEST, false)),
    );
    check(
        "manifest without mediaType, declared",
        bare_manifest.as_bytes(),
        Some(media_type::DOCKER_MANIFEST),
        Ok((media_type::DOCKER_MANIFEST, false)),
    );
    check(
        "manifest without any media type",
        bare_manifest.as_bytes(),
        None,
        Ok((media_type::OCI_MANIFEST, false)),
    );
    check(
        "oci index",
        oci_index.as_bytes(),
        None,
        Ok((media_type::OCI_INDEX, true)),
    );
    check(
        "docker manifest list",
        docker_list.as_bytes(),
        None,
        Ok((media_type::DOCKER_MANIFEST_LIST, true)),
    );
    check(
        "bare index",
        bare_index.as_bytes(),
        None,
        Ok((media_type::OCI_INDEX, true)),
    );
    check(
        "manifests and layers (CVE-2021-41190)",
        both.as_bytes(),
        None,
        Err(ErrorKind::AmbiguousDocument),
    );
    check(
        "index declared as manifest",
        bare_index.as_bytes(),
        Some(media_type::OCI_MANIFEST),
        Err(ErrorKind::AmbiguousDocument),
    );
    check(
        "manifest declared as index",
        bare_manifest.as_bytes(),
        Some(media_type::OCI_INDEX),
        Err(ErrorKind::AmbiguousDocument),
    );
    check(
        "embedded and declared disagree",
        oci_manifest.as_bytes(),
        Some(media_type::DOCKER_MANIFEST),
        Err(ErrorKind::AmbiguousDocument),
    );
    check(
        "index whose mediaType says manifest",
        index_claiming_manifest.as_bytes(),
        None,
        Err(ErrorKind::AmbiguousDocument),
    );
    check(
        "over 4 MiB",
        too_large.as_bytes(),
        None,
        Err(ErrorKind::DocumentTooLarge),
    );
    check(
        "schema 1",
        schema1.as_bytes(),
        None,
        Err(ErrorKind::UnsupportedMediaType),
    );
    check("not json", b"<html>", None, Err(ErrorKind::InvalidDocument));
    check(
        "neither kind",
        br#"{"schemaVersion":2}"#,
        None,
        Err(ErrorKind::InvalidDocument),
    );
}

#[test]
fn media_types_map_both_ways() {
    let pairs = [
        (media_type::DOCKER_MANIFEST, media_type::OCI_MANIFEST),
        (media_type::DOCKER_MANIFEST_LIST, media_type::OCI_INDEX),
        (media_type::DOCKER_CONFIG, media_type::OCI_CONFIG),
        (media_type::DOCKER_LAYER_GZIP, media_type::OCI_LAYER_GZIP),
    ];
    for (docker, oci) in pairs {
        assert_eq!(media_type::to_oci(docker), oci, "{docker} to OCI");
        assert_eq!(media_type::to_docker(oci), Some(docker), "{oci} to Docker");
        assert_eq!(media_type::to_oci(oci), oci, "{oci} stays");
    }
    assert_eq!(media_type::to_docker(media_type::OCI_LAYER_ZSTD), None);
}

#[test]
fn platforms() {
    let normalised = [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm64/8", "linux/arm64/v8"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i686", "linux/386"),
        ("Linux/AMD64", "linux/amd64"),
    ];
    for (input, want) in normalised {
        let platform = Platform::parse(input).unwrap_or_else(|error| panic!("{input}: {error}"));
        assert_eq!(platform.to_string(), want, "{input}");
    }
    for bad in ["linux", "linux/", "/amd64", "linux/arm/v7/x", ""] {
        let kind = Platform::parse(bad).err().map(|error| error.kind());
        assert_eq!(kind, Some(ErrorKind::InvalidPlatform), "{bad:?}");
    }
    let host = Platform::host();
    assert_eq!(host.os, std::env::consts::OS);
}

#[test]
fn platform_selection() {
    let listed = index(
        None,
        &[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("unknown", "unknown", None),
        ],
    );
    let Ok(parsed) = parse_document(listed.as_bytes(), None, None) else {
        panic!("index does not parse");
    };
    let Document::Index(index) = parsed.document else {
        panic!("not an index");
    };
    let cases = [
        ("linux/amd64", Some("linux/amd64")),
        ("linux/arm64", Some("linux/arm64/v8")),
        ("linux/arm/v7", Some("linux/arm/v7")),
        ("linux/arm/v8", Some("linux/arm/v7")),
        ("linux/arm/v5", None),
        ("linux/s390x", None),
        ("windows/amd64", None),
    ];
    for (wanted, expected) in cases {
        let wanted_platform =
            Platform::parse(wanted).unwrap_or_else(|error| panic!("{wanted}: {error}"));
        let chosen = select_manifest(&index, &wanted_platform)
            .and_then(Platform::of_descriptor)
            .map(|platform| platform.to_string());
        assert_eq!(chosen.as_deref(), expected, "select for {wanted}");
    }
}

#[test]
fn chain_ids_follow_the_image_spec() {
    let a = sha256_digest(b"a");
    let b = sha256_digest(b"b");
    let c = sha256_digest(b"c");
    let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
    let ab = sha256_digest(format!("{a} {b}").as_bytes());
    let abc = sha256_digest(format!("{ab} {c}").as_bytes());
    assert_eq!(ids, vec![a, ab, abc]);
    assert!(chain_ids(&[]).is_empty());
}
