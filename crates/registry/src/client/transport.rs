//! One repository on one registry endpoint: authenticated requests with
//! retries.
//!
//! Authentication follows the challenge: a request goes out with the
//! current `Authorization` (none at first); a 401 carries `WWW-Authenticate`,
//! and kontti answers `Basic` with the stored credentials or `Bearer` by asking
//! the token realm for a token of the repository's scope (with the stored
//! credentials when there are any, anonymously otherwise). Transport errors,
//! 429 (honouring `Retry-After`) and 5xx answers are retried with back-off.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::auth::{Challenge, Credentials, parse_challenge};
use super::error::{ClientError, chain};

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// First back-off delay; doubled per attempt.
    pub base_delay: Duration,
    /// Longest delay honoured (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            retries: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// A repository on a registry endpoint.
pub struct Repo {
    http: reqwest::Client,
    /// `http(s)://host[:port]`.
    pub base: String,
    /// The registry name credentials are stored under.
    pub registry: String,
    /// The repository path.
    pub name: String,
    creds: Option<Credentials>,
    scopes: Vec<String>,
    auth: Arc<Mutex<Option<String>>>,
    retry: Retry,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Repo {
    /// A repository session; `push` widens the token scope to `pull,push`.
    pub fn new(
        http: reqwest::Client,
        base: String,
        registry: String,
        name: String,
        creds: Option<Credentials>,
        push: bool,
        retry: Retry,
    ) -> Repo {
        let actions = if push { "pull,push" } else { "pull" };
        let scopes = vec![format!("repository:{name}:{actions}")];
        Repo {
            http,
            base,
            registry,
            name,
            creds,
            scopes,
            auth: Arc::new(Mutex::new(None)),
            retry,
        }
    }

    /// Adds `repository:<from>:pull` to the token scope (for mounts).
    pub fn add_pull_scope(&mut self, from: &str) {
        let s = format!("repository:{from}:pull");
        if !self.scopes.contains(&s) {
            self.scopes.push(s);
        }
    }

    /// Asks tokens for no repository scope (for `GET /v2/` on login).
    pub fn clear_scopes(&mut self) {
        self.scopes.clear();
    }

    /// The URL of an API path below `/v2/<name>/`.
    pub fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{}", self.base, self.name, tail)
    }

