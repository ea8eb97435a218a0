//! Registry credentials and the WWW-Authenticate challenge.
//!
//! Credentials come, in order, from kontti's own auth file (written by
//! `kontti login`, docker's `config.json` format), then docker's
//! `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`):
//! its `credHelpers` entry for the registry, its `auths` entry, then its
//! `credsStore`. Helpers are run as `docker-credential-NAME get` with the
//! registry on stdin, as docker does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Why credentials cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// An auth file exists but cannot be read or parsed.
    #[error("auth file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// logout of a registry without stored credentials.
    #[error("not logged in to {0}")]
    NotLoggedIn(String),
}

impl AuthError {
    /// The error class.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            AuthError::File { .. } => kontti_core::ErrorKind::Invalid,
            AuthError::Helper { .. } => kontti_core::ErrorKind::Unavailable,
            AuthError::NotLoggedIn(_) => kontti_core::ErrorKind::NotFound,
        }
    }
}

/// A user name and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The value of a Basic `Authorization` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The part of docker's `config.json` kontti reads (and, for its own file, writes).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    /// Stored credentials by registry.
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// Helper name per registry.
    #[serde(
        default,
        rename = "credHelpers",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cred_helpers: BTreeMap<String, String>,
    /// Default helper.
    #[serde(
        default,
        rename = "credsStore",
        skip_serializing_if = "Option::is_none"
    )]
    pub creds_store: Option<String>,
    /// Everything else, kept as is.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One `auths` entry.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// An identity token.
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity_token: Option<String>,
}

