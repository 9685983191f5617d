//! Authentication and authorisation of the registry server: htpasswd Basic with an access
//! policy, and the Docker token flow against the server's own token endpoint, including
//! per-repository scopes, anonymous access where the policy grants it, and expiry (with a
//! clock the test moves).

mod conformance;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use conformance::*;
use stencil_registry::server::{
    AccessPolicy, AccessRule, Action, AuthMode, Htpasswd, Principal, ServerConfig,
};
use stencil_registry::{Clock, SleepFuture};

/// A clock that only moves when the test says so; sleeps are real (they pace sweeps).
#[derive(Debug)]
struct TestClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl TestClock {
    fn new() -> Arc<TestClock> {
        Arc::new(TestClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// alice may do everything, bob may only pull, anyone may pull `public/*`.
fn users() -> Htpasswd {
    let alice = bcrypt::hash("wonderland", 4).unwrap_or_default();
    let bob = bcrypt::hash("builder", 4).unwrap_or_default();
    Htpasswd::parse(
        &format!("# test users\nalice:{alice}\nbob:{bob}\n"),
        "test".as_ref(),
    )
    .unwrap_or_else(|error| panic!("{error}"))
}

fn policy() -> AccessPolicy {
    AccessPolicy::new(vec![
        AccessRule::new(
            Principal::User("alice".into()),
            "*",
            &[Action::Pull, Action::Push, Action::Delete],
        ),
        AccessRule::new(Principal::User("bob".into()), "*", &[Action::Pull]),
        AccessRule::new(Principal::Anyone, "public/*", &[Action::Pull]),
    ])
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// One request and what it must get: status, error code, and a header that must contain
/// a text.
struct Case<'a> {
    label: &'a str,
    authorization: Option<String>,
    method: &'a str,
    path: String,
    status: u16,
    code: Option<&'a str>,
    header: Option<(&'a str, String)>,
}

async fn check(target: &Target, case: Case<'_>) -> Result<(), String> {
    let headers: Vec<(&str, &str)> = case
        .authorization
        .as_deref()
        .map(|value| vec![("authorization", value)])
        .unwrap_or_default();
    let reply = target
        .send(case.method, &case.path, &headers, Vec::new())
        .await;
    let mut problems = Vec::new();
    if reply.status != case.status {
        problems.push(format!(
            "status {} (expected {})",
            reply.status, case.status
        ));
    }
    if let Some(code) = case.code
        && !reply.error_codes().iter().any(|found| found == code)
    {
        problems.push(format!("codes {:?} (expected {code})", reply.error_codes()));
    }
    if let Some((name, text)) = &case.header
        && !reply
            .header(name)
            .is_some_and(|value| value.contains(text.as_str()))
    {
        problems.push(format!(
            "header {name} is {:?}, expected to contain {text:?}",
            reply.header(name)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} {}: {}; body {}",
            case.label,
            case.method,
            case.path,
            problems.join(", "),
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

async fn run(target: &Target, cases: Vec<Case<'_>>) {
    let mut failures = Vec::new();
    for case in cases {
        if let Err(failure) = check(target, case).await {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_applies_the_policy() {
    let mut config = ServerConfig::loopback();
    config.auth = AuthMode::Basic {
        users: users(),
        realm: "test realm".into(),
    };
    config.policy = policy();
    let server = StencilServer::start(config).await;
    let target = Target::new("stencil", &server.host);
    let alice = Some(basic("alice", "wonderland"));
    let bob = Some(basic("bob", "builder"));
    let case = |label, authorization: Option<String>, method, path: &str, status, code| Case {
        label,
        authorization,
        method,
        path: path.to_owned(),
        status,
        code,
        header: None,
    };
    run(
        &target,
        vec![
            Case {
                header: Some(("www-authenticate", "Basic realm=\"test realm\"".into())),
                ..case(
                    "no credentials",
                    None,
                    "GET",
                    "/v2/",
                    401,
                    Some("UNAUTHORIZED"),
                )
            },
            case(
                "wrong password",
                Some(basic("alice", "guess")),
                "GET",
                "/v2/",
                401,
                Some("UNAUTHORIZED"),
            ),
            case(
                "unknown user",
                Some(basic("mallory", "wonderland")),
                "GET",
                "/v2/",
                401,
                Some("UNAUTHORIZED"),
            ),
            case(
                "malformed header",
                Some("Basic !!!".into()),
                "GET",
                "/v2/",
                401,
                Some("UNAUTHORIZED"),
            ),
            case("alice", alice.clone(), "GET", "/v2/", 200, None),
            case(
                "alice pushes",
                alice.clone(),
                "POST",
                "/v2/team/app/blobs/uploads/",
                202,
                None,
            ),
            case(
                "bob pulls (the repository is still empty)",
                bob.clone(),
                "GET",
                "/v2/team/app/tags/list",
                404,
                Some("NAME_UNKNOWN"),
            ),
            case(
                "bob may not push",
                bob.clone(),
                "POST",
                "/v2/team/app/blobs/uploads/",
                403,
                Some("DENIED"),
            ),
            case(
                "bob may not delete",
                bob.clone(),
                "DELETE",
                &format!("/v2/team/app/blobs/{}", digest_of(b"x")),
                403,
                Some("DENIED"),
            ),
            case(
                "anonymous pulls public",
                None,
                "GET",
                "/v2/public/app/tags/list",
                404,
                Some("NAME_UNKNOWN"),
            ),
            case(
                "anonymous may not pull private",
                None,
                "GET",
                "/v2/team/app/tags/list",
                401,
                Some("UNAUTHORIZED"),
            ),
            case(
                "anonymous may not push public",
                None,
                "POST",
                "/v2/public/app/blobs/uploads/",
                401,
                Some("UNAUTHORIZED"),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_issues_scoped_tokens_that_expire() {
    let clock = TestClock::new();
    let mut config = ServerConfig::loopback();
    config.auth = AuthMode::Token {
        users: users(),
        service: "test-registry".into(),
        lifetime: Duration::from_secs(60),
        realm: None,
    };
    config.policy = policy();
    config.clock = clock.clone();
    let server = StencilServer::start(config).await;
    let target = Target::new("stencil", &server.host);

    let token = |authorization: Option<String>, scope: &'static str| {
        let target = &target;
        async move {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|v| vec![("authorization", v)])
                .unwrap_or_default();
            let reply = target
                .send(
                    "GET",
                    &format!("/token?service=test-registry&scope={scope}"),
                    &headers,
                    vec![],
                )
                .await;
            assert_eq!(reply.status, 200, "token for {scope}: {reply:?}");
            let token = reply.json()["token"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default();
            assert_eq!(reply.json()["access_token"].as_str(), Some(token.as_str()));
            Some(format!("Bearer {token}"))
        }
    };
    let alice_push = token(
        Some(basic("alice", "wonderland")),
        "repository:team/app:pull,push",
    )
    .await;
    let bob_push = token(
        Some(basic("bob", "builder")),
        "repository:team/app:pull,push",
    )
    .await;
    let anonymous = token(None, "repository:public/app:pull").await;
    let anonymous_private = token(None, "repository:team/app:pull").await;
    let realm = format!(
        "Bearer realm=\"http://{}/token\",service=\"test-registry\"",
        server.host
    );
    let case = |label, authorization: Option<String>, method, path: &str, status, code| Case {
        label,
        authorization,
        method,
        path: path.to_owned(),
        status,
        code,
        header: None,
    };
    run(
        &target,
        vec![
            Case {
                header: Some(("www-authenticate", realm.clone())),
                ..case(
                    "challenge on /v2/",
                    None,
                    "GET",
                    "/v2/",
                    401,
                    Some("UNAUTHORIZED"),
                )
            },
            Case {
                header: Some((
                    "www-authenticate",
                    "scope=\"repository:team/app:push\"".into(),
                )),
                ..case(
                    "challenge names the scope",
                    None,
                    "POST",
                    "/v2/team/app/blobs/uploads/",
                    401,
                    Some("UNAUTHORIZED"),
                )
            },
            case(
                "wrong password at the token endpoint",
                Some(basic("alice", "guess")),
                "GET",
                "/token?scope=repository:team/app:pull",
                401,
                Some("UNAUTHORIZED"),
            ),
            case(
                "garbage token",
                Some("Bearer 0123".into()),
                "GET",
                "/v2/",
                401,
                Some("UNAUTHORIZED"),
            ),
            case(
                "alice's token on /v2/",
                alice_push.clone(),
                "GET",
                "/v2/",
                200,
                None,
            ),
            case(
                "alice's token pushes",
                alice_push.clone(),
                "POST",
                "/v2/team/app/blobs/uploads/",
                202,
                None,
            ),
            Case {
                header: Some(("www-authenticate", "error=\"insufficient_scope\"".into())),
                ..case(
                    "alice's token is for team/app only",
                    alice_push.clone(),
                    "POST",
                    "/v2/other/app/blobs/uploads/",
                    401,
                    Some("UNAUTHORIZED"),
                )
            },
            case(
                "bob's token pulls (the repository is still empty)",
                bob_push.clone(),
                "GET",
                "/v2/team/app/tags/list",
                404,
                Some("NAME_UNKNOWN"),
            ),
            case(
                "bob's token was narrowed to pull",
                bob_push.clone(),
                "POST",
                "/v2/team/app/blobs/uploads/",
                401,
                Some("UNAUTHORIZED"),
            ),
            case(
                "anonymous token pulls public",
                anonymous.clone(),
                "GET",
                "/v2/public/app/tags/list",
                404,
                Some("NAME_UNKNOWN"),
            ),
            case(
                "anonymous token got nothing private",
                anonymous_private.clone(),
                "GET",
                "/v2/team/app/tags/list",
                401,
                Some("UNAUTHORIZED"),
            ),
        ],
    )
    .await;

    clock.advance(Duration::from_secs(61));
    run(
        &target,
        vec![case(
            "expired token",
            alice_push,
            "GET",
            "/v2/team/app/tags/list",
            401,
            Some("UNAUTHORIZED"),
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth2_token_endpoint_takes_password_and_refresh_grants() {
    let mut config = ServerConfig::loopback();
    config.auth = AuthMode::Token {
        users: users(),
        service: "test-registry".into(),
        lifetime: Duration::from_secs(60),
        realm: None,
    };
    config.policy = policy();
    let server = StencilServer::start(config).await;
    let target = Target::new("stencil", &server.host);
    let form = ("content-type", "application/x-www-form-urlencoded");
    let post = |body: String| {
        let target = &target;
        async move {
            target
                .send("POST", "/token", &[form], body.into_bytes())
                .await
        }
    };

    // The password grant, asking for a refresh token as docker login does.
    let reply = post(
        "grant_type=password&service=test-registry&client_id=stencil-test&access_type=offline\
         &username=alice&password=wonderland&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
            .into(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let access = reply.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = reply.json()["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!access.is_empty() && !refresh.is_empty(), "{reply:?}");
    let bearer = format!("Bearer {access}");
    let pushed = target
        .send(
            "POST",
            "/v2/team/app/blobs/uploads/",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(
        pushed.status, 202,
        "the access token carries the push scope: {pushed:?}"
    );

    // The refresh grant gives a new access token for the same user, scoped again.
    let reply = post(format!(
        "grant_type=refresh_token&client_id=stencil-test&refresh_token={refresh}\
         &scope=repository:team/app:pull"
    ))
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let renewed = reply.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!renewed.is_empty() && renewed != access);
    let bearer = format!("Bearer {renewed}");
    let listed = target
        .send(
            "GET",
            "/v2/team/app/tags/list",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(
        listed.status, 404,
        "pull allowed, the repository is empty: {listed:?}"
    );
    let refused = target
        .send(
            "POST",
            "/v2/team/app/blobs/uploads/",
            &[("authorization", &bearer)],
            vec![],
        )
        .await;
    assert_eq!(
        refused.status, 401,
        "the renewed token has only pull: {refused:?}"
    );

    // Refusals: wrong password, unknown refresh token, missing client_id, unknown grant.
    for (body, status) in [
        (
            "grant_type=password&client_id=c&username=alice&password=guess",
            401,
        ),
        (
            "grant_type=refresh_token&client_id=c&refresh_token=0123",
            401,
        ),
        (
            "grant_type=password&username=alice&password=wonderland",
            400,
        ),
        ("grant_type=authorization_code&client_id=c&code=x", 400),
        ("client_id=c", 400),
    ] {
        let reply = post(body.into()).await;
        assert_eq!(reply.status, status, "{body}: {reply:?}");
        assert!(
            reply.json()["access_token"].is_null(),
            "{body}: no token issued"
        );
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("wonderland"),
            "the password never comes back"
        );
    }
}

#[test]
fn htpasswd_refuses_weak_hashes_and_malformed_lines() {
    let cases = [
        ("alice:$apr1$abc$def\n", Some("non-bcrypt")),
        ("alice:{SHA}abcdef\n", Some("non-bcrypt")),
        ("no colon here\n", Some("expected USER:HASH")),
        (":$2y$04$abcdefghijklmnopqrstuu\n", Some("empty user")),
        ("# only a comment\n\n", None),
    ];
    for (text, expected) in cases {
        let result = Htpasswd::parse(text, "test".as_ref());
        match (result, expected) {
            (Ok(_), None) => {}
            (Err(error), Some(fragment)) => {
                assert_eq!(error.kind(), stencil_registry::server::ErrorKind::Htpasswd);
                assert!(error.to_string().contains(fragment), "{text:?}: {error}");
                assert!(error.to_string().contains("line"), "{text:?}: {error}");
            }
            (result, expected) => panic!("{text:?}: got {result:?}, expected {expected:?}"),
        }
    }
}
