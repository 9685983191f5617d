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
