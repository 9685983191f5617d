//! Table tests: one table per rule of the reference grammar and of normalisation.
//!
//! Every table goes through [`check`], which runs all rows and reports every mismatch at once
//! with its input. Failures are asserted by [`ErrorKind`], never by panicking.

use std::fmt::Debug;

use stencil_reference::{Algorithm, Digest, ErrorKind, Reference, Tag};

const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Runs `project` on every input of `table` and fails, listing every row that differs, if any
/// result is not the expected one.
fn check<T: Debug + PartialEq>(table: &[(&str, T)], project: impl Fn(&str) -> T) {
    let failures: Vec<String> = table
        .iter()
        .filter_map(|(input, expected)| {
            let actual = project(input);
            (actual != *expected).then(|| {
                format!("  input {input:?}\n    expected {expected:?}\n    actual   {actual:?}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

/// The canonical form of `input`, or the kind of error it gives.
fn canonical(input: &str) -> Result<String, ErrorKind> {
    Reference::parse(input)
        .map(|r| r.canonical())
        .map_err(|e| e.kind())
}

fn long(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

#[test]
fn normalisation_fills_in_domain_library_and_latest() {
    let digest_ref = format!("ubuntu@sha256:{SHA256}");
    let digest_canonical = format!("docker.io/library/ubuntu@sha256:{SHA256}");
    let both = format!("ubuntu:22.04@sha256:{SHA256}");
    let both_canonical = format!("docker.io/library/ubuntu:22.04@sha256:{SHA256}");
    check(
        &[
            ("ubuntu", Ok("docker.io/library/ubuntu:latest".to_owned())),
            (
                "ubuntu:22.04",
                Ok("docker.io/library/ubuntu:22.04".to_owned()),
            ),
            (
                "library/ubuntu",
                Ok("docker.io/library/ubuntu:latest".to_owned()),
            ),
            (
                "docker.io/ubuntu",
                Ok("docker.io/library/ubuntu:latest".to_owned()),
            ),
            (
                "docker.io/library/ubuntu",
                Ok("docker.io/library/ubuntu:latest".to_owned()),
            ),
            (
                "index.docker.io/ubuntu",
                Ok("docker.io/library/ubuntu:latest".to_owned()),
            ),
            (
                "index.docker.io/library/ubuntu:20.04",
                Ok("docker.io/library/ubuntu:20.04".to_owned()),
            ),
            (
                "index.docker.io/jpetazzo/clock",
                Ok("docker.io/jpetazzo/clock:latest".to_owned()),
            ),
            (
                "jpetazzo/clock",
                Ok("docker.io/jpetazzo/clock:latest".to_owned()),
            ),
            (
                "docker.io/jpetazzo/clock",
                Ok("docker.io/jpetazzo/clock:latest".to_owned()),
            ),
            ("a/b/c/d", Ok("docker.io/a/b/c/d:latest".to_owned())),
            ("localhost/x", Ok("localhost/x:latest".to_owned())),
            (
                "localhost:5000/wordpress",
                Ok("localhost:5000/wordpress:latest".to_owned()),
            ),
            (
                "registry.example.com:5000/my-private/image",
                Ok("registry.example.com:5000/my-private/image:latest".to_owned()),
            ),
            // Only Docker Hub gets the library/ prefix.
            ("example.com/x", Ok("example.com/x:latest".to_owned())),
            // A digest alone suppresses the default tag; a tag and a digest are both kept.
            (&digest_ref, Ok(digest_canonical)),
            (&both, Ok(both_canonical)),
        ],
        canonical,
    );
}

#[test]
fn domain_is_first_component_with_dot_colon_localhost_or_uppercase() {
    check(
        &[
            ("example.com/x", Ok("example.com/x:latest".to_owned())),
            ("EXAMPLE.com/x", Ok("EXAMPLE.com/x:latest".to_owned())),
            ("a-b.c-d/x", Ok("a-b.c-d/x:latest".to_owned())),
            ("a--b.io/x", Ok("a--b.io/x:latest".to_owned())),
            ("127.0.0.1:5000/x", Ok("127.0.0.1:5000/x:latest".to_owned())),
            ("example.com:0/x", Ok("example.com:0/x:latest".to_owned())),
            ("foo:5000/bar", Ok("foo:5000/bar:latest".to_owned())),
            ("localhost/x", Ok("localhost/x:latest".to_owned())),
            ("localhost:5000/x:1", Ok("localhost:5000/x:1".to_owned())),
            ("[::1]/x", Ok("[::1]/x:latest".to_owned())),
            ("[::1]:5000/x", Ok("[::1]:5000/x:latest".to_owned())),
            (
                "[2001:DB8::1]:443/a/b:t",
                Ok("[2001:DB8::1]:443/a/b:t".to_owned()),
            ),
            // Docker reads an uppercase first component as a host name.
            ("Foo/bar", Ok("Foo/bar:latest".to_owned())),
            ("Localhost/x", Ok("Localhost/x:latest".to_owned())),
            // Without a '/', a dotted or 'localhost' name is a Docker Hub repository, and a
            // port-looking suffix is a tag.
            (
                "example.com",
                Ok("docker.io/library/example.com:latest".to_owned()),
            ),
            (
                "localhost",
                Ok("docker.io/library/localhost:latest".to_owned()),
            ),
            (
                "localhost:5000",
                Ok("docker.io/library/localhost:5000".to_owned()),
            ),
            // A lowercase first component without '.' or ':' is a Docker Hub user.
            (
                "myregistry/x",
                Ok("docker.io/myregistry/x:latest".to_owned()),
            ),
            ("-a.com/x", Err(ErrorKind::InvalidFormat)),
            ("a-.com/x", Err(ErrorKind::InvalidFormat)),
            ("a..com/x", Err(ErrorKind::InvalidFormat)),
            (".com/x", Err(ErrorKind::InvalidFormat)),
            ("example.com./x", Err(ErrorKind::InvalidFormat)),
            ("host_name.com/x", Err(ErrorKind::InvalidFormat)),
            ("example.com:/x", Err(ErrorKind::InvalidFormat)),
            ("example.com:80a/x", Err(ErrorKind::InvalidFormat)),
            ("example.com:80:81/x", Err(ErrorKind::InvalidFormat)),
            (":5000/x", Err(ErrorKind::InvalidFormat)),
            ("[]:5000/x", Err(ErrorKind::InvalidFormat)),
            ("[::g]/x", Err(ErrorKind::InvalidFormat)),
            ("[fe80::1%eth0]/x", Err(ErrorKind::InvalidFormat)),
            ("[::1/x", Err(ErrorKind::InvalidFormat)),
            ("[::1]x/y", Err(ErrorKind::InvalidFormat)),
            ("[::1]:/y", Err(ErrorKind::InvalidFormat)),
            ("ex ample.com/x", Err(ErrorKind::InvalidFormat)),
            ("exämple.com/x", Err(ErrorKind::InvalidFormat)),
            // A domain without a repository path.
            ("localhost:5000/", Err(ErrorKind::InvalidFormat)),
            ("example.com/:tag", Err(ErrorKind::InvalidFormat)),
        ],
        canonical,
    );
}

#[test]
fn path_components_join_lowercase_alphanumerics_with_allowed_separators() {
    check(
        &[
            ("a", Ok("docker.io/library/a:latest".to_owned())),
            ("0", Ok("docker.io/library/0:latest".to_owned())),
            ("a.b", Ok("docker.io/library/a.b:latest".to_owned())),
            ("a_b", Ok("docker.io/library/a_b:latest".to_owned())),
            ("a__b", Ok("docker.io/library/a__b:latest".to_owned())),
            ("a-b", Ok("docker.io/library/a-b:latest".to_owned())),
            ("a--b", Ok("docker.io/library/a--b:latest".to_owned())),
            ("a----b", Ok("docker.io/library/a----b:latest".to_owned())),
            (
                "a_b__c-d--e/0/g.h",
                Ok("docker.io/a_b__c-d--e/0/g.h:latest".to_owned()),
            ),
            (
                "a/b.c_d__e-f--g",
                Ok("docker.io/a/b.c_d__e-f--g:latest".to_owned()),
            ),
            // A '.' in the first of several components makes it a domain, where '_' is invalid.
            ("a.b_c/d", Err(ErrorKind::InvalidFormat)),
            ("a___b", Err(ErrorKind::InvalidFormat)),
            ("a..b", Err(ErrorKind::InvalidFormat)),
            ("a._b", Err(ErrorKind::InvalidFormat)),
            ("a_.b", Err(ErrorKind::InvalidFormat)),
            ("a-_b", Err(ErrorKind::InvalidFormat)),
            ("a_-b", Err(ErrorKind::InvalidFormat)),
            ("a-.b", Err(ErrorKind::InvalidFormat)),
            ("_a", Err(ErrorKind::InvalidFormat)),
            ("-a", Err(ErrorKind::InvalidFormat)),
            (".a", Err(ErrorKind::InvalidFormat)),
            ("a_", Err(ErrorKind::InvalidFormat)),
            ("a-", Err(ErrorKind::InvalidFormat)),
            ("a.", Err(ErrorKind::InvalidFormat)),
            ("a+b", Err(ErrorKind::InvalidFormat)),
            ("a//b", Err(ErrorKind::InvalidFormat)),
            ("/a", Err(ErrorKind::InvalidFormat)),
            ("a/", Err(ErrorKind::InvalidFormat)),
            ("a/b/", Err(ErrorKind::InvalidFormat)),
            ("a/-b", Err(ErrorKind::InvalidFormat)),
            ("a/b_/c", Err(ErrorKind::InvalidFormat)),
            ("ubüntu", Err(ErrorKind::InvalidFormat)),
            ("ub untu", Err(ErrorKind::InvalidFormat)),
            ("ubuntu!", Err(ErrorKind::InvalidFormat)),
            // Leading and trailing junk.
            (" ubuntu", Err(ErrorKind::InvalidFormat)),
            ("ubuntu ", Err(ErrorKind::InvalidFormat)),
            ("ubuntu\n", Err(ErrorKind::InvalidFormat)),
            ("ubuntu:latest ", Err(ErrorKind::TagInvalid)),
            ("ubuntu:a:b", Err(ErrorKind::InvalidFormat)),
            ("ubuntu:x/y", Err(ErrorKind::InvalidFormat)),
            ("ubuntu#1", Err(ErrorKind::InvalidFormat)),
            ("./ubuntu", Err(ErrorKind::InvalidFormat)),
            ("../ubuntu", Err(ErrorKind::InvalidFormat)),
            ("a/../b", Err(ErrorKind::InvalidFormat)),
        ],
        canonical,
    );
}

#[test]
fn repository_names_must_be_lowercase_but_tags_and_hosts_need_not() {
    check(
        &[
            ("Ubuntu", Err(ErrorKind::UppercaseRepository)),
            ("ubuntU:22.04", Err(ErrorKind::UppercaseRepository)),
            ("jpetazzo/Clock", Err(ErrorKind::UppercaseRepository)),
            ("docker.io/Ubuntu", Err(ErrorKind::UppercaseRepository)),
            (
                "localhost:5000/WordPress",
                Err(ErrorKind::UppercaseRepository),
            ),
            ("Foo/Bar", Err(ErrorKind::UppercaseRepository)),
            // Uppercase is reported even when another rule is broken too, as Docker does.
            ("Ubuntu!", Err(ErrorKind::UppercaseRepository)),
            // The first component is only a host name because of its uppercase letter, and
            // not a valid one: the user meant a repository.
            ("My_Org/app", Err(ErrorKind::UppercaseRepository)),
            (
                "ubuntu:LATEST",
                Ok("docker.io/library/ubuntu:LATEST".to_owned()),
            ),
            ("EXAMPLE.COM/app", Ok("EXAMPLE.COM/app:latest".to_owned())),
        ],
        canonical,
    );
}

#[test]
fn tags_match_the_tag_grammar() {
    let longest = format!("ubuntu:{}", long('t', 128));
    let longest_canonical = format!("docker.io/library/ubuntu:{}", long('t', 128));
    let too_long = format!("ubuntu:{}", long('t', 129));
    check(
        &[
            (
                "ubuntu:latest",
                Ok("docker.io/library/ubuntu:latest".to_owned()),
            ),
            ("ubuntu:_x", Ok("docker.io/library/ubuntu:_x".to_owned())),
            ("ubuntu:A", Ok("docker.io/library/ubuntu:A".to_owned())),
            ("ubuntu:9", Ok("docker.io/library/ubuntu:9".to_owned())),
            (
                "ubuntu:a.b-c_D",
                Ok("docker.io/library/ubuntu:a.b-c_D".to_owned()),
            ),
            (
                "ubuntu:x..--__",
                Ok("docker.io/library/ubuntu:x..--__".to_owned()),
            ),
            (
                "localhost:5000/x:5000",
                Ok("localhost:5000/x:5000".to_owned()),
            ),
            (&longest, Ok(longest_canonical)),
            (&too_long, Err(ErrorKind::TagTooLong)),
            ("ubuntu:", Err(ErrorKind::TagInvalid)),
            ("ubuntu:.x", Err(ErrorKind::TagInvalid)),
            ("ubuntu:-x", Err(ErrorKind::TagInvalid)),
            ("ubuntu:a+b", Err(ErrorKind::TagInvalid)),
            ("ubuntu:é", Err(ErrorKind::TagInvalid)),
            ("ubuntu:a b", Err(ErrorKind::TagInvalid)),
        ],
        canonical,
    );
}

#[test]
fn digests_have_a_registered_algorithm_and_exact_lowercase_hex() {
    let sha256 = |hex: &str| format!("ubuntu@sha256:{hex}");
    let ok = |digest: &str| Ok(format!("docker.io/library/ubuntu@{digest}"));
    let sha512 = long('a', 128);
    let sha384 = long('b', 96);
    check(
        &[
            (&sha256(SHA256), ok(&format!("sha256:{SHA256}"))),
            (
                &format!("ubuntu@sha512:{sha512}"),
                ok(&format!("sha512:{sha512}")),
            ),
            (
                &format!("ubuntu@sha384:{sha384}"),
                ok(&format!("sha384:{sha384}")),
            ),
            (
                &format!("ubuntu@blake3:{SHA256}"),
                ok(&format!("blake3:{SHA256}")),
            ),
            (&sha256(&SHA256[1..]), Err(ErrorKind::DigestInvalidLength)),
            (
                &sha256(&format!("{SHA256}0")),
                Err(ErrorKind::DigestInvalidLength),
            ),
            (&sha256(""), Err(ErrorKind::DigestInvalidLength)),
            (
                &format!("ubuntu@sha512:{SHA256}"),
                Err(ErrorKind::DigestInvalidLength),
            ),
            (
                &format!("ubuntu@sha512:{}", long('a', 127)),
                Err(ErrorKind::DigestInvalidLength),
            ),
            (
                &sha256(&SHA256.to_uppercase()),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &sha256(&format!("{}g", &SHA256[1..])),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &sha256("../../etc/passwd"),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &sha256(&format!("{SHA256}/x")),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &sha256(&format!("{SHA256} ")),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &format!("ubuntu@sha256:{SHA256}@sha256:{SHA256}"),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                "ubuntu@md5:d41d8cd98f00b204e9800998ecf8427e",
                Err(ErrorKind::DigestUnsupportedAlgorithm),
            ),
            (
                &format!("ubuntu@sha1+x:{SHA256}"),
                Err(ErrorKind::DigestUnsupportedAlgorithm),
            ),
            (
                &format!("ubuntu@SHA256:{SHA256}"),
                Err(ErrorKind::DigestInvalidFormat),
            ),
            (
                &format!("ubuntu@../sha256:{SHA256}"),
                Err(ErrorKind::DigestInvalidFormat),
            ),
            (
                &format!("ubuntu@:{SHA256}"),
                Err(ErrorKind::DigestInvalidFormat),
            ),
            ("ubuntu@sha256", Err(ErrorKind::DigestInvalidFormat)),
            ("ubuntu@", Err(ErrorKind::DigestInvalidFormat)),
            // A digest without a name.
            (&format!("@sha256:{SHA256}"), Err(ErrorKind::InvalidFormat)),
            (
                &format!(":latest@sha256:{SHA256}"),
                Err(ErrorKind::InvalidFormat),
            ),
        ],
        canonical,
    );
}

#[test]
fn empty_input_image_ids_and_the_255_character_name_limit() {
    // "docker.io/library/" is 18 characters, "example.com/" 12.
    let official_at_limit = long('a', 255 - 18);
    let official_over_limit = long('a', 256 - 18);
    let hosted_at_limit = format!("example.com/{}", long('b', 255 - 12));
    let hosted_over_limit = format!("example.com/{}", long('b', 256 - 12));
    let tag_does_not_count = format!("{official_at_limit}:{}", long('t', 128));
    let id = long('a', 64);
    let id_with_tag = format!("{id}:latest");
    check(
        &[
            ("", Err(ErrorKind::EmptyReference)),
            (&id, Err(ErrorKind::HexIdentifier)),
            (SHA256, Err(ErrorKind::HexIdentifier)),
            (
                &long('a', 63),
                Ok(format!("docker.io/library/{}:latest", long('a', 63))),
            ),
            (
                &long('a', 65),
                Ok(format!("docker.io/library/{}:latest", long('a', 65))),
            ),
            (&id_with_tag, Ok(format!("docker.io/library/{id}:latest"))),
            (&SHA256.to_uppercase(), Err(ErrorKind::UppercaseRepository)),
            (
                &official_at_limit,
                Ok(format!("docker.io/library/{official_at_limit}:latest")),
            ),
            (&official_over_limit, Err(ErrorKind::NameTooLong)),
            (&hosted_at_limit, Ok(format!("{hosted_at_limit}:latest"))),
            (&hosted_over_limit, Err(ErrorKind::NameTooLong)),
            (
                &tag_does_not_count,
                Ok(format!("docker.io/library/{tag_does_not_count}")),
            ),
            // The name is checked before the tag and the digest.
            (":", Err(ErrorKind::InvalidFormat)),
            ("@", Err(ErrorKind::InvalidFormat)),
            ("/", Err(ErrorKind::InvalidFormat)),
            (":latest", Err(ErrorKind::InvalidFormat)),
        ],
        canonical,
    );
}

#[test]
fn accessors_split_domain_path_and_endpoint() {
    let parts = |input: &str| {
        Reference::parse(input)
            .map(|r| {
                [
                    r.domain().to_owned(),
                    r.path().to_owned(),
                    r.name(),
                    r.registry_endpoint().to_owned(),
                    r.tag().map_or("-".to_owned(), Tag::to_string),
                    r.digest().map_or("-".to_owned(), Digest::to_string),
                ]
            })
            .map_err(|e| e.kind())
    };
    let strings = |a: [&str; 6]| Ok(a.map(str::to_owned));
    let with_digest = format!("example.com/a/b:1@sha256:{SHA256}");
    check(
        &[
            (
                "ubuntu",
                strings([
                    "docker.io",
                    "library/ubuntu",
                    "docker.io/library/ubuntu",
                    "registry-1.docker.io",
                    "latest",
                    "-",
                ]),
            ),
            (
                "jpetazzo/clock:v1",
                strings([
                    "docker.io",
                    "jpetazzo/clock",
                    "docker.io/jpetazzo/clock",
                    "registry-1.docker.io",
                    "v1",
                    "-",
                ]),
            ),
            (
                "localhost:5000/wordpress",
                strings([
                    "localhost:5000",
                    "wordpress",
                    "localhost:5000/wordpress",
                    "localhost:5000",
                    "latest",
                    "-",
                ]),
            ),
            (
                "[::1]:5000/a/b",
                strings([
                    "[::1]:5000",
                    "a/b",
                    "[::1]:5000/a/b",
                    "[::1]:5000",
                    "latest",
                    "-",
                ]),
            ),
            (
                &with_digest,
                strings([
                    "example.com",
                    "a/b",
                    "example.com/a/b",
                    "example.com",
                    "1",
                    &format!("sha256:{SHA256}"),
                ]),
            ),
        ],
        parts,
    );
}

#[test]
fn familiar_form_and_namespace() {
    let familiar = |input: &str| {
        Reference::parse(input)
            .map(|r| (r.familiar(), r.familiar_name(), r.namespace().as_str()))
            .map_err(|e| e.kind())
    };
    let row = |f: &str, n: &str, ns: &'static str| Ok((f.to_owned(), n.to_owned(), ns));
    check(
        &[
            ("ubuntu", row("ubuntu:latest", "ubuntu", "official")),
            (
                "docker.io/library/ubuntu:22.04",
                row("ubuntu:22.04", "ubuntu", "official"),
            ),
            (
                "index.docker.io/library/ubuntu",
                row("ubuntu:latest", "ubuntu", "official"),
            ),
            (
                "library/foo/bar",
                row("library/foo/bar:latest", "library/foo/bar", "official"),
            ),
            (
                "library/foo.bar",
                row("foo.bar:latest", "foo.bar", "official"),
            ),
            ("localhost:80", row("localhost:80", "localhost", "official")),
            (
                "jpetazzo/clock",
                row("jpetazzo/clock:latest", "jpetazzo/clock", "user"),
            ),
            (
                "docker.io/jpetazzo/clock:1",
                row("jpetazzo/clock:1", "jpetazzo/clock", "user"),
            ),
            // Without docker.io/, these would name another registry.
            (
                "docker.io/my.org/app",
                row(
                    "docker.io/my.org/app:latest",
                    "docker.io/my.org/app",
                    "user",
                ),
            ),
            (
                "docker.io/localhost/app",
                row(
                    "docker.io/localhost/app:latest",
                    "docker.io/localhost/app",
                    "user",
                ),
            ),
            (
                "localhost:5000/wordpress",
                row(
                    "localhost:5000/wordpress:latest",
                    "localhost:5000/wordpress",
                    "self-hosted",
                ),
            ),
            (
                "registry.example.com:5000/my-private/image:v2",
                row(
                    "registry.example.com:5000/my-private/image:v2",
                    "registry.example.com:5000/my-private/image",
                    "self-hosted",
                ),
            ),
            (
                "docker.io:443/x",
                row("docker.io:443/x:latest", "docker.io:443/x", "self-hosted"),
            ),
            ("Foo/bar", row("Foo/bar:latest", "Foo/bar", "self-hosted")),
        ],
        familiar,
    );
}

#[test]
fn with_tag_and_with_digest_replace_one_part_and_keep_the_other() {
    let digest = Digest::from_sha256_bytes(&[0x11; 32]);
    let other = Digest::from_sha256_bytes(&[0x22; 32]);
    let rewrite = |input: &str| {
        let (reference, operation) = input.split_once(' ').unwrap_or((input, ""));
        let r = Reference::parse(reference).map_err(|e| e.kind())?;
        let result = match operation {
            "tag=v2" => r.with_tag(Tag::parse("v2").map_err(|e| e.kind())?),
            "digest=11" => r.with_digest(digest.clone()),
            "digest=22" => r.with_digest(other.clone()),
            _ => r,
        };
        Ok::<_, ErrorKind>(result.canonical())
    };
    let with = |base: &str, hex: &str| format!("{base}@sha256:{}", hex.repeat(32));
    let pinned = with("ubuntu", "11");
    let pinned_tagged = with("ubuntu:1", "11");
    check(
        &[
            (
                "ubuntu tag=v2",
                Ok("docker.io/library/ubuntu:v2".to_owned()),
            ),
            (
                "ubuntu digest=11",
                Ok(with("docker.io/library/ubuntu:latest", "11")),
            ),
            (
                &format!("{pinned} tag=v2"),
                Ok(with("docker.io/library/ubuntu:v2", "11")),
            ),
            (
                &format!("{pinned_tagged} digest=22"),
                Ok(with("docker.io/library/ubuntu:1", "22")),
            ),
            (
                &format!("{pinned} digest=22"),
                Ok(with("docker.io/library/ubuntu", "22")),
            ),
        ],
        rewrite,
    );
}

#[test]
fn error_messages_name_the_input_and_the_problem() {
    let message = |input: &str| {
        Reference::parse(input)
            .map(|r| r.canonical())
            .map_err(|e| e.to_string())
    };
    let tag_too_long = format!("x:{}", long('t', 129));
    let name_too_long = long('a', 300);
    check(
        &[
            (
                "",
                Err("invalid reference \"\": the reference is empty; give an image name such as \"ubuntu\"".to_owned()),
            ),
            (
                "Ubuntu",
                Err("invalid reference \"Ubuntu\": repository name \"Ubuntu\" must be lowercase; did you mean \"ubuntu\"?".to_owned()),
            ),
            // The suggestion keeps the tag's case, which tags may have.
            (
                "ubuntU:TAG",
                Err("invalid reference \"ubuntU:TAG\": repository name \"ubuntU\" must be lowercase; did you mean \"ubuntu:TAG\"?".to_owned()),
            ),
            // An uppercase first component is a domain only if the rest is valid too.
            (
                "Foo/Bar",
                Err("invalid reference \"Foo/Bar\": repository name \"Foo/Bar\" must be lowercase; did you mean \"foo/bar\"?".to_owned()),
            ),
            (
                "localhost:5000/App",
                Err("invalid reference \"localhost:5000/App\": repository name \"App\" must be lowercase; did you mean \"localhost:5000/app\"?".to_owned()),
            ),
            // No suggestion when lowercase alone would not make the reference valid.
            (
                "Ubuntu!",
                Err("invalid reference \"Ubuntu!\": repository name \"Ubuntu!\" must be lowercase".to_owned()),
            ),
            (
                "a..b",
                Err("invalid reference \"a..b\": path component \"a..b\" joins parts with \"..\"; only '.', '_', '__' or a run of '-' may do that".to_owned()),
            ),
            (
                "a/",
                Err("invalid reference \"a/\": repository path \"a/\" has an empty component; check for a leading, trailing or doubled '/'".to_owned()),
            ),
            (
                "a!",
                Err("invalid reference \"a!\": character '!' is not allowed in a repository name".to_owned()),
            ),
            (
                "example.com:x/a",
                Err("invalid reference \"example.com:x/a\": registry port \"x\" of \"example.com\" must be a decimal number".to_owned()),
            ),
            (
                "ubuntu:-x",
                Err("invalid reference \"ubuntu:-x\": tag \"-x\": a tag must start with a letter, digit or '_' and contain only letters, digits, '_', '.' and '-'".to_owned()),
            ),
            (
                &tag_too_long,
                Err(format!("invalid reference {tag_too_long:?}: tag {:?}: a tag is at most 128 characters, this one has 129", long('t', 129))),
            ),
            (
                &name_too_long,
                Err(format!("invalid reference {name_too_long:?}: the repository name is 318 characters long (after normalisation); the limit is 255")),
            ),
            (
                "ubuntu@sha256:abc",
                Err("invalid reference \"ubuntu@sha256:abc\": digest \"sha256:abc\": sha256 needs 64 hexadecimal characters, found 3".to_owned()),
            ),
            (
                SHA256,
                Err(format!("invalid reference \"{SHA256}\": a 64-character hexadecimal string is an image ID, not a repository name")),
            ),
            // Control characters are escaped rather than written to the terminal.
            (
                "a\u{1b}[2j",
                Err("invalid reference \"a\\u{1b}[2j\": character '\\u{1b}' is not allowed in a repository name".to_owned()),
            ),
        ],
        message,
    );
}

#[test]
fn digest_parse_on_its_own() {
    let parts = |input: &str| {
        Digest::parse(input)
            .map(|d| {
                (
                    d.algorithm(),
                    d.hex().to_owned(),
                    d.algorithm().is_verifiable(),
                )
            })
            .map_err(|e| e.kind())
    };
    check(
        &[
            (
                &format!("sha256:{SHA256}"),
                Ok((Algorithm::Sha256, SHA256.to_owned(), true)),
            ),
            (
                &format!("sha512:{}", long('0', 128)),
                Ok((Algorithm::Sha512, long('0', 128), true)),
            ),
            (
                &format!("sha384:{}", long('0', 96)),
                Ok((Algorithm::Sha384, long('0', 96), false)),
            ),
            (
                &format!("blake3:{SHA256}"),
                Ok((Algorithm::Blake3, SHA256.to_owned(), false)),
            ),
            ("", Err(ErrorKind::DigestInvalidFormat)),
            (SHA256, Err(ErrorKind::DigestInvalidFormat)),
            (
                &format!("sha256:{SHA256}\n"),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &format!(" sha256:{SHA256}"),
                Err(ErrorKind::DigestInvalidFormat),
            ),
            (
                &format!("sha256::{SHA256}"),
                Err(ErrorKind::DigestInvalidHex),
            ),
            (
                &format!("sha-256:{SHA256}"),
                Err(ErrorKind::DigestUnsupportedAlgorithm),
            ),
            (
                &format!("sha256-:{SHA256}"),
                Err(ErrorKind::DigestInvalidFormat),
            ),
            (
                &format!("sha256/..:{SHA256}"),
                Err(ErrorKind::DigestInvalidFormat),
            ),
            ("sha256:..", Err(ErrorKind::DigestInvalidHex)),
            ("sha256:", Err(ErrorKind::DigestInvalidLength)),
        ],
        parts,
    );
}

#[test]
fn digest_constructors_and_messages() {
    let build = |input: &str| -> Result<String, String> {
        let digest = match input {
            "sha256 bytes" => Digest::from_sha256_bytes(&[0xab; 32]),
            "sha512 bytes" => Digest::from_sha512_bytes(&[0x01; 64]),
            hex => Digest::new(Algorithm::Sha256, hex).map_err(|e| e.to_string())?,
        };
        Ok(digest.to_string())
    };
    check(
        &[
            ("sha256 bytes", Ok(format!("sha256:{}", "ab".repeat(32)))),
            ("sha512 bytes", Ok(format!("sha512:{}", "01".repeat(64)))),
            (SHA256, Ok(format!("sha256:{SHA256}"))),
            (
                "ABC",
                Err("invalid digest \"sha256:ABC\": the part after ':' must be lowercase hexadecimal (0-9, a-f)".to_owned()),
            ),
            (
                "abc",
                Err("invalid digest \"sha256:abc\": sha256 needs 64 hexadecimal characters, found 3".to_owned()),
            ),
        ],
        build,
    );
}

#[test]
fn tag_parse_on_its_own() {
    let parse = |input: &str| {
        Tag::parse(input)
            .map(|t| t.to_string())
            .map_err(|e| e.kind())
    };
    check(
        &[
            ("latest", Ok("latest".to_owned())),
            ("_", Ok("_".to_owned())),
            ("V1.0-rc.1_b", Ok("V1.0-rc.1_b".to_owned())),
            (&long('x', 128), Ok(long('x', 128))),
            (&long('x', 129), Err(ErrorKind::TagTooLong)),
            ("", Err(ErrorKind::TagInvalid)),
            (".", Err(ErrorKind::TagInvalid)),
            ("-", Err(ErrorKind::TagInvalid)),
            ("a:b", Err(ErrorKind::TagInvalid)),
            ("a/b", Err(ErrorKind::TagInvalid)),
            ("a@b", Err(ErrorKind::TagInvalid)),
        ],
        parse,
    );
}

#[cfg(feature = "serde")]
#[test]
fn serde_uses_the_canonical_strings_and_validates_on_the_way_in() {
    let round_trip = |json: &str| -> Result<String, String> {
        let reference: Reference = serde_json::from_str(json).map_err(|e| e.to_string())?;
        serde_json::to_string(&reference).map_err(|e| e.to_string())
    };
    check(
        &[
            ("\"ubuntu\"", Ok("\"docker.io/library/ubuntu:latest\"".to_owned())),
            ("\"localhost:5000/a:b\"", Ok("\"localhost:5000/a:b\"".to_owned())),
            (
                "\"Ubuntu\"",
                Err("invalid reference \"Ubuntu\": repository name \"Ubuntu\" must be lowercase; did you mean \"ubuntu\"? at line 1 column 8".to_owned()),
            ),
            (
                "7",
                Err("invalid type: integer `7`, expected an image reference string such as \"ubuntu:22.04\" at line 1 column 1".to_owned()),
            ),
        ],
        round_trip,
    );
}

#[test]
fn parse_from_str_and_display_agree() {
    let via_traits = |input: &str| -> Result<[String; 3], ErrorKind> {
        let reference: Reference = input
            .parse()
            .map_err(|e: stencil_reference::Error| e.kind())?;
        let tag: Option<Tag> = reference
            .tag()
            .map(|t| t.as_str().parse())
            .transpose()
            .map_err(|e: stencil_reference::Error| e.kind())?;
        let digest: Option<Digest> = reference
            .digest()
            .map(|d| d.as_str().parse())
            .transpose()
            .map_err(|e: stencil_reference::Error| e.kind())?;
        Ok([
            reference.to_string(),
            tag.map_or_else(String::new, |t| t.to_string()),
            digest.map_or_else(String::new, |d| d.to_string()),
        ])
    };
    let pinned = format!("a:b@sha256:{SHA256}");
    check(
        &[
            (
                "a",
                Ok([
                    "docker.io/library/a:latest".to_owned(),
                    "latest".to_owned(),
                    String::new(),
                ]),
            ),
            (
                &pinned,
                Ok([
                    "docker.io/library/".to_owned() + &pinned,
                    "b".to_owned(),
                    format!("sha256:{SHA256}"),
                ]),
            ),
            ("A", Err(ErrorKind::UppercaseRepository)),
        ],
        via_traits,
    );
}
