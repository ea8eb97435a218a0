//! Networks on one host: the layer the engine calls. It ties IPAM, the bridge
//! driver, the firewall and the DNS responder together, keeps each network's
//! state in `STATE/networks/NAME/network.json`, and serialises changes with a
//! file lock so that several kontti processes can share one state root.
//!
//! Every operation either completes or undoes what it did before failing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::addr::{Ipv4Net, PortMapping, Protocol};
use crate::bridge::BridgeDriver;
use crate::dns::{Record, RecordsFile};
use crate::driver::{Attachment, DriverError, EndpointSpec, NetworkDriver, NetworkInfo};
use crate::ipam::{Ipam, IpamError, default_pool};
use crate::nft::{Firewall, NftError};

/// Network failures, as users see them.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The network name is not `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 bytes.
    #[error("invalid network name {0:?}: use letters, digits, '_', '.', '-' (at most 64)")]
    InvalidName(String),
    /// A kept network id that is not 64 hex characters.
    #[error("invalid network id {0:?}: expected 64 hex characters")]
    InvalidId(String),
    /// An MTU outside 576..=65535.
    #[error("invalid mtu {0}: expected 576..=65535")]
    InvalidMtu(u32),
    /// No network of that name, id or id prefix.
    #[error("network {0} not found")]
    NotFound(String),
    /// An id prefix that several networks' ids start with.
    #[error("multiple networks found with prefix: {0}")]
    Ambiguous(String),
    /// A network of that name exists.
    #[error("network {0} already exists")]
    AlreadyExists(String),
    /// The network still has endpoints.
    #[error("network {network} has active endpoints: {endpoints}")]
    InUse {
        /// The network.
        network: String,
        /// The containers attached, comma-separated.
        endpoints: String,
    },
    /// The container is connected to the network already.
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// The container is not connected to the network.
    #[error("container {container} is not connected to network {network}")]
    NotConnected {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// The host port is taken (by kontti or by a process on the host).
    #[error("port {port} is already in use: {reason}")]
    PortInUse {
        /// The publication asked for.
        port: PortMapping,
        /// Who holds it.
        reason: String,
    },
    /// A bridge name asked for is taken by another network.
    #[error("bridge {bridge} is used by network {network}")]
    BridgeTaken {
        /// The bridge.
        bridge: String,
        /// The network that has it.
        network: String,
    },
    /// The DNS responder did not start.
    #[error("dns responder for network {network}: {detail}")]
    Dns {
        /// The network.
        network: String,
        /// What went wrong.
        detail: String,
    },
    /// IPAM refused.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The firewall failed.
    #[error(transparent)]
    Firewall(#[from] NftError),
    /// State files could not be read or written.
    #[error("network state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl NetworkError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::InvalidName(_)
            | NetworkError::InvalidId(_)
            | NetworkError::InvalidMtu(_)
            | NetworkError::Ambiguous(_) => ErrorKind::Invalid,
            NetworkError::NotFound(_) | NetworkError::NotConnected { .. } => ErrorKind::NotFound,
            NetworkError::AlreadyExists(_) | NetworkError::AlreadyConnected { .. } => {
                ErrorKind::AlreadyExists
            }
            NetworkError::InUse { .. }
            | NetworkError::PortInUse { .. }
            | NetworkError::BridgeTaken { .. } => ErrorKind::Conflict,
            NetworkError::Dns { .. } => ErrorKind::Unavailable,
            NetworkError::Ipam(e) => e.kind(),
            NetworkError::Driver(e) => e.kind(),
            NetworkError::Firewall(e) => e.kind(),
            NetworkError::State { .. } => ErrorKind::Internal,
        }
    }
}

/// Node-wide networking configuration.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Where network state, IPAM state and DNS records live.
    pub state_dir: PathBuf,
    /// Subnets new networks take, in order.
    pub pool: Vec<Ipv4Net>,
    /// kontti's nftables table (family `ip`).
    pub nft_table: String,
    /// The `kontti-dns` binary; `None` disables name resolution.
    pub dns_binary: Option<PathBuf>,
    /// The port the responder listens on, on each gateway address.
    pub dns_port: u16,
    /// Upstream resolvers for names that are not containers'; empty means
    /// answer NXDOMAIN and never forward.
    pub upstreams: Vec<SocketAddr>,
    /// MTU for networks that do not set one.
    pub default_mtu: u32,
    /// Whether `create` enables IPv4 forwarding on the host's default-route
    /// interfaces (needed for replies to outbound NAT from the real uplink;
    /// left on afterwards). Tests that never leave the host turn it off.
    pub uplink_forwarding: bool,
}

