//! Bringing networks back after a reboot: the state under `R/networks`
//! survives, the bridges, nft table, DNS responders and namespaces do not.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use kontti_net::{NetworkError, NetworkSpec, NetworkState, Networks};
use tracing::{info, warn};

use super::{NetError, Settings, state_dir};

/// `statfs` magic of nsfs, the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Whether `path` is a live network namespace file (a bind-mounted or
/// `/proc` nsfs file), not the empty file a pin leaves after a reboot.
// `f_type`'s integer type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn is_namespace(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS_MAGIC)
}

/// Whether the network's responder runs (its pid serves this network's
/// records file).
fn dns_alive(root: &Path, state: &NetworkState) -> bool {
    let Some(pid) = state.dns_pid else {
        return false;
    };
    let records = state_dir(root)
        .join("networks")
        .join(&state.info.name)
        .join("records.json");
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
        cmd.split(|b| *b == 0)
            .any(|arg| arg == records.as_os_str().as_encoded_bytes())
    })
}

fn table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// After a reboot (or after another tool removed kontti's devices), brings
/// every network of `root` back: endpoints whose namespace is gone are
/// dropped; a network left without endpoints whose bridge, nft table or DNS
/// responder is missing is removed and created again with its subnet,
/// bridge name and MTU. A network that still has live endpoints is left as
/// it is. Returns the names of the networks re-created.
pub fn restore(root: &Path) -> Result<Vec<String>, NetError> {
    let settings = Settings::load(root)?;
    let cfg = settings.net_config(root);
    let want_dns = cfg.dns_binary.is_some();
    let table = cfg.nft_table.clone();
    let nets = Networks::new(cfg);
    let mut restored = Vec::new();
    for net in nets.list()? {
        let name = net.info.name.clone();
        for (container, ep) in &net.endpoints {
            if !is_namespace(&ep.attachment.netns) {
                info!(network = %name, container = %container, "dropping an endpoint whose namespace is gone");
                match nets.disconnect(&name, container) {
                    Ok(()) | Err(NetworkError::NotConnected { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let state = nets.inspect(&name)?;
        let bridge_up = Path::new("/sys/class/net")
            .join(&state.info.bridge)
            .exists();
        let healthy = bridge_up && table_exists(&table) && (!want_dns || dns_alive(root, &state));
        if healthy {
            continue;
        }
        if !state.endpoints.is_empty() {
            warn!(network = %name, "network is damaged but has live endpoints: left as it is");
            continue;
        }
        nets.remove(&name)?;
        nets.create(&NetworkSpec {
            name: name.clone(),
            subnet: Some(state.info.subnet),
            bridge: Some(state.info.bridge.clone()),
            mtu: Some(state.info.mtu),
            labels: state.labels.clone(),
            id: (!state.id.is_empty()).then(|| state.id.clone()),
            created: state.created,
        })?;
        info!(network = %name, "network restored");
        restored.push(name);
    }
    Ok(restored)
}
