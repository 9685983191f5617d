//! Who may do what on the server: htpasswd users, an access policy, and the token service.
//!
//! Three modes ([`AuthMode`]): none (only allowed on loopback), HTTP Basic against a bcrypt
//! htpasswd file, and Bearer tokens issued by the server's own token endpoint (`GET /token`,
//! the Docker token flow: a `401` carries `WWW-Authenticate: Bearer realm=…,service=…,
//! scope=repository:NAME:pull,push`, the client fetches a token with its Basic
//! credentials or anonymously, and retries). In both authenticated modes an
//! [`AccessPolicy`] decides which user may pull, push or delete which repositories; a
//! token only ever carries the intersection of what was asked and what the policy grants.
//! Tokens are random and kept in memory: they do not survive a restart, which clients
//! handle by asking again. This module does not parse routes or talk HTTP beyond headers.
//!
//! ```
//! use stencil_registry::server::{AccessPolicy, AccessRule, Action, Htpasswd, Principal};
//!
//! let hash = bcrypt::hash("secret", 4).unwrap();
//! let users = Htpasswd::parse(&format!("alice:{hash}\n"), "inline".as_ref()).unwrap();
//! assert!(users.verify("alice", "secret"));
//! assert!(!users.verify("alice", "guess"));
//!
//! let policy = AccessPolicy::new(vec![
//!     AccessRule::new(Principal::Anyone, "public/*", &[Action::Pull]),
//!     AccessRule::new(Principal::User("alice".into()), "*", &[Action::Pull, Action::Push]),
//! ]);
//! assert!(policy.allows(None, "public/app", Action::Pull));
//! assert!(!policy.allows(None, "public/app", Action::Push));
//! assert!(policy.allows(Some("alice"), "team/app", Action::Push));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;

use super::error::{ApiError, Code, Error, Result};
use super::name::RepositoryName;
use crate::Clock;

/// Users and their bcrypt password hashes, as in an Apache htpasswd file made with
/// `htpasswd -B`.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes stay out of logs.
        f.debug_struct("Htpasswd")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Htpasswd {
    /// Reads an htpasswd file.
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::Htpasswd {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        Htpasswd::parse(&text, path)
    }

    /// Parses htpasswd text (`user:$2y$…` lines; blank lines and `#` comments skipped);
    /// `path` names the source in errors. Only bcrypt hashes are accepted: the older
    /// formats (crypt, MD5, SHA-1) are too weak to offer.
    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: &str| Error::Htpasswd {
                path: path.to_path_buf(),
                reason: format!("line {}: {reason}", number + 1),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| fail("expected USER:HASH"))?;
            if user.is_empty() {
                return Err(fail("empty user name"));
            }
            if !["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|prefix| hash.starts_with(prefix))
            {
                return Err(fail(&format!(
                    "user {user:?} has a non-bcrypt hash; recreate it with `htpasswd -B`"
                )));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd { users })
    }

    /// Whether `password` is `user`'s password. Slow on purpose (bcrypt): call it off the
    /// async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    }

    /// Whether the file names `user`.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// An operation on a repository, as named in token scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests, mount blobs.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The scope name: `pull`, `push`, `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// The action named `name` in a scope (`*` is handled by the caller).
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];
}

/// Who an [`AccessRule`] is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Everyone, with or without credentials.
    Anyone,
    /// Every user with valid credentials.
    Authenticated,
    /// One user.
    User(String),
}

/// One grant: `principal` may do `actions` on repositories matching `repositories`
/// (`*` for all, `prefix/*` for everything under a prefix, else one exact name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    principal: Principal,
    repositories: String,
    actions: Vec<Action>,
}

impl AccessRule {
    /// A rule granting `actions` on `repositories` to `principal`.
    pub fn new(principal: Principal, repositories: &str, actions: &[Action]) -> AccessRule {
        AccessRule {
            principal,
            repositories: repositories.to_owned(),
            actions: actions.to_vec(),
        }
    }

    fn matches(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        let principal = match &self.principal {
            Principal::Anyone => true,
            Principal::Authenticated => user.is_some(),
            Principal::User(name) => user == Some(name.as_str()),
        };
        let repository_matches = match self.repositories.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => repository.starts_with(prefix),
            None => self.repositories == repository,
        };
        principal && repository_matches && self.actions.contains(&action)
    }
}

/// The rules of an authenticated server; anything no rule grants is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    rules: Vec<AccessRule>,
}

impl AccessPolicy {
    /// A policy made of `rules`.
    pub fn new(rules: Vec<AccessRule>) -> AccessPolicy {
        AccessPolicy { rules }
    }

    /// Every authenticated user may pull, push and delete everything; anonymous users
    /// nothing. The default.
    pub fn authenticated_users() -> AccessPolicy {
        AccessPolicy::new(vec![AccessRule::new(
            Principal::Authenticated,
            "*",
            &Action::ALL,
        )])
    }

