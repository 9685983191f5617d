//! End-to-end tests of `stencil ref`, `stencil version` and the command-line conventions.

use stencil_e2e::Stencil;

#[test]
fn ref_normalises_the_three_namespaces() {
    Stencil::new()
        .run(&[
            "ref",
            "ubuntu",
            "jpetazzo/clock",
            "localhost:5000/wordpress",
        ])
        .success()
        .stdout_is(
            "docker.io/library/ubuntu:latest\n\
             docker.io/jpetazzo/clock:latest\n\
             localhost:5000/wordpress:latest\n",
        );
}

#[test]
fn ref_reports_every_invalid_input_and_exits_1() {
    let run = Stencil::new().run(&["ref", "Ubuntu", "busybox", "a:b:c", ""]);
    run.expect_code(1)
        .stdout_is("docker.io/library/busybox:latest\n");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 3, "one error line per invalid input\n{run}");
    assert!(errors[0].contains("\"Ubuntu\""), "{run}");
    assert!(errors[1].contains("\"a:b:c\""), "{run}");
}

#[test]
fn ref_json_prints_one_object_per_input_in_order() {
    let run = Stencil::new().run(&[
        "ref",
        "--json",
        "ubuntu:22.04",
        "UPPER",
        "registry.example.com:5000/my-private/image",
    ]);
    run.expect_code(1);
    let objects: Vec<serde_json::Value> = run
        .lines()
        .iter()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}\n{run}"))
        })
        .collect();
    assert_eq!(objects.len(), 3, "{run}");
    assert_eq!(objects[0]["canonical"], "docker.io/library/ubuntu:22.04");
    assert_eq!(objects[0]["tag"], "22.04");
    assert_eq!(objects[0]["namespace"], "official");
    assert_eq!(objects[1]["input"], "UPPER");
    assert!(objects[1]["error"].is_string(), "{run}");
    assert_eq!(objects[2]["domain"], "registry.example.com:5000");
    assert_eq!(objects[2]["path"], "my-private/image");
    assert_eq!(objects[2]["namespace"], "self-hosted");
    assert_eq!(
        objects[2]["familiar"],
        "registry.example.com:5000/my-private/image:latest"
    );
}

#[test]
fn usage_errors_exit_125_like_docker() {
    Stencil::new()
        .run(&["no-such-verb"])
        .expect_code(125)
        .stderr_contains("no-such-verb");
    Stencil::new().run(&["ref"]).expect_code(125);
}

#[test]
fn version_and_help_succeed() {
    let stencil = Stencil::new();
    let version = stencil.run(&["version"]);
    version.success();
    assert!(version.stdout.starts_with("stencil version "), "{version}");
    for args in [&["--help"][..], &["ref", "--help"], &["version", "--help"]] {
        let help = stencil.run(args);
        help.success();
        assert!(help.stdout.contains("Usage:"), "{help}");
    }
}
