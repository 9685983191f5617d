//! End-to-end tests of `images --filter label=…`, `push -a` and `pull -a` against
//! docker-registry.

use stencil_e2e::Stencil;
use stencil_e2e::peers::DockerRegistry;

fn tarball(stencil: &Stencil, content: &str) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "content", content.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let path = stencil.scratch().join(format!("{content}.tar"));
    std::fs::write(
        &path,
        builder.into_inner().unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn import(stencil: &Stencil, content: &str, changes: &[&str], name: &str) {
    let file = tarball(stencil, content);
    let mut args = vec!["import"];
    for change in changes {
        args.extend(["-c", change]);
    }
    args.extend([file.as_str(), name]);
    stencil.run(&args).success();
}

#[test]
fn images_filter_by_config_labels() {
    let stencil = Stencil::new();
    import(&stencil, "web", &["LABEL tier=web team=a"], "web:1");
    import(&stencil, "db", &["LABEL tier=db"], "db:1");
    import(&stencil, "plain", &[], "plain:1");
    let check = |filters: &[&str], expected: &str| {
        let mut args = vec!["images", "--format", "{{.Repository}}"];
        for filter in filters {
            args.extend(["--filter", filter]);
        }
        stencil.run(&args).success().stdout_is(expected);
    };
    check(&["label=tier"], "db\nweb\n");
    check(&["label=tier=web"], "web\n");
    check(&["label=tier", "label=team=a"], "web\n");
    check(&["label=tier=cache"], "");
    check(&["label=team", "reference=db"], "");
    // Several references allow any of them (docker ORs values of one key).
    check(&["reference=db:1", "reference=web"], "db\nweb\n");
    check(
        &["reference=db", "reference=web", "label=tier=web"],
        "web\n",
    );
    // A pattern as the positional argument is a reference filter.
    stencil
        .run(&["images", "--format", "{{.Repository}}", "*b:1"])
        .success()
        .stdout_is("db\nweb\n");
    stencil
        .run(&["images", "--format", "{{.Repository}}", "pl?in"])
        .success()
        .stdout_is("plain\n");
    stencil
        .run(&["images", "--filter", "label="])
        .expect_code(125)
        .stderr_contains("label takes KEY or KEY=VALUE");
}

#[test]
fn push_all_tags_then_pull_all_tags_brings_every_tag() {
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let repository = format!("{}/e2e/multi", registry.host());
    let stencil = Stencil::new();
    import(&stencil, "one", &[], &format!("{repository}:1"));
    import(&stencil, "two", &[], &format!("{repository}:2"));
    stencil
        .run(&[
            "tag",
            &format!("{repository}:2"),
            &format!("{repository}:latest"),
        ])
        .success();
    // Another repository's tag stays local.
    import(
        &stencil,
        "other",
        &[],
        &format!("{}/e2e/other:1", registry.host()),
    );

    stencil
        .run(&["push", "-a", &format!("{repository}:1")])
        .expect_code(125)
        .stderr_contains("without tag or digest");
    let pushed = stencil.run(&["push", "--all-tags", &repository]);
    pushed.success();
    for tag in ["1", "2", "latest"] {
        assert!(
            pushed.stdout.contains(&format!("\n{tag}: digest: sha256:")),
            "{tag}\n{pushed}"
        );
    }

    let other = Stencil::new();
    let pulled = other.run(&["pull", "-a", &repository]);
    pulled.success();
    assert_eq!(
        pulled.stdout.matches(": Pulling from e2e/multi").count(),
        3,
        "{pulled}"
    );
    let mut tags: Vec<String> = other
        .run(&["images", "--format", "{{.Tag}}"])
        .lines()
        .into_iter()
        .map(str::to_owned)
        .collect();
    tags.sort();
    assert_eq!(tags, ["1", "2", "latest"], "{pulled}");
    let ids = other.run(&["images", "-q"]);
    assert_eq!(ids.lines().len(), 2, "2 and latest are one image\n{ids}");

    other
        .run(&["pull", "-a", &format!("{}/e2e/nothing", registry.host())])
        .expect_code(125)
        .stderr_contains("e2e/nothing");
    stencil
        .run(&["push", "-a", &format!("{}/e2e/absent", registry.host())])
        .expect_code(125)
        .stderr_contains("no local tag of");
}
