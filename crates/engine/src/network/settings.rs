//! Node networking settings: `R/networks/config.json`, optional, and the
//! `kontti-dns` helper's location.
//!
//! ```json
//! {"pool": ["10.240.0.0/24"], "upstreams": [], "nftTable": "kontti",
//!  "dnsBinary": "/usr/libexec/kontti/kontti-dns", "dnsPort": 53, "mtu": 1500,
//!  "uplinkForwarding": true}
//! ```
//! Every field is optional. `upstreams` unset means the nameservers of the
//! host's `/etc/resolv.conf`; `[]` means never forward (what tests use).

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use kontti_net::{Ipv4Net, NetConfig};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::NetError;

/// What `R/networks/config.json` may set. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Subnets new networks take, in order (default: docker's pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Vec<Ipv4Net>>,
    /// Resolvers for names that are not containers' (default: the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<SocketAddr>>,
    /// kontti's nftables table (default `kontti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nft_table: Option<String>,
    /// The `kontti-dns` binary (default: `$KONTTI_DNS`, next to the running
    /// binary, then `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_binary: Option<PathBuf>,
    /// The responder's port on each gateway (default 53).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_port: Option<u16>,
    /// MTU of new networks (default 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Whether creating a network enables forwarding on the host's uplink
    /// (default true; tests that never leave the host turn it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_forwarding: Option<bool>,
}

/// The state directory kontti-net keeps under the state root.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join("networks")
}

/// Where the settings live.
pub fn settings_path(root: &Path) -> PathBuf {
    state_dir(root).join("config.json")
}

impl Settings {
    /// The settings of `root` (defaults when the file does not exist).
    pub fn load(root: &Path) -> Result<Settings, NetError> {
        let path = settings_path(root);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::Settings {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(NetError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Writes the settings of `root` (temp file + rename).
    pub fn store(&self, root: &Path) -> Result<(), NetError> {
        let path = settings_path(root);
        let dir = state_dir(root);
        let tmp = dir.join(".config.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| NetError::Settings {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> io::Result<()> {
            fs::create_dir_all(&dir)?;
            fs::write(&tmp, &bytes)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| NetError::Io {
            op: "write",
            path,
            source,
        })
    }

    /// The resolvers used beyond container names.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        match &self.upstreams {
            Some(u) => u.clone(),
            None => host_nameservers(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        }
    }

    /// kontti-net's configuration for `root` with these settings.
    pub fn net_config(&self, root: &Path) -> NetConfig {
        let mut cfg = NetConfig::new(&state_dir(root));
        if let Some(pool) = &self.pool {
            cfg.pool = pool.clone();
        }
        if let Some(t) = &self.nft_table {
            cfg.nft_table = t.clone();
        }
        if let Some(p) = self.dns_port {
            cfg.dns_port = p;
        }
        if let Some(m) = self.mtu {
            cfg.default_mtu = m;
        }
        if let Some(f) = self.uplink_forwarding {
            cfg.uplink_forwarding = f;
        }
        cfg.upstreams = self.upstreams();
        cfg.dns_binary = self.dns_binary.clone().or_else(find_dns_binary);
        if cfg.dns_binary.is_none() {
            warn!("kontti-dns not found: containers will not resolve each other by name");
        }
        cfg
    }
}

/// `$KONTTI_DNS`, else `kontti-dns` next to the running binary (or one
/// directory up, where cargo puts binaries beside `deps/`), else on `PATH`.
fn find_dns_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KONTTI_DNS") {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("kontti-dns");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kontti-dns"))
        .find(|p| p.is_file())
}

/// The `nameserver` lines of a resolv.conf, as port-53 socket addresses.
pub fn host_nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text =
            "# comment\nsearch example\nnameserver 10.0.0.2\nnameserver  ::1\nnameserver bogus\n";
        let got = host_nameservers(text);
        assert_eq!(
            got,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn settings_parse_and_reject_unknown_fields() {
        let s: Settings =
            serde_json::from_str(r#"{"pool":["10.240.0.0/24"],"upstreams":[],"nftTable":"t"}"#)
                .unwrap();
        assert_eq!(s.upstreams, Some(vec![]));
        assert!(s.upstreams().is_empty());
        assert!(serde_json::from_str::<Settings>(r#"{"pools":[]}"#).is_err());
        let cfg = s.net_config(Path::new("/r"));
        assert_eq!(cfg.state_dir, Path::new("/r/networks"));
        assert_eq!(cfg.nft_table, "t");
        assert!(cfg.upstreams.is_empty());
    }
}