impl AuthFile {
    /// Reads a file; a missing file is empty.
    pub fn load(path: &Path) -> Result<AuthFile, AuthError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AuthError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(AuthError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |e: std::io::Error| AuthError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = dir.join(format!(".auth-{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    fn entry(&self, registry: &str) -> Option<&AuthEntry> {
        self.auths.get(registry).or_else(|| {
            self.auths
                .iter()
                .find(|(k, _)| normalize_key(k) == registry)
                .map(|(_, v)| v)
        })
    }
}

/// The registry a key of `auths` names: docker writes Docker Hub as
/// `https://index.docker.io/v1/`.
fn normalize_key(key: &str) -> &str {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The key kontti uses for a registry in auth files (docker's for Docker Hub).
fn file_key(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

fn decode_entry(e: &AuthEntry) -> Option<Credentials> {
    if let Some(tok) = &e.identity_token {
        return Some(Credentials {
            username: "<token>".into(),
            password: tok.clone(),
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e.auth.as_deref()?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials {
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

/// Where credentials are looked up and stored.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    /// kontti's own auth file (read first; `login` writes here).
    pub auth_file: PathBuf,
    /// docker's config.json (read only).
    pub docker_config: Option<PathBuf>,
    /// Directories searched for `docker-credential-*` helpers before `$PATH`.
    pub helper_dirs: Vec<PathBuf>,
}

impl CredentialStore {
    /// The default locations: `$KONTTI_AUTH_FILE`, else
    /// `$XDG_CONFIG_HOME/kontti/auth.json` (`~/.config/kontti/auth.json`);
    /// docker's `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub fn from_env() -> CredentialStore {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        let auth_file = std::env::var_os("KONTTI_AUTH_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| home.join(".config"))
                    .join("kontti/auth.json")
            });
        let docker_config = Some(
            std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".docker"))
                .join("config.json"),
        );
        CredentialStore {
            auth_file,
            docker_config,
            helper_dirs: Vec::new(),
        }
    }

    /// The credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        let own = AuthFile::load(&self.auth_file)?;
        if let Some(c) = own.entry(registry).and_then(decode_entry) {
            return Ok(Some(c));
        }
        let Some(path) = &self.docker_config else {
            return Ok(None);
        };
        let docker = AuthFile::load(path)?;
        let helper = docker
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_key(k) == registry)
            .map(|(_, v)| v.clone());
        if let Some(h) = helper {
            return run_helper(&self.helper_dirs, &h, registry);
        }
        if let Some(c) = docker.entry(registry).and_then(decode_entry) {
            return Ok(Some(c));
        }
        if let Some(h) = &docker.creds_store {
            return run_helper(&self.helper_dirs, h, registry);
        }
        Ok(None)
    }

    /// Stores credentials in kontti's auth file.
    pub fn store(&self, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
        let mut f = AuthFile::load(&self.auth_file)?;
        let raw = format!("{}:{}", creds.username, creds.password);
        f.auths.insert(
            file_key(registry),
            AuthEntry {
                auth: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                identity_token: None,
            },
        );
        f.save(&self.auth_file)
    }

    /// Removes stored credentials from kontti's auth file.
    pub fn remove(&self, registry: &str) -> Result<(), AuthError> {
        let mut f = AuthFile::load(&self.auth_file)?;
        let keys: Vec<String> = f
            .auths
            .keys()
            .filter(|k| normalize_key(k) == registry || k.as_str() == registry)
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err(AuthError::NotLoggedIn(registry.to_owned()));
        }
        for k in keys {
            f.auths.remove(&k);
        }
        f.save(&self.auth_file)
    }
}

fn run_helper(
    dirs: &[PathBuf],
    name: &str,
    registry: &str,
) -> Result<Option<Credentials>, AuthError> {
    let herr = |reason: String| AuthError::Helper {
        helper: name.to_owned(),
        registry: registry.to_owned(),
        reason,
    };
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let program = format!("docker-credential-{name}");
    let found = dirs.iter().map(|d| d.join(&program)).find(|p| p.is_file());
    let mut child = Command::new(found.unwrap_or_else(|| PathBuf::from(&program)))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| herr(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| herr(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| herr(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(herr(
            format!("{} {}", out.status, msg.trim()).trim().to_owned(),
        ));
    }
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let r: Reply = serde_json::from_str(&stdout).map_err(|e| herr(format!("bad reply: {e}")))?;
    Ok(Some(Credentials {
        username: r.username,
        password: r.secret,
    }))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service parameter, if any.
        service: Option<String>,
        /// The scope the registry asked for, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        });
    }
    None
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = s[ks..i].trim().to_owned();
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let vs = i.min(b.len());
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i.min(b.len())].trim().to_owned();
        }
        if !key.is_empty() {
            out.push((key, val));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn stores_reads_and_removes_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore {
            auth_file: dir.path().join("kontti/auth.json"),
            docker_config: Some(dir.path().join("docker.json")),
            helper_dirs: Vec::new(),
        };
        assert_eq!(store.get("r.example").unwrap(), None);
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store.store("r.example", &c).unwrap();
        assert_eq!(store.get("r.example").unwrap(), Some(c.clone()));
        store.store("docker.io", &c).unwrap();
        let text = std::fs::read_to_string(&store.auth_file).unwrap();
        assert!(text.contains("https://index.docker.io/v1/"), "{text}");
        assert_eq!(store.get("docker.io").unwrap(), Some(c));
        store.remove("r.example").unwrap();
        assert_eq!(store.get("r.example").unwrap(), None);
        assert!(matches!(
            store.remove("r.example"),
            Err(AuthError::NotLoggedIn(_))
        ));
    }

    #[test]
    fn reads_docker_config_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread reg\n[ \"$reg\" = h.example ] || { echo credentials not found in native keychain; exit 1; }\necho '{\"ServerURL\":\"h.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"d.example":{"auth":"ZHU6ZHA="}},"credHelpers":{"h.example":"fake"},"credsStore":"fake"}"#,
        )
        .unwrap();
        let store = CredentialStore {
            auth_file: dir.path().join("none.json"),
            docker_config: Some(docker),
            helper_dirs: Vec::new(),
        };
        let store = CredentialStore {
            helper_dirs: vec![dir.path().to_owned()],
            ..store
        };
        let d = store.get("d.example").unwrap().unwrap();
        assert_eq!((d.username.as_str(), d.password.as_str()), ("du", "dp"));
        let h = store.get("h.example").unwrap().unwrap();
        assert_eq!((h.username.as_str(), h.password.as_str()), ("hu", "hs"));
        assert_eq!(
            store.get("other.example").unwrap(),
            None,
            "credsStore says not found"
        );
    }
}