impl NetConfig {
    /// Defaults under `state_dir`: docker's pools, table `kontti`, MTU 1500,
    /// DNS on port 53 with no upstreams.
    pub fn new(state_dir: &Path) -> NetConfig {
        NetConfig {
            state_dir: state_dir.to_owned(),
            pool: default_pool(),
            nft_table: "kontti".to_owned(),
            dns_binary: None,
            dns_port: 53,
            upstreams: Vec::new(),
            default_mtu: 1500,
            uplink_forwarding: true,
        }
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    /// The name.
    pub name: String,
    /// A subnet; `None` takes the next free one of the pool.
    pub subnet: Option<Ipv4Net>,
    /// The bridge's name; `None` derives `kt` + a hash of the state root and
    /// the name.
    pub bridge: Option<String>,
    /// The MTU; `None` takes the configured default.
    pub mtu: Option<u32>,
    /// User labels (`--label`).
    pub labels: BTreeMap<String, String>,
    /// The id to keep (a network re-created on restore); `None` draws a
    /// new random one.
    pub id: Option<String>,
    /// The creation time to keep (Unix seconds); `None` is now.
    pub created: Option<u64>,
}

/// A connected container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container's id.
    pub container: String,
    /// Its DNS name on the network.
    pub name: String,
    /// More DNS names.
    pub aliases: Vec<String>,
    /// Ports published to it.
    pub ports: Vec<PortMapping>,
    /// What the driver set up.
    pub attachment: Attachment,
}

/// A network's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// 64 hex characters, random; empty only in state written before
    /// networks had ids (the first `list` or `inspect` gives it one).
    #[serde(default)]
    pub id: String,
    /// Name, bridge, subnet, gateway, MTU.
    pub info: NetworkInfo,
    /// User labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was created, Unix seconds (`None` in state written before
    /// networks kept it).
    #[serde(default)]
    pub created: Option<u64>,
    /// The DNS responder's pid, when one runs.
    pub dns_pid: Option<u32>,
    /// Endpoints by container id.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// What `network connect` asks for.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// The container's id.
    pub container: String,
    /// Its name (for DNS); often the container's `--name`.
    pub name: String,
    /// More DNS names.
    pub aliases: Vec<String>,
    /// The container's network namespace.
    pub netns: PathBuf,
    /// The interface name inside (`eth0`).
    pub ifname: String,
    /// A fixed address, or `None` for the next free one.
    pub ip: Option<Ipv4Addr>,
    /// Ports to publish.
    pub ports: Vec<PortMapping>,
    /// Whether this network carries the default route.
    pub default_route: bool,
}

impl ConnectSpec {
    /// A spec for the first network of a container: `eth0`, default route, no
    /// ports, named after its id.
    pub fn new(container: &str, netns: &Path) -> ConnectSpec {
        ConnectSpec {
            container: container.to_owned(),
            name: container.to_owned(),
            aliases: Vec::new(),
            netns: netns.to_owned(),
            ifname: "eth0".to_owned(),
            ip: None,
            ports: Vec::new(),
            default_route: true,
        }
    }
}

/// The networks of one state root. See the module docs.
#[derive(Debug)]
pub struct Networks {
    cfg: NetConfig,
    ipam: Ipam,
    driver: BridgeDriver,
    firewall: Firewall,
}

pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Networks {
    /// Networks kept under `cfg.state_dir`.
    pub fn new(cfg: NetConfig) -> Networks {
        let ipam = Ipam::new(&cfg.state_dir, cfg.pool.clone());
        let firewall = Firewall::new(&cfg.nft_table);
        Networks {
            cfg,
            ipam,
            driver: BridgeDriver,
            firewall,
        }
    }

    fn dir(&self) -> PathBuf {
        self.cfg.state_dir.join("networks")
    }

    fn net_dir(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn state_err(path: &Path) -> impl Fn(io::Error) -> NetworkError + '_ {
        move |source| NetworkError::State {
            path: path.to_owned(),
            source,
        }
    }

    /// Takes the state root's lock until the returned file is dropped.
    pub(crate) fn lock(&self) -> Result<File, NetworkError> {
        let dir = self.dir();
        fs::create_dir_all(&dir).map_err(Self::state_err(&dir))?;
        let path = dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::state_err(&path))?;
        f.lock().map_err(Self::state_err(&path))?;
        Ok(f)
    }

    pub(crate) fn load(&self, name: &str) -> Result<NetworkState, NetworkError> {
        if !valid_name(name) {
            return Err(NetworkError::InvalidName(name.to_owned()));
        }
        let path = self.net_dir(name).join("network.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(NetworkError::NotFound(name.to_owned()));
            }
            Err(e) => return Err(Self::state_err(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Self::state_err(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    pub(crate) fn save(&self, state: &NetworkState) -> Result<(), NetworkError> {
        let dir = self.net_dir(&state.info.name);
        let path = dir.join("network.json");
        let tmp = dir.join(".network.json.tmp");
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Self::state_err(&path)(io::Error::other(e)))?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(Self::state_err(&path))
    }

    fn write_records(&self, state: &NetworkState) -> Result<(), NetworkError> {
        let path = self.net_dir(&state.info.name).join("records.json");
        let records = RecordsFile {
            records: state
                .endpoints
                .values()
                .map(|e| Record {
                    name: e.name.clone(),
                    aliases: e.aliases.clone(),
                    ipv4: e.attachment.address,
                })
                .collect(),
        };
        records.store(&path).map_err(Self::state_err(&path))
    }

    /// Every network, sorted by name, each with its id.
    pub fn list(&self) -> Result<Vec<NetworkState>, NetworkError> {
        let mut all = self.load_all()?;
        self.ensure_ids(&mut all)?;
        Ok(all)
    }

    /// Every network as stored, sorted by name (takes no lock).
    pub(crate) fn load_all(&self) -> Result<Vec<NetworkState>, NetworkError> {
        let dir = self.dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::state_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.load(&name) {
                Ok(s) => out.push(s),
                Err(NetworkError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        Ok(out)
    }

    /// The state of the network named `key`, or whose id is or starts
    /// with `key`.
    pub fn inspect(&self, key: &str) -> Result<NetworkState, NetworkError> {
        let mut one = [self.find(key)?];
        self.ensure_ids(&mut one)?;
        let [state] = one;
        Ok(state)
    }

    /// Creates a network: subnet, bridge, firewall entries, DNS responder.
    #[instrument(skip_all, fields(network = %spec.name))]
    pub fn create(&self, spec: &NetworkSpec) -> Result<NetworkState, NetworkError> {
        if !valid_name(&spec.name) {
            return Err(NetworkError::InvalidName(spec.name.clone()));
        }
        let mtu = spec.mtu.unwrap_or(self.cfg.default_mtu);
        if !(576..=65535).contains(&mtu) {
            return Err(NetworkError::InvalidMtu(mtu));
        }
        let id = match &spec.id {
            Some(id) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                id.to_ascii_lowercase()
            }
            Some(id) => return Err(NetworkError::InvalidId(id.clone())),
            None => crate::network_id::new_network_id().map_err(|source| NetworkError::State {
                path: "/dev/urandom".into(),
                source,
            })?,
        };
        let _lock = self.lock()?;
        let existing = self.load_all()?;
        if existing.iter().any(|n| n.info.name == spec.name) {
            return Err(NetworkError::AlreadyExists(spec.name.clone()));
        }
        let bridge = match &spec.bridge {
            Some(b) => {
                if b.is_empty()
                    || b.len() > 15
                    || !b
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return Err(NetworkError::InvalidName(b.clone()));
                }
                b.clone()
            }
            // Hashing the state root too keeps two roots' networks of one
            // name (a CLI and a test, say) on different bridges.
            None => {
                let key = format!("{}\0{}", self.cfg.state_dir.display(), spec.name);
                format!("kt{:08x}", crate::fnv1a(key.as_bytes()) as u32)
            }
        };
        if let Some(other) = existing.iter().find(|n| n.info.bridge == bridge) {
            return Err(NetworkError::BridgeTaken {
                bridge,
                network: other.info.name.clone(),
            });
        }
        let subnet = self.ipam.allocate_subnet(&spec.name, spec.subnet)?;
        let info = NetworkInfo {
            name: spec.name.clone(),
            bridge,
            subnet,
            gateway: subnet.gateway(),
            mtu,
        };
        let mut state = NetworkState {
            id,
            info,
            labels: spec.labels.clone(),
            created: spec.created.or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            }),
            dns_pid: None,
            endpoints: BTreeMap::new(),
        };
        match self.create_parts(&mut state, existing.is_empty()) {
            Ok(()) => {
                info!(subnet = %subnet, bridge = %state.info.bridge, "network created");
                Ok(state)
            }
            Err(e) => {
                warn!(error = %e, "network create failed; undoing");
                self.teardown(&state, existing.is_empty());
                Err(e)
            }
        }
    }

    fn create_parts(&self, state: &mut NetworkState, _first: bool) -> Result<(), NetworkError> {
        let dir = self.net_dir(&state.info.name);
        fs::create_dir_all(&dir).map_err(Self::state_err(&dir))?;
        self.driver.ensure_network(&state.info)?;
        if self.cfg.uplink_forwarding {
            crate::bridge::enable_uplink_forwarding()?;
        }
        self.firewall
            .add_network(&state.info.name, state.info.subnet, &state.info.bridge)?;
        self.write_records(state)?;
        if let Some(bin) = &self.cfg.dns_binary {
            state.dns_pid = Some(self.start_dns(bin, state)?);
        }
        self.save(state)
    }

    /// Best-effort removal of everything a network may have; used to undo a
    /// failed create and by `remove`.
    fn teardown(&self, state: &NetworkState, last: bool) {
        if let Some(pid) = state.dns_pid {
            stop_dns(pid, &self.net_dir(&state.info.name));
        }
        let info = &state.info;
        if let Err(e) = self
            .firewall
            .remove_network(&info.name, info.subnet, &info.bridge, last)
        {
            warn!(error = %e, "firewall cleanup");
        }
        if let Err(e) = self.driver.remove_network(info) {
            warn!(error = %e, "bridge cleanup");
        }
        if let Err(e) = self.ipam.release_subnet(&info.name) {
            warn!(error = %e, "ipam cleanup");
        }
        let _ = fs::remove_dir_all(self.net_dir(&info.name));
    }

    /// Removes a network that has no endpoints left (by name, id or id
    /// prefix).
    #[instrument(skip(self))]
    pub fn remove(&self, key: &str) -> Result<(), NetworkError> {
        let _lock = self.lock()?;
        let state = self.find(key)?;
        let name = state.info.name.as_str();
        if !state.endpoints.is_empty() {
            return Err(NetworkError::InUse {
                network: name.to_owned(),
                endpoints: state
                    .endpoints
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let last = self.load_all()?.len() == 1;
        if let Some(pid) = state.dns_pid {
            stop_dns(pid, &self.net_dir(name));
        }
        let info = &state.info;
        self.firewall
            .remove_network(name, info.subnet, &info.bridge, last)?;
        self.driver.remove_network(info)?;
        self.ipam.release_subnet(name)?;
        let dir = self.net_dir(name);
        fs::remove_dir_all(&dir).map_err(Self::state_err(&dir))?;
        info!("network removed");
        Ok(())
    }

    /// Connects a container to the network named `key` (or whose id is or
    /// starts with `key`): address, interface, published ports, DNS name.
    #[instrument(skip_all, fields(network = %key, container = %spec.container))]
    pub fn connect(&self, key: &str, spec: &ConnectSpec) -> Result<Endpoint, NetworkError> {
        let _lock = self.lock()?;
        let mut state = self.find(key)?;
        self.assign_id_locked(&mut state)?;
        let name = state.info.name.clone();
        let network = name.as_str();
        if state.endpoints.contains_key(&spec.container) {
            return Err(NetworkError::AlreadyConnected {
                network: network.to_owned(),
                container: spec.container.clone(),
            });
        }
        self.check_ports(&spec.ports)?;
        let ip = self.ipam.allocate_ip(network, &spec.container, spec.ip)?;
        let endpoint_spec = EndpointSpec {
            netns: spec.netns.clone(),
            key: format!(
                "{}\0{network}\0{}",
                self.cfg.state_dir.display(),
                spec.container
            ),
            ifname: spec.ifname.clone(),
            address: ip,
            default_route: spec.default_route,
        };
        let attachment = match self.driver.attach(&state.info, &endpoint_spec) {
            Ok(a) => a,
            Err(e) => {
                let _ = self.ipam.release_ip(network, &spec.container);
                return Err(e.into());
            }
        };
        let endpoint = Endpoint {
            container: spec.container.clone(),
            name: spec.name.clone(),
            aliases: spec.aliases.clone(),
            ports: spec.ports.clone(),
            attachment,
        };
        let rest = self
            .firewall
            .publish(ip, &spec.ports)
            .map_err(NetworkError::from)
            .and_then(|()| {
                state
                    .endpoints
                    .insert(spec.container.clone(), endpoint.clone());
                self.write_records(&state)
            })
            .and_then(|()| self.save(&state));
        if let Err(e) = rest {
            warn!(error = %e, "connect failed; undoing");
            state.endpoints.remove(&spec.container);
            let _ = self.firewall.unpublish(ip, &spec.ports);
            let _ = self.driver.detach(&state.info, &endpoint.attachment);
            let _ = self.ipam.release_ip(network, &spec.container);
            let _ = self.write_records(&state);
            return Err(e);
        }
        Ok(endpoint)
    }

    /// Disconnects a container from the network named `key` (or whose id
    /// is or starts with `key`); a namespace that is gone already is fine.
    #[instrument(skip(self))]
    pub fn disconnect(&self, key: &str, container: &str) -> Result<(), NetworkError> {
        let _lock = self.lock()?;
        let mut state = self.find(key)?;
        self.assign_id_locked(&mut state)?;
        let name = state.info.name.clone();
        let network = name.as_str();
        let Some(endpoint) = state.endpoints.get(container).cloned() else {
            return Err(NetworkError::NotConnected {
                network: network.to_owned(),
                container: container.to_owned(),
            });
        };
        self.firewall
            .unpublish(endpoint.attachment.address, &endpoint.ports)?;
        self.driver.detach(&state.info, &endpoint.attachment)?;
        self.ipam.release_ip(network, container)?;
        state.endpoints.remove(container);
        self.write_records(&state)?;
        self.save(&state)
    }

    /// Refuses ports that a kontti endpoint publishes or that a host process
    /// has bound.
    fn check_ports(&self, ports: &[PortMapping]) -> Result<(), NetworkError> {
        for (i, p) in ports.iter().enumerate() {
            let clash = |q: &PortMapping| {
                q.protocol == p.protocol
                    && q.host_port == p.host_port
                    && (q.host_ip.is_none() || p.host_ip.is_none() || q.host_ip == p.host_ip)
            };
            if ports[..i].iter().any(clash) {
                return Err(NetworkError::PortInUse {
                    port: *p,
                    reason: "published twice in one request".to_owned(),
                });
            }
            for net in self.load_all()? {
                if let Some(e) = net.endpoints.values().find(|e| e.ports.iter().any(clash)) {
                    return Err(NetworkError::PortInUse {
                        port: *p,
                        reason: format!(
                            "published for container {} on network {}",
                            e.container, net.info.name
                        ),
                    });
                }
            }
            let addr = SocketAddr::from((p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port));
            let bound = match p.protocol {
                Protocol::Tcp => TcpListener::bind(addr).map(drop),
                Protocol::Udp => UdpSocket::bind(addr).map(drop),
            };
            if let Err(e) = bound {
                if e.kind() == io::ErrorKind::AddrInUse {
                    return Err(NetworkError::PortInUse {
                        port: *p,
                        reason: "a process on the host listens on it".to_owned(),
                    });
                }
                // EADDRNOTAVAIL: the address is not the host's.
                return Err(NetworkError::PortInUse {
                    port: *p,
                    reason: format!("cannot bind {addr} on the host: {e}"),
                });
            }
        }
        Ok(())
    }

    /// Starts `kontti-dns` detached on the gateway; returns its pid.
    fn start_dns(&self, bin: &Path, state: &NetworkState) -> Result<u32, NetworkError> {
        let dir = self.net_dir(&state.info.name);
        let dns_err = |detail: String| NetworkError::Dns {
            network: state.info.name.clone(),
            detail,
        };
        let mut cmd = Command::new(bin);
        cmd.arg("--daemon")
            .arg("--listen")
            .arg(format!("{}:{}", state.info.gateway, self.cfg.dns_port))
            .arg("--records")
            .arg(dir.join("records.json"));
        for up in &self.cfg.upstreams {
            cmd.arg("--upstream").arg(up.to_string());
        }
        let out = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| dns_err(format!("cannot run {}: {e}", bin.display())))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(dns_err(msg));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .map_err(|_| dns_err(format!("unexpected output {text:?}")))
    }
}

/// Stops the responder `pid` if it is still the one serving `dir`'s records,
/// and waits (at most two seconds) for it to go.
fn stop_dns(pid: u32, dir: &Path) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let records = dir.join("records.json");
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == records.as_os_str().as_encoded_bytes());
    if !ours {
        return;
    }
    let Some(rpid) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process(rpid, rustix::process::Signal::TERM) {
        warn!(pid, error = %e, "stopping dns responder");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        // Gone, or a zombie waiting for init.
        let status = fs::File::open(format!("/proc/{pid}/status"))
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .find(|l| l.starts_with("State:"))
            })
            .ok()
            .flatten();
        match status {
            None => return,
            Some(s) if s.contains('Z') => return,
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