    /// Sends a request built by `build` (called once per attempt), handling
    /// authentication and retries. Returns the final answer whatever its
    /// status, except 401 (an error) and retried statuses that stayed
    /// failing (an error).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let mut attempt = 0u32;
        let mut authenticated = false;
        loop {
            let header = self.auth.lock().await.clone();
            let mut rb = build(self.http.request(method.clone(), url));
            if let Some(h) = header {
                rb = rb.header(reqwest::header::AUTHORIZATION, h);
            }
            let result = rb.send().await;
            let delay = match result {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED {
                        if authenticated {
                            return Err(self.unauthorized(resp).await);
                        }
                        let challenge = resp
                            .headers()
                            .get(reqwest::header::WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_challenge);
                        let Some(challenge) = challenge else {
                            return Err(self.unauthorized(resp).await);
                        };
                        self.authenticate(&challenge).await?;
                        authenticated = true;
                        continue;
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
                    if !retryable {
                        return Ok(resp);
                    }
                    if attempt >= self.retry.retries {
                        return Err(status_error(url, resp).await);
                    }
                    let after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    tracing::debug!(%url, %status, "retrying");
                    after.unwrap_or_else(|| self.backoff(attempt))
                }
                Err(e) => {
                    if attempt >= self.retry.retries {
                        return Err(ClientError::Http {
                            url: url.to_owned(),
                            reason: chain(&e),
                        });
                    }
                    tracing::debug!(%url, error = %chain(&e), "retrying");
                    self.backoff(attempt)
                }
            };
            attempt += 1;
            tokio::time::sleep(delay.min(self.retry.max_delay)).await;
        }
    }

    /// The back-off before attempt `n + 1`.
    pub fn backoff(&self, n: u32) -> Duration {
        (self.retry.base_delay * 2u32.saturating_pow(n.min(16))).min(self.retry.max_delay)
    }

    /// The retry policy.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    async fn unauthorized(&self, resp: Response) -> ClientError {
        let msg = error_message(resp).await;
        let reason = match (&self.creds, msg) {
            (None, Some(m)) => format!("{m} (no credentials; use kontti login {})", self.registry),
            (None, None) => format!(
                "authentication required (use kontti login {})",
                self.registry
            ),
            (Some(_), Some(m)) => m,
            (Some(_), None) => "the registry refused the credentials".to_owned(),
        };
        ClientError::Unauthorized {
            registry: self.registry.clone(),
            reason,
        }
    }

    async fn authenticate(&self, challenge: &Challenge) -> Result<(), ClientError> {
        let header = match challenge {
            Challenge::Basic => match &self.creds {
                Some(c) => c.basic_header(),
                None => {
                    return Err(ClientError::Unauthorized {
                        registry: self.registry.clone(),
                        reason: format!(
                            "the registry wants a user name and password (use kontti login {})",
                            self.registry
                        ),
                    });
                }
            },
            Challenge::Bearer { realm, service, .. } => {
                let token = self.fetch_token(realm, service.as_deref()).await?;
                format!("Bearer {token}")
            }
        };
        *self.auth.lock().await = Some(header);
        Ok(())
    }

    async fn fetch_token(&self, realm: &str, service: Option<&str>) -> Result<String, ClientError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in &self.scopes {
            query.push(("scope", s));
        }
        let mut attempt = 0;
        let resp = loop {
            let mut rb = self.http.get(realm).query(&query);
            if let Some(c) = &self.creds {
                rb = rb.basic_auth(&c.username, Some(&c.password));
            }
            match rb.send().await {
                Ok(r)
                    if (r.status().is_server_error() || r.status() == 429)
                        && attempt < self.retry.retries => {}
                Ok(r) => break r,
                Err(e) if attempt >= self.retry.retries => {
                    return Err(ClientError::Http {
                        url: realm.to_owned(),
                        reason: chain(&e),
                    });
                }
                Err(_) => {}
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let reason = match &self.creds {
                Some(_) => "the token service refused the credentials".to_owned(),
                None => format!(
                    "the token service wants credentials (use kontti login {})",
                    self.registry
                ),
            };
            return Err(ClientError::Unauthorized {
                registry: self.registry.clone(),
                reason,
            });
        }
        if !status.is_success() {
            return Err(status_error(realm, resp).await);
        }
        let body = resp.bytes().await.map_err(|e| ClientError::Http {
            url: realm.to_owned(),
            reason: chain(&e),
        })?;
        let reply: TokenReply =
            serde_json::from_slice(&body).map_err(|e| ClientError::Unauthorized {
                registry: self.registry.clone(),
                reason: format!("bad token reply from {realm}: {e}"),
            })?;
        reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::Unauthorized {
                registry: self.registry.clone(),
                reason: format!("token reply from {realm} has no token"),
            })
    }
}

/// The message of a spec-shaped error body, if any.
pub(crate) async fn error_message(resp: Response) -> Option<String> {
    let body = resp.bytes().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let e = &v["errors"][0];
    let code = e["code"].as_str().unwrap_or("");
    let msg = e["message"].as_str().unwrap_or("");
    match (code.is_empty(), msg.is_empty()) {
        (true, true) => None,
        (false, true) => Some(code.to_owned()),
        (true, false) => Some(msg.to_owned()),
        (false, false) => Some(format!("{code}: {msg}")),
    }
}

/// An error for an unexpected status.
pub(crate) async fn status_error(url: &str, resp: Response) -> ClientError {
    let status = resp.status().as_u16();
    let message = error_message(resp).await;
    ClientError::Status {
        url: url.to_owned(),
        status,
        message,
    }
}
