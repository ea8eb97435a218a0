//! The engine's networking: `--network` modes, the default network, and
//! the glue between a container and [`kontti_net::Networks`].
//!
//! * [`NetworkMode`] is the parsed `--network` value: `bridge` (the default
//!   network, named `bridge`, created on first use), a user-defined network,
//!   `host`, `none` or `container:NAME`;
//! * [`attach`] connects a container's pinned network namespace to its
//!   network (address, interface, published ports, DNS names) and returns
//!   what the engine writes into the container's `/etc/hosts` and
//!   `/etc/resolv.conf`; [`detach`] removes every endpoint a container has
//!   and is idempotent;
//! * [`connect`] and [`disconnect`] add and remove further networks of a
//!   running container (`kontti network connect`), found by name or id;
//! * [`restore`] brings networks back after a reboot (bridges, nft table and
//!   DNS responders are gone, their state under `R/networks` is not).
//!
//! Network state lives in `R/networks` (kontti-net's state directory),
//! settings in `R/networks/config.json` ([`Settings`]). The engine pins and
//! unpins namespaces; this module never creates one.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kontti_core::ErrorKind;
use kontti_net::{ConnectSpec, Networks};
use tracing::{info, instrument, warn};

mod lookup;
mod restore;
mod settings;

pub use kontti_net::{
    AddrError, Endpoint, Ipv4Net, NetworkError, NetworkSpec, NetworkState, PortMapping, Protocol,
};
pub use lookup::{container_id, container_netns, container_record};
pub use restore::restore;
pub use settings::{Settings, host_nameservers, settings_path, state_dir};

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Names that are `--network` modes, not networks.
const RESERVED: [&str; 3] = ["host", "none", "default"];

/// Failures of the engine's networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A `--network` value that is no mode and no valid network name.
    #[error(
        "invalid --network value {0:?}: expected bridge, host, none, container:NAME or a network name"
    )]
    InvalidMode(String),
    /// `network create` of a name that is a `--network` mode.
    #[error("network name {0:?} is reserved for the --network {0} mode")]
    Reserved(String),
    /// A `--gateway` other than the subnet's first address, or without
    /// `--subnet`.
    #[error("invalid gateway {gateway}: {reason}")]
    InvalidGateway {
        /// The gateway given.
        gateway: String,
        /// Why it is refused.
        reason: String,
    },
    /// A network driver other than `bridge`.
    #[error("network driver {0:?} is not supported: kontti has the bridge driver only")]
    UnsupportedDriver(String),
    /// A `network ls --filter` of an unknown key or a bad value.
    #[error(
        "invalid filter {0:?}: expected name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin or dangling=true|false"
    )]
    InvalidFilter(String),
    /// A `network create --label` without a key.
    #[error("invalid label {0:?}: expected KEY=VALUE or KEY")]
    InvalidLabel(String),
    /// No container of that name or id.
    #[error("no such container: {0}")]
    ContainerNotFound(String),
    /// An id prefix matching several containers.
    #[error("container id prefix {0:?} is ambiguous: it matches several containers")]
    AmbiguousContainer(String),
    /// The container has no pinned network namespace (it does not run).
    #[error("container {0} has no network namespace: it is not running")]
    NoNamespace(String),
    /// `--network host|none|container:` containers have no networks to join.
    #[error("container {container} uses --network {mode}: it cannot join other networks")]
    NotBridged {
        /// The container.
        container: String,
        /// Its mode.
        mode: String,
    },
    /// The container's record could not be read.
    #[error(transparent)]
    Record(Box<crate::EngineError>),
    /// `R/networks/config.json` does not parse.
    #[error("network settings {path}: {reason}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// kontti-net refused or failed.
    #[error(transparent)]
    Net(#[from] NetworkError),
    /// A filesystem call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl NetError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::InvalidMode(_)
            | NetError::Reserved(_)
            | NetError::InvalidGateway { .. }
            | NetError::UnsupportedDriver(_)
            | NetError::InvalidFilter(_)
            | NetError::InvalidLabel(_)
            | NetError::AmbiguousContainer(_) => ErrorKind::Invalid,
            NetError::ContainerNotFound(_) => ErrorKind::NotFound,
            NetError::NoNamespace(_) | NetError::NotBridged { .. } => ErrorKind::Conflict,
            NetError::Settings { .. } => ErrorKind::Invalid,
            NetError::Net(e) => e.kind(),
            NetError::Record(e) => e.kind(),
            NetError::Io { .. } => ErrorKind::Internal,
        }
    }
}