    /// Whether `user` (`None`: anonymous) may do `action` on `repository`.
    pub fn allows(&self, user: Option<&str>, repository: &str, action: Action) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.matches(user, repository, action))
    }
}

impl Default for AccessPolicy {
    fn default() -> AccessPolicy {
        AccessPolicy::authenticated_users()
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum AuthMode {
    /// No authentication: everyone may do everything. Refused on a non-loopback address
    /// unless forced.
    #[default]
    None,
    /// HTTP Basic against `users`, on every request.
    Basic {
        /// The users.
        users: Htpasswd,
        /// The realm named in the challenge.
        realm: String,
    },
    /// Bearer tokens from the server's own `GET /token` endpoint; the endpoint takes Basic
    /// credentials of `users` (or none, for anonymous access where the policy grants it).
    Token {
        /// The users.
        users: Htpasswd,
        /// The service name clients must send to the token endpoint.
        service: String,
        /// How long a token is valid.
        lifetime: Duration,
        /// The token endpoint's URL as clients must reach it; by default
        /// `http(s)://HOST/token` with HOST from the request.
        realm: Option<String>,
    },
}

impl AuthMode {
    /// Basic auth with the users of the htpasswd file at `path`.
    pub fn basic(path: &Path) -> Result<AuthMode> {
        Ok(AuthMode::Basic {
            users: Htpasswd::load(path)?,
            realm: "stencil registry".to_owned(),
        })
    }

    /// Token auth with the users of the htpasswd file at `path`, tokens valid 5 minutes.
    pub fn token(path: &Path) -> Result<AuthMode> {
        Ok(AuthMode::Token {
            users: Htpasswd::load(path)?,
            service: "stencil-registry".to_owned(),
            lifetime: Duration::from_secs(300),
            realm: None,
        })
    }

    /// Whether clients must authenticate.
    pub fn is_none(&self) -> bool {
        matches!(self, AuthMode::None)
    }
}

/// Who made a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Identity {
    pub(crate) user: Option<String>,
}

/// What one token lets its holder do.
#[derive(Debug, Clone)]
struct Grant {
    user: Option<String>,
    scopes: Vec<(String, Action)>,
    expires: Instant,
}

/// The authentication state of a running server.
pub(crate) struct Authenticator {
    mode: AuthMode,
    policy: AccessPolicy,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<String, Grant>>,
    /// Authorization headers already verified, so bcrypt runs once per client rather than
    /// once per request. Bounded: cleared when full.
    verified: Mutex<HashMap<String, String>>,
    /// Refresh tokens issued by the OAuth2 password grant, to the user they stand for.
    /// Bounded: the oldest half goes when full.
    refresh: Mutex<HashMap<String, (String, Instant)>>,
}

const VERIFIED_CACHE_LIMIT: usize = 1024;

/// At most this many refresh tokens are remembered.
const REFRESH_TOKEN_LIMIT: usize = 4096;

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The scope a client must ask for to do `actions` on `repository`.
fn scope_text(repository: &str, actions: &[Action]) -> String {
    let names: Vec<&str> = actions.iter().map(|action| action.as_str()).collect();
    format!("repository:{repository}:{}", names.join(","))
}

impl Authenticator {
    pub(crate) fn new(
        mode: AuthMode,
        policy: AccessPolicy,
        clock: Arc<dyn Clock>,
    ) -> Authenticator {
        Authenticator {
            mode,
            policy,
            clock,
            tokens: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
        }
    }

    /// The user named by a `Basic` Authorization header, `Ok(None)` without one.
    async fn basic_user(
        &self,
        headers: &HeaderMap,
        users: &Htpasswd,
    ) -> std::result::Result<Option<String>, ()> {
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return Err(());
        };
        if let Some(user) = lock(&self.verified).get(value) {
            return Ok(Some(user.clone()));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ())?;
        let decoded = String::from_utf8(decoded).map_err(|_| ())?;
        let (user, password) = decoded.split_once(':').ok_or(())?;
        let (user, password, users) = (user.to_owned(), password.to_owned(), users.clone());
        let checked_user = user.clone();
        let valid = tokio::task::spawn_blocking(move || users.verify(&checked_user, &password))
            .await
            .unwrap_or(false);
        if !valid {
            return Err(());
        }
        let mut verified = lock(&self.verified);
        if verified.len() >= VERIFIED_CACHE_LIMIT {
            verified.clear();
        }
        verified.insert(value.to_owned(), user.clone());
        Ok(Some(user))
    }

