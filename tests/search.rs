//! End-to-end tests of `stencil search` against docker-registry, which has no `/v1/search`:
//! stencil falls back to its catalog filtered by name; failures name the registry.

use stencil_e2e::Stencil;
use stencil_e2e::peers::DockerRegistry;

fn import_and_push(stencil: &Stencil, name: &str) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(name.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "name", name.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let path = stencil.scratch().join("layer.tar");
    std::fs::write(
        &path,
        builder.into_inner().unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    stencil
        .run(&["import", &path.display().to_string(), name])
        .success();
    stencil.run(&["push", "-q", name]).success();
}

#[test]
fn search_of_a_registry_without_v1_search_lists_matching_repositories() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let host = registry.host();
    let stencil = Stencil::new();
    for name in ["e2e/wordpress", "e2e/wordcount", "e2e/nginx"] {
        import_and_push(&stencil, &format!("{host}/{name}:v1"));
    }
    let table = stencil.run(&["search", &format!("{host}/word")]);
    table.success();
    let lines = table.lines();
    assert_eq!(
        lines
            .first()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "NAME",
            "DESCRIPTION",
            "STARS",
            "OFFICIAL",
            "AUTOMATED"
        ]),
        "{table}"
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let (count, wordpress) = (
        format!("{host}/e2e/wordcount"),
        format!("{host}/e2e/wordpress"),
    );
    assert_eq!(names, [count.as_str(), wordpress.as_str()], "{table}");
    assert!(lines[1].ends_with(" 0"), "no stars elsewhere\n{table}");

    stencil
        .run(&[
            "search",
            "--limit",
            "1",
            "--format",
            "{{.Name}}:{{.StarCount}}",
            &format!("{host}/word"),
        ])
        .success()
        .stdout_is(&format!("{count}:0\n"));
    stencil
        .run(&[
            "search",
            "--filter",
            "is-official=true",
            "--format",
            "{{.Name}}",
            &format!("{host}/word"),
        ])
        .success()
        .stdout_is("");
}

#[test]
fn search_failures_name_the_registry() {
    let stencil = Stencil::new();
    stencil
        .run(&["search", "127.0.0.1:1/word"])
        .expect_code(125)
        .stderr_contains("cannot search 127.0.0.1:1 for \"word\"")
        .stderr_contains("http://127.0.0.1:1/v1/search");
    stencil
        .run(&["search", "--limit", "0", "busybox"])
        .expect_code(125)
        .stderr_contains("--limit 0");
    stencil
        .run(&["search", "--filter", "color=red", "busybox"])
        .expect_code(125)
        .stderr_contains("color=red");
    let Some(registry) = DockerRegistry::start_with_htpasswd("alice", "pw") else {
        return;
    };
    let host = registry.host();
    // An empty docker config: the registry wants credentials and says so.
    let config = stencil.scratch().join("docker-config");
    stencil
        .run_with(
            &["search", &format!("{host}/word")],
            &[("DOCKER_CONFIG", config.as_path())],
            None,
        )
        .expect_code(125)
        .stderr_contains(&format!("cannot search {host} for \"word\""))
        .stderr_contains("authentication required");
}

#[test]
fn list_tags_and_manifest_inspect_ask_the_registry() {
    use sha2::Digest as _;
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let host = registry.host();
    let stencil = Stencil::new();
    for tag in ["v1", "v2", "latest"] {
        import_and_push(&stencil, &format!("{host}/e2e/tagged:{tag}"));
    }
    let repository = format!("{host}/e2e/tagged");
    let table = stencil.run(&["search", "--list-tags", &repository]);
    table.success();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], vec!["NAME", "TAG"], "{table}");
    let mut tags: Vec<&str> = rows[1..]
        .iter()
        .map(|row| {
            assert_eq!(row[0], repository, "{table}");
            row[1]
        })
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["latest", "v1", "v2"], "{table}");
    let limited = stencil.run(&[
        "search",
        "--list-tags",
        "--limit",
        "2",
        "--format",
        "{{.Tag}}",
        &repository,
    ]);
    limited.success();
    assert_eq!(limited.lines().len(), 2, "{limited}");
    stencil
        .run(&["search", "--list-tags", &format!("{repository}:v1")])
        .expect_code(125)
        .stderr_contains("without tag or digest");
    stencil
        .run(&["search", "--list-tags", &format!("{host}/e2e/absent")])
        .expect_code(125)
        .stderr_contains("e2e/absent");

    // manifest inspect: what the registry serves, byte for byte with --raw.
    let reference = format!("{repository}:v2");
    let digest = stencil.run(&["images", "--digests", "--format", "{{.Digest}}", &reference]);
    digest.success();
    let digest = digest.stdout.trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let raw = stencil
        .command(&["manifest", "inspect", "--raw", &reference])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(raw.status.success(), "{raw:?}");
    let hex: String = sha2::Sha256::digest(&raw.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(format!("sha256:{hex}"), digest);
    let pretty = stencil.run(&["manifest", "inspect", &reference]);
    pretty.success();
    let value: serde_json::Value =
        serde_json::from_str(&pretty.stdout).unwrap_or_else(|e| panic!("{e}\n{pretty}"));
    assert_eq!(value["schemaVersion"], 2, "{pretty}");
    assert_eq!(
        value["layers"].as_array().map(Vec::len),
        Some(1),
        "{pretty}"
    );
    stencil
        .run(&["manifest", "inspect", &format!("{repository}:nope")])
        .expect_code(125)
        .stderr_contains("e2e/tagged:nope");
    stencil
        .run(&["manifest", "inspect", "Bad Name"])
        .expect_code(125)
        .stderr_contains("Bad Name");
}