type Result<T, E = NetError> = std::result::Result<T, E>;

/// A parsed `--network` value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default network (`bridge`, also `default` or empty).
    #[default]
    Bridge,
    /// A user-defined network.
    Network(String),
    /// The host's network namespace: nothing is joined.
    Host,
    /// A namespace with only loopback.
    None,
    /// Another container's namespace (its name or id).
    Container(String),
}

fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl FromStr for NetworkMode {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "default" | DEFAULT_NETWORK => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            _ => match s.strip_prefix("container:") {
                Some(c) if !c.is_empty() => NetworkMode::Container(c.to_owned()),
                Some(_) => return Err(NetError::InvalidMode(s.to_owned())),
                None if valid_network_name(s) => NetworkMode::Network(s.to_owned()),
                None => return Err(NetError::InvalidMode(s.to_owned())),
            },
        })
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str(DEFAULT_NETWORK),
            NetworkMode::Network(n) => f.write_str(n),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
        }
    }
}

/// What [`attach`] needs to know about a container.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// The container's id.
    pub container_id: String,
    /// Its name: its DNS name on the network (empty: the short id).
    pub name: String,
    /// Its hostname, written into `/etc/hosts` (and a DNS alias).
    pub hostname: String,
    /// More DNS names (`--network-alias`).
    pub aliases: Vec<String>,
    /// `--network`.
    pub mode: NetworkMode,
    /// `-p` publications.
    pub ports: Vec<kontti_net::PortMapping>,
    /// The container's pinned network namespace.
    pub netns: PathBuf,
}

/// What [`attach`] set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSetup {
    /// (network name, address, gateway, prefix length) per network.
    pub endpoints: Vec<(String, Ipv4Addr, Ipv4Addr, u8)>,
    /// The contents of the container's `/etc/hosts`.
    pub hosts: String,
    /// The contents of its `/etc/resolv.conf`.
    pub resolv_conf: String,
}

/// Refuses drivers other than `bridge`.
pub fn check_driver(driver: &str) -> Result<()> {
    if driver == "bridge" {
        Ok(())
    } else {
        Err(NetError::UnsupportedDriver(driver.to_owned()))
    }
}

/// A `network ls --filter`, as docker's: filters of one key match when
/// any of them does, filters of different keys all have to
/// ([`NetworkFilter::matches_all`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFilter {
    /// `name=PART`: the name contains PART.
    Name(String),
    /// `id=PREFIX`: the id starts with PREFIX.
    Id(String),
    /// `driver=NAME`.
    Driver(String),
    /// `label=KEY` (the label is set) or `label=KEY=VALUE`.
    Label(String, Option<String>),
    /// `type=builtin` (the default network) or `type=custom`.
    Builtin(bool),
    /// `dangling=true`: no container is connected (builtin networks never
    /// dangle); `dangling=false`: the others.
    Dangling(bool),
}

impl FromStr for NetworkFilter {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || NetError::InvalidFilter(s.to_owned());
        let flag = |v: &str| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(bad()),
        };
        match s.split_once('=').ok_or_else(bad)? {
            ("name", v) => Ok(NetworkFilter::Name(v.to_owned())),
            ("id", v) => Ok(NetworkFilter::Id(v.to_ascii_lowercase())),
            ("driver", v) => Ok(NetworkFilter::Driver(v.to_owned())),
            ("label", "") => Err(bad()),
            ("label", v) => Ok(match v.split_once('=') {
                Some((k, v)) => NetworkFilter::Label(k.to_owned(), Some(v.to_owned())),
                None => NetworkFilter::Label(v.to_owned(), None),
            }),
            ("type", "builtin") => Ok(NetworkFilter::Builtin(true)),
            ("type", "custom") => Ok(NetworkFilter::Builtin(false)),
            ("dangling", v) => Ok(NetworkFilter::Dangling(flag(v)?)),
            _ => Err(bad()),
        }
    }
}

/// Whether `n` is a builtin network (the default one).
pub fn is_builtin(n: &NetworkState) -> bool {
    n.info.name == DEFAULT_NETWORK
}