    fn challenge(
        &self,
        host: &str,
        tls: bool,
        scope: Option<String>,
        insufficient: bool,
    ) -> String {
        match &self.mode {
            AuthMode::None => String::new(),
            AuthMode::Basic { realm, .. } => format!("Basic realm=\"{realm}\""),
            AuthMode::Token { service, realm, .. } => {
                let realm = realm.clone().unwrap_or_else(|| {
                    format!("{}://{host}/token", if tls { "https" } else { "http" })
                });
                let mut value = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
                if let Some(scope) = scope {
                    value.push_str(&format!(",scope=\"{scope}\""));
                }
                if insufficient {
                    value.push_str(",error=\"insufficient_scope\"");
                }
                value
            }
        }
    }

    fn unauthorized(
        &self,
        host: &str,
        tls: bool,
        scope: Option<String>,
        insufficient: bool,
        message: &str,
    ) -> ApiError {
        ApiError::new(Code::Unauthorized, message).with_header(
            "www-authenticate",
            self.challenge(host, tls, scope, insufficient),
        )
    }

    /// Checks that the request may do every `(repository, action)` in `needs` (empty: the
    /// `/v2/` check, which only needs valid credentials when auth is on).
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        host: &str,
        tls: bool,
        needs: &[(&RepositoryName, Action)],
    ) -> std::result::Result<Identity, ApiError> {
        let scope = needs.first().map(|(repo, _)| {
            let actions: Vec<Action> = needs
                .iter()
                .filter(|(other, _)| other == repo)
                .map(|(_, action)| *action)
                .collect();
            scope_text(repo.as_str(), &actions)
        });
        match &self.mode {
            AuthMode::None => Ok(Identity::default()),
            AuthMode::Basic { users, .. } => {
                let user = self.basic_user(headers, users).await.map_err(|()| {
                    self.unauthorized(host, tls, None, false, "invalid username or password")
                })?;
                if user.is_none()
                    && (needs.is_empty()
                        || !needs
                            .iter()
                            .all(|(repo, action)| self.policy.allows(None, repo.as_str(), *action)))
                {
                    return Err(self.unauthorized(
                        host,
                        tls,
                        None,
                        false,
                        "authentication required",
                    ));
                }
                for (repo, action) in needs {
                    if !self.policy.allows(user.as_deref(), repo.as_str(), *action) {
                        return Err(ApiError::new(
                            Code::Denied,
                            format!(
                                "{} may not {} repository {repo}",
                                user.as_deref().unwrap_or("anonymous"),
                                action.as_str()
                            ),
                        ));
                    }
                }
                Ok(Identity { user })
            }
            AuthMode::Token { .. } => {
                let token = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    });
                let now = self.clock.now();
                let grant = token.and_then(|token| {
                    lock(&self.tokens)
                        .get(token.trim())
                        .filter(|grant| grant.expires > now)
                        .cloned()
                });
                let Some(grant) = grant else {
                    return Err(self.unauthorized(
                        host,
                        tls,
                        scope,
                        false,
                        "authentication required: fetch a token from the token endpoint",
                    ));
                };
                for (repo, action) in needs {
                    let granted = grant
                        .scopes
                        .iter()
                        .any(|(name, granted)| name == repo.as_str() && granted == action);
                    if !granted {
                        return Err(self.unauthorized(
                            host,
                            tls,
                            scope,
                            true,
                            &format!(
                                "token does not grant {} on repository {repo}",
                                action.as_str()
                            ),
                        ));
                    }
                }
                Ok(Identity { user: grant.user })
            }
        }
    }

    /// Whether `identity` may see `repository` in listings (catalog, search).
    pub(crate) fn may_list(&self, identity: &Identity, repository: &str) -> bool {
        match self.mode {
            AuthMode::None => true,
            _ => self
                .policy
                .allows(identity.user.as_deref(), repository, Action::Pull),
        }
    }

    /// The token endpoint: authenticates Basic credentials (or none) and issues a token for
    /// the requested scopes, narrowed by the policy. Returns the JSON body.
    pub(crate) async fn issue_token(
        &self,
        headers: &HeaderMap,
        host: &str,
        domain: &str,
        scopes: &[String],
    ) -> std::result::Result<String, ApiError> {
        let AuthMode::Token {
            users, lifetime, ..
        } = &self.mode
        else {
            return Err(
                ApiError::new(Code::Unsupported, "this registry does not issue tokens")
                    .with_status(hyper::StatusCode::NOT_FOUND),
            );
        };
        let user = self.basic_user(headers, users).await.map_err(|()| {
            ApiError::new(Code::Unauthorized, "invalid username or password")
                .with_header("www-authenticate", format!("Basic realm=\"{host}\""))
        })?;
        Ok(self
            .grant(user, domain, scopes, *lifetime, None)
            .to_string())
    }

    /// The OAuth2 token endpoint (`POST /token`, form-encoded, as docker's client uses it):
    /// `grant_type=password` with `username` and `password` (a refresh token comes back
    /// when `access_type=offline`), or `grant_type=refresh_token` with `refresh_token`.
    /// `client_id` is required by the protocol. Returns the JSON body.
    pub(crate) async fn issue_oauth_token(
        &self,
        form: &[(String, String)],
        domain: &str,
    ) -> std::result::Result<String, ApiError> {
        let AuthMode::Token {
            users, lifetime, ..
        } = &self.mode
        else {
            return Err(
                ApiError::new(Code::Unsupported, "this registry does not issue tokens")
                    .with_status(hyper::StatusCode::NOT_FOUND),
            );
        };
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let invalid = |message: &str| {
            ApiError::new(Code::Unauthorized, message.to_owned())
                .with_status(hyper::StatusCode::BAD_REQUEST)
        };
        if field("client_id").is_none_or(str::is_empty) {
            return Err(invalid("the token request lacks client_id"));
        }
        let scopes: Vec<String> = field("scope").map(str::to_owned).into_iter().collect();
        let now = self.clock.now();
        match field("grant_type") {
            Some("password") => {
                let (Some(user), Some(password)) = (field("username"), field("password")) else {
                    return Err(invalid("the password grant needs username and password"));
                };
                let (checked, password, users) =
                    (user.to_owned(), password.to_owned(), users.clone());
                let valid = tokio::task::spawn_blocking(move || users.verify(&checked, &password))
                    .await
                    .unwrap_or(false);
                if !valid {
                    return Err(ApiError::new(
                        Code::Unauthorized,
                        "invalid username or password",
                    ));
                }
                let refresh = (field("access_type") == Some("offline")).then(|| {
                    let token = super::random_hex(32);
                    let mut refresh = lock(&self.refresh);
                    if refresh.len() >= REFRESH_TOKEN_LIMIT {
                        let mut ages: Vec<Instant> = refresh.values().map(|(_, at)| *at).collect();
                        ages.sort();
                        let cut = ages[ages.len() / 2];
                        refresh.retain(|_, (_, at)| *at > cut);
                    }
                    refresh.insert(token.clone(), (user.to_owned(), now));
                    token
                });
                Ok(self
                    .grant(Some(user.to_owned()), domain, &scopes, *lifetime, refresh)
                    .to_string())
            }
            Some("refresh_token") => {
                let Some(token) = field("refresh_token") else {
                    return Err(invalid("the refresh_token grant needs refresh_token"));
                };
                let user = lock(&self.refresh).get(token).map(|(user, _)| user.clone());
                let Some(user) = user else {
                    return Err(ApiError::new(
                        Code::Unauthorized,
                        "unknown or revoked refresh token",
                    ));
                };
                // The user may have been removed from the htpasswd file since.
                if !users.has_user(&user) {
                    lock(&self.refresh).remove(token);
                    return Err(ApiError::new(
                        Code::Unauthorized,
                        "the user no longer exists",
                    ));
                }
                Ok(self
                    .grant(Some(user), domain, &scopes, *lifetime, None)
                    .to_string())
            }
            Some(other) => Err(invalid(&format!(
                "unsupported grant_type {other:?}: use password or refresh_token"
            ))),
            None => Err(invalid("the token request lacks grant_type")),
        }
    }

    /// Issues a token for `user` and the requested `scopes` narrowed by the policy.
    fn grant(
        &self,
        user: Option<String>,
        domain: &str,
        scopes: &[String],
        lifetime: Duration,
        refresh_token: Option<String>,
    ) -> serde_json::Value {
        let mut granted = Vec::new();
        for scope in scopes.iter().flat_map(|scope| scope.split(' ')) {
            let mut parts = scope.rsplitn(2, ':');
            let (Some(actions), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some(name) = rest.strip_prefix("repository:") else {
                continue;
            };
            let Some(repo) = RepositoryName::parse(domain, name) else {
                continue;
            };
            for action_name in actions.split(',') {
                let actions: Vec<Action> = if action_name == "*" {
                    Action::ALL.to_vec()
                } else {
                    Action::from_name(action_name).into_iter().collect()
                };
                for action in actions {
                    if self.policy.allows(user.as_deref(), repo.as_str(), action) {
                        granted.push((repo.as_str().to_owned(), action));
                    }
                }
            }
        }
        let token = super::random_hex(32);
        let now = self.clock.now();
        {
            let mut tokens = lock(&self.tokens);
            tokens.retain(|_, grant| grant.expires > now);
            tokens.insert(
                token.clone(),
                Grant {
                    user,
                    scopes: granted,
                    expires: now + lifetime,
                },
            );
        }
        // `issued_at` is optional and clients parse it as RFC 3339; leaving it out lets
        // them count the lifetime from when they received the token.
        let mut body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": lifetime.as_secs(),
        });
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = serde_json::Value::String(refresh_token);
        }
        body
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent across a panic (single inserts and removals).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
