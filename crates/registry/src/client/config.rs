//! Which endpoints serve a registry: TLS or plain HTTP, mirrors, extra CAs.
//!
//! HTTPS is the default. Plain HTTP is used only for registries marked
//! insecure (the `--insecure-registry` flag or the `insecure` list of the
//! registries config) and, as docker does, for `localhost` and 127.0.0.0/8,
//! and for those only when they do not answer HTTPS.
//! Mirrors are tried in order before the registry itself, for pulls only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the registries config is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It cannot be read or parsed.
    #[error("registries config {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A CA certificate file cannot be used.
    #[error("CA certificate {path}: {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The error class.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        kontti_core::ErrorKind::Invalid
    }
}

/// The registries config file (`/etc/kontti/registries.json` by default):
/// ```json
/// {"insecure": ["reg.local:5000"],
///  "mirrors": {"docker.io": ["mirror.local:5000"]},
///  "caCerts": ["/etc/kontti/certs/my-ca.pem"]}
/// ```
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Registries reached over plain HTTP.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Mirrors per registry, tried in order before it when pulling.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Extra trusted CA certificates (PEM files).
    #[serde(default, rename = "caCerts")]
    pub ca_certs: Vec<PathBuf>,
}

impl RegistriesConfig {
    /// Reads a config; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<RegistriesConfig, ConfigError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(e) => Err(ConfigError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Whether `host` (`name[:port]`) is reached over plain HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host) || is_loopback(host)
    }

    /// The hosts to try for pulling from `registry`: its mirrors, then itself
    /// (`registry-1.docker.io` for Docker Hub).
    pub fn pull_endpoints(&self, registry: &str) -> Vec<String> {
        let mut out: Vec<String> = self.mirrors.get(registry).cloned().unwrap_or_default();
        out.push(api_host(registry).to_owned());
        out
    }

    /// The base URL of `host`'s API when it is not probed: plain HTTP for
    /// insecure and loopback registries (the client probes those for HTTPS
    /// first).
    pub fn base_url(&self, host: &str) -> String {
        let scheme = if self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }
}

/// The host that serves a registry's API.
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Whether `host[:port]` is localhost or in 127.0.0.0/8 (or ::1).
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http() {
        let c = RegistriesConfig::default();
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base_url("127.8.9.1"), "http://127.8.9.1");
        assert_eq!(c.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(c.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(c.base_url("reg.example:5000"), "https://reg.example:5000");
        assert_eq!(c.base_url("10.0.0.1:5000"), "https://10.0.0.1:5000");
    }

    #[test]
    fn insecure_and_mirrors_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(
            &p,
            r#"{"insecure":["reg.local:5000"],"mirrors":{"docker.io":["m.local"]}}"#,
        )
        .unwrap();
        let c = RegistriesConfig::load(&p).unwrap();
        assert_eq!(c.base_url("reg.local:5000"), "http://reg.local:5000");
        assert_eq!(
            c.pull_endpoints("docker.io"),
            vec!["m.local", "registry-1.docker.io"]
        );
        assert_eq!(c.pull_endpoints("q.io"), vec!["q.io"]);
        std::fs::write(&p, r#"{"insecur":[]}"#).unwrap();
        let e = RegistriesConfig::load(&p).unwrap_err();
        assert!(e.to_string().contains("insecur"), "{e}");
        assert!(RegistriesConfig::load(&dir.path().join("none")).is_ok());
    }
}