impl NetworkFilter {
    /// Whether the network passes this one filter.
    pub fn matches(&self, n: &NetworkState) -> bool {
        match self {
            NetworkFilter::Name(part) => n.info.name.contains(part.as_str()),
            NetworkFilter::Id(prefix) => n.id.starts_with(prefix.as_str()),
            NetworkFilter::Driver(d) => d == "bridge",
            NetworkFilter::Label(k, v) => match (n.labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
            NetworkFilter::Builtin(b) => is_builtin(n) == *b,
            NetworkFilter::Dangling(d) => (!is_builtin(n) && n.endpoints.is_empty()) == *d,
        }
    }

    fn key(&self) -> u8 {
        match self {
            NetworkFilter::Name(_) => 0,
            NetworkFilter::Id(_) => 1,
            NetworkFilter::Driver(_) => 2,
            NetworkFilter::Label(..) => 3,
            NetworkFilter::Builtin(_) => 4,
            NetworkFilter::Dangling(_) => 5,
        }
    }

    /// Whether `n` passes `filters`: for each key used, one of its filters
    /// matches (labels, as docker, must all match).
    pub fn matches_all(filters: &[NetworkFilter], n: &NetworkState) -> bool {
        (0..=5u8).all(|key| {
            let mut of_key = filters.iter().filter(|f| f.key() == key).peekable();
            if of_key.peek().is_none() {
                return true;
            }
            if key == 3 {
                of_key.all(|f| f.matches(n))
            } else {
                of_key.any(|f| f.matches(n))
            }
        })
    }
}

/// `mode` with a user network named by its name: an id or id prefix given
/// to `--network` is resolved when the container is created (so a network
/// made later whose id shares the prefix does not change which one it
/// joins), and a network that does not exist is refused then. Other modes
/// are returned as they are.
pub fn resolve_mode(root: &Path, mode: NetworkMode) -> Result<NetworkMode> {
    match mode {
        NetworkMode::Network(key) => Ok(NetworkMode::Network(
            networks(root)?.inspect(&key)?.info.name,
        )),
        other => Ok(other),
    }
}

/// The networks of `root`, configured from its settings.
pub fn networks(root: &Path) -> Result<Networks> {
    Ok(Networks::new(Settings::load(root)?.net_config(root)))
}

/// Creates a network. `gateway`, when given, must be the subnet's first
/// address (kontti's bridges hold that one).
pub fn create(root: &Path, spec: &NetworkSpec, gateway: Option<Ipv4Addr>) -> Result<NetworkState> {
    if RESERVED.contains(&spec.name.as_str()) {
        return Err(NetError::Reserved(spec.name.clone()));
    }
    if let Some(gw) = gateway {
        let Some(subnet) = spec.subnet else {
            return Err(NetError::InvalidGateway {
                gateway: gw.to_string(),
                reason: "--gateway needs --subnet".to_owned(),
            });
        };
        if gw != subnet.gateway() {
            return Err(NetError::InvalidGateway {
                gateway: gw.to_string(),
                reason: format!(
                    "kontti gives a network its subnet's first address ({})",
                    subnet.gateway()
                ),
            });
        }
    }
    Ok(networks(root)?.create(spec)?)
}

/// Makes sure the default network exists; returns whether this call
/// created it.
fn ensure_default(nets: &Networks) -> Result<bool> {
    match nets.inspect(DEFAULT_NETWORK) {
        Ok(_) => return Ok(false),
        Err(NetworkError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let spec = NetworkSpec {
        name: DEFAULT_NETWORK.to_owned(),
        ..Default::default()
    };
    match nets.create(&spec) {
        Ok(_) => {
            info!("default network created");
            Ok(true)
        }
        // Another process created it meanwhile.
        Err(NetworkError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

const HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// `/etc/hosts` for a container with `addr` (if any) named `hostname` and
/// `name`.
pub fn hosts_file(addr: Option<Ipv4Addr>, hostname: &str, name: &str) -> String {
    let mut out = HOSTS_HEAD.to_owned();
    let mut names: Vec<&str> = Vec::new();
    for n in [hostname, name] {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    if !names.is_empty() {
        let ip = addr.map_or_else(|| "127.0.1.1".to_owned(), |a| a.to_string());
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out
}

/// `/etc/resolv.conf` for a container on `state`: the network's responder
/// when it runs, else the configured upstreams.
fn resolv_conf(state: Option<&NetworkState>, settings: &Settings) -> String {
    match state {
        Some(s) if s.dns_pid.is_some() => format!("nameserver {}\n", s.info.gateway),
        _ => settings
            .upstreams()
            .iter()
            .map(|a| format!("nameserver {}\n", a.ip()))
            .collect(),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Connects a container to its network according to `req.mode`. On
/// failure nothing of this call is left (a default network it created is
/// removed again).
#[instrument(skip_all, fields(container = %short(&req.container_id), mode = %req.mode))]
pub fn attach(root: &Path, req: &AttachRequest) -> Result<NetworkSetup> {
    let settings = Settings::load(root)?;
    let name = if req.name.is_empty() {
        short(&req.container_id).to_owned()
    } else {
        req.name.clone()
    };
    let network = match &req.mode {
        NetworkMode::Host => {
            let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
            let hosts = match read("/etc/hosts") {
                h if h.is_empty() => hosts_file(None, &req.hostname, ""),
                h => h,
            };
            return Ok(NetworkSetup {
                endpoints: Vec::new(),
                hosts,
                resolv_conf: read("/etc/resolv.conf"),
            });
        }
        NetworkMode::None => {
            return Ok(NetworkSetup {
                endpoints: Vec::new(),
                hosts: hosts_file(None, &req.hostname, &name),
                resolv_conf: String::new(),
            });
        }
        NetworkMode::Container(other) => return attach_to_container(root, req, other, &settings),
        NetworkMode::Bridge => DEFAULT_NETWORK,
        NetworkMode::Network(n) => n.as_str(),
    };
    let nets = Networks::new(settings.net_config(root));
    let default = matches!(req.mode, NetworkMode::Bridge);
    let mut spec = ConnectSpec::new(&req.container_id, &req.netns);
    spec.name = name.clone();
    spec.aliases = req.aliases.clone();
    for alias in [req.hostname.as_str(), short(&req.container_id)] {
        if !alias.is_empty() && alias != name && !spec.aliases.iter().any(|a| a == alias) {
            spec.aliases.push(alias.to_owned());
        }
    }
    spec.ports = req.ports.clone();
    let mut retried = false;
    let endpoint = loop {
        let created = default && ensure_default(&nets)?;
        match nets.connect(network, &spec) {
            Ok(e) => break e,
            // Another process's failed first attach removed the default
            // network between our check and our connect: make it again.
            Err(NetworkError::NotFound(_)) if default && !retried => retried = true,
            Err(e) => {
                if created {
                    // Leave the host as it was: no bridge this call made
                    // (unless another container joined it meanwhile).
                    match nets.remove(DEFAULT_NETWORK) {
                        Ok(()) | Err(NetworkError::InUse { .. } | NetworkError::NotFound(_)) => {}
                        Err(e) => {
                            warn!(error = %e, "removing the default network after a failed attach")
                        }
                    }
                }
                return Err(e.into());
            }
        }
    };
    let state = nets.inspect(network).ok();
    // `--network` may name the network by id or id prefix
    let network = state.as_ref().map_or(network, |s| s.info.name.as_str());
    let a = &endpoint.attachment;
    info!(network, address = %a.address, "attached");
    Ok(NetworkSetup {
        endpoints: vec![(network.to_owned(), a.address, a.gateway, a.prefix)],
        hosts: hosts_file(Some(a.address), &req.hostname, &name),
        resolv_conf: resolv_conf(state.as_ref(), &settings),
    })
}

/// `--network container:OTHER`: nothing to connect; the names and resolver
/// of the other container's first network.
fn attach_to_container(
    root: &Path,
    req: &AttachRequest,
    other: &str,
    settings: &Settings,
) -> Result<NetworkSetup> {
    let other_id = container_id(root, other)?;
    let nets = Networks::new(settings.net_config(root));
    let first = endpoints_of(&nets, &other_id)?.into_iter().next();
    let (addr, state) = match &first {
        Some((state, ep)) => (Some(ep.attachment.address), Some(state)),
        None => (None, None),
    };
    Ok(NetworkSetup {
        endpoints: Vec::new(),
        hosts: hosts_file(addr, &req.hostname, ""),
        resolv_conf: resolv_conf(state, settings),
    })
}

/// Every (network, endpoint) of the container `id`, by network name.
pub fn endpoints_of(nets: &Networks, id: &str) -> Result<Vec<(NetworkState, Endpoint)>> {
    Ok(nets
        .list()?
        .into_iter()
        .filter_map(|n| {
            let ep = n.endpoints.get(id).cloned()?;
            Some((n, ep))
        })
        .collect())
}

/// Removes every endpoint of the container `container_id` (its published
/// ports and DNS names with it). Idempotent: a container with no endpoints
/// left, or whose namespace is gone, is fine.
#[instrument(skip(root))]
pub fn detach(root: &Path, container_id: &str) -> Result<()> {
    let nets = networks(root)?;
    let mut first_err = None;
    for (state, _) in endpoints_of(&nets, container_id)? {
        match nets.disconnect(&state.info.name, container_id) {
            Ok(()) | Err(NetworkError::NotConnected { .. } | NetworkError::NotFound(_)) => {}
            Err(e) => {
                warn!(network = %state.info.name, error = %e, "detach");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `kontti network connect`: connects the running container `name_or_id`
/// to `network` as its next interface (`eth1`, ...), without a default
/// route. Returns the new endpoint.
pub fn connect(
    root: &Path,
    network: &str,
    name_or_id: &str,
    aliases: &[String],
    ip: Option<Ipv4Addr>,
) -> Result<Endpoint> {
    let rec = container_record(root, name_or_id)?;
    let id = rec.id.clone();
    let mode: NetworkMode = rec.options.network.as_deref().unwrap_or("").parse()?;
    if !matches!(mode, NetworkMode::Bridge | NetworkMode::Network(_)) {
        return Err(NetError::NotBridged {
            container: name_or_id.to_owned(),
            mode: mode.to_string(),
        });
    }
    let netns = container_netns(root, &id)?;
    let nets = networks(root)?;
    let existing = endpoints_of(&nets, &id)?;
    let mut n = existing.len();
    while existing
        .iter()
        .any(|(_, e)| e.attachment.ifname == format!("eth{n}"))
    {
        n += 1;
    }
    let mut spec = ConnectSpec::new(&id, &netns);
    spec.name = if rec.name.is_empty() {
        short(&id).to_owned()
    } else {
        rec.name.clone()
    };
    spec.aliases = aliases.to_vec();
    if !spec.aliases.iter().any(|a| a == short(&id)) && spec.name != short(&id) {
        spec.aliases.push(short(&id).to_owned());
    }
    spec.ifname = format!("eth{n}");
    spec.ip = ip;
    spec.default_route = existing.is_empty();
    Ok(nets.connect(network, &spec)?)
}

/// `kontti network disconnect`: removes the container's endpoint on
/// `network`. With `force`, a container that is gone is disconnected by id.
pub fn disconnect(root: &Path, network: &str, name_or_id: &str, force: bool) -> Result<()> {
    let nets = networks(root)?;
    let id = match container_id(root, name_or_id) {
        Ok(id) => id,
        Err(NetError::ContainerNotFound(_))
            if force
                && nets
                    .inspect(network)
                    .is_ok_and(|s| s.endpoints.contains_key(name_or_id)) =>
        {
            name_or_id.to_owned()
        }
        Err(e) => return Err(e),
    };
    Ok(nets.disconnect(network, &id)?)
}

/// Removes every network without endpoints except the default one (as
/// `docker network prune`); returns the names removed.
pub fn prune(root: &Path) -> Result<Vec<String>> {
    let nets = networks(root)?;
    let mut removed = Vec::new();
    for n in nets.list()? {
        if n.info.name == DEFAULT_NETWORK || !n.endpoints.is_empty() {
            continue;
        }
        match nets.remove(&n.info.name) {
            Ok(()) => removed.push(n.info.name),
            // Gained an endpoint or went meanwhile.
            Err(NetworkError::InUse { .. } | NetworkError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        let p = |s: &str| s.parse::<NetworkMode>();
        assert_eq!(p("bridge").unwrap(), NetworkMode::Bridge);
        assert_eq!(p("default").unwrap(), NetworkMode::Bridge);
        assert_eq!(p("host").unwrap(), NetworkMode::Host);
        assert_eq!(p("none").unwrap(), NetworkMode::None);
        assert_eq!(
            p("container:web").unwrap(),
            NetworkMode::Container("web".into())
        );
        assert_eq!(
            p("back-end").unwrap(),
            NetworkMode::Network("back-end".into())
        );
        for bad in ["container:", "-x", "a/b", "a b", &"n".repeat(65)] {
            assert!(matches!(p(bad), Err(NetError::InvalidMode(_))), "{bad}");
        }
        assert_eq!(p("container:web").unwrap().to_string(), "container:web");
    }

    #[test]
    fn filters_parse_and_match_as_dockers() {
        let state = |name: &str, id: &str, labels: &[(&str, &str)], endpoints: bool| {
            let mut s: NetworkState = serde_json::from_value(serde_json::json!({
                "id": id,
                "info": {"name": name, "bridge": "kt0", "subnet": "10.9.0.0/24",
                         "gateway": "10.9.0.1", "mtu": 1500},
                "dns_pid": null, "endpoints": {},
            }))
            .unwrap();
            s.labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            if endpoints {
                let e = serde_json::json!({
                    "container": "c", "name": "c", "aliases": [], "ports": [],
                    "attachment": {"ifname": "eth0", "host_ifname": "kv0", "netns": "/x",
                                   "address": "10.9.0.2", "gateway": "10.9.0.1", "prefix": 24},
                });
                s.endpoints
                    .insert("c".into(), serde_json::from_value(e).unwrap());
            }
            s
        };
        let bridge = state(DEFAULT_NETWORK, "aa11", &[], false);
        let front = state("front", "bb22", &[("env", "prod"), ("tier", "")], true);
        let back = state("back", "cc33", &[("env", "dev")], false);
        let pass = |fs: &[&str]| -> Vec<&str> {
            let fs: Vec<NetworkFilter> = fs.iter().map(|f| f.parse().unwrap()).collect();
            [&bridge, &front, &back]
                .into_iter()
                .filter(|n| NetworkFilter::matches_all(&fs, n))
                .map(|n| n.info.name.as_str())
                .collect()
        };
        assert_eq!(pass(&[]), ["bridge", "front", "back"]);
        assert_eq!(pass(&["id=BB"]), ["front"]);
        assert_eq!(pass(&["name=ront", "name=ack"]), ["front", "back"]);
        assert_eq!(pass(&["label=env", "label=tier"]), ["front"]);
        assert_eq!(pass(&["label=env=dev"]), ["back"]);
        assert_eq!(pass(&["type=builtin"]), ["bridge"]);
        assert_eq!(pass(&["type=custom", "dangling=false"]), ["front"]);
        assert_eq!(pass(&["dangling=1"]), ["back"]);
        for bad in ["x=1", "name", "label=", "type=other", "dangling=yes", ""] {
            let e = bad.parse::<NetworkFilter>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}");
            assert!(e.to_string().starts_with("invalid filter"), "{e}");
        }
    }

    #[test]
    fn hosts_name_the_container() {
        let h = hosts_file(Some(Ipv4Addr::new(10, 0, 0, 2)), "abc123", "web");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.0.0.2\tabc123 web\n"), "{h}");
        let h = hosts_file(None, "box", "box");
        assert!(h.ends_with("127.0.1.1\tbox\n"), "{h}");
    }

    #[test]
    fn reserved_names_and_gateways_are_refused_before_any_work() {
        let root = Path::new("/nonexistent/kontti-root");
        let spec = NetworkSpec {
            name: "host".into(),
            ..Default::default()
        };
        assert!(matches!(
            create(root, &spec, None),
            Err(NetError::Reserved(_))
        ));
        let mut spec = NetworkSpec {
            name: "n1".into(),
            ..Default::default()
        };
        let gw = Some(Ipv4Addr::new(10, 9, 0, 1));
        let e = create(root, &spec, gw).unwrap_err();
        assert!(e.to_string().contains("--gateway needs --subnet"), "{e}");
        spec.subnet = Some("10.9.0.0/24".parse().unwrap());
        let e = create(root, &spec, Some(Ipv4Addr::new(10, 9, 0, 7))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("10.9.0.1"), "{e}");
    }
}
