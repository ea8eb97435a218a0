//! The network driver interface.
//!
//! Vocabulary:
//! * a **network** is a named L2/L3 domain on this host with a subnet and a
//!   gateway (for the bridge driver: a Linux bridge holding the gateway
//!   address);
//! * an **endpoint** is one container's membership in a network: an interface
//!   inside the container's network namespace with an address from the
//!   network's subnet;
//! * a **network namespace path** names the container's namespace: a
//!   bind-mounted nsfs file, `/proc/PID/ns/net` or `/run/netns/NAME`.
//!
//! Lifecycle: [`NetworkDriver::ensure_network`] (idempotent) before the first
//! [`NetworkDriver::attach`]; [`NetworkDriver::detach`] for every attach;
//! [`NetworkDriver::remove_network`] after the last detach. Addresses come from
//! IPAM; a driver only plumbs them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::addr::Ipv4Net;

/// What a driver needs to know about a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The network's name.
    pub name: String,
    /// The host-side device (the bridge for the bridge driver).
    pub bridge: String,
    /// The subnet.
    pub subnet: Ipv4Net,
    /// The gateway address, held by the host.
    pub gateway: Ipv4Addr,
    /// The MTU of the bridge and of every endpoint.
    pub mtu: u32,
}

/// One container's membership to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The container's network namespace.
    pub netns: PathBuf,
    /// A key unique on this host for (network, container), used to name the
    /// host-side interface.
    pub key: String,
    /// The interface name inside the namespace (`eth0` for the first network).
    pub ifname: String,
    /// The address IPAM gave the endpoint.
    pub address: Ipv4Addr,
    /// Whether to set the default route through the network's gateway.
    pub default_route: bool,
}

/// What an attach created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The interface inside the namespace.
    pub ifname: String,
    /// The host side of the link (a veth on the bridge).
    pub host_ifname: String,
    /// The namespace it lives in.
    pub netns: PathBuf,
    /// The endpoint's address.
    pub address: Ipv4Addr,
    /// The prefix length of the network.
    pub prefix: u8,
    /// The gateway.
    pub gateway: Ipv4Addr,
}

/// Driver failures.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The namespace path does not exist or is not a network namespace.
    #[error("network namespace {0}: not found")]
    NamespaceNotFound(PathBuf),
    /// A device with the bridge's name exists and is not a bridge.
    #[error("device {0} exists and is not a bridge")]
    NotABridge(String),
    /// The tool that changes links failed.
    #[error("{what}: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// The tool's own message.
        detail: String,
    },
}

impl DriverError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DriverError::NamespaceNotFound(_) => ErrorKind::NotFound,
            DriverError::NotABridge(_) => ErrorKind::Conflict,
            DriverError::Command { .. } => ErrorKind::Internal,
        }
    }
}

/// Plumbs endpoints into network namespaces. See the module docs for the
/// vocabulary and lifecycle.
pub trait NetworkDriver {
    /// Creates the network's host side if it is missing; a no-op otherwise.
    fn ensure_network(&self, net: &NetworkInfo) -> Result<(), DriverError>;
    /// Removes the network's host side; a no-op if it is gone already.
    fn remove_network(&self, net: &NetworkInfo) -> Result<(), DriverError>;
    /// Creates the endpoint's interface in `spec.netns` and configures it.
    /// On failure nothing of the endpoint is left.
    fn attach(&self, net: &NetworkInfo, spec: &EndpointSpec) -> Result<Attachment, DriverError>;
    /// Removes what `attach` created; a no-op for parts that are gone.
    fn detach(&self, net: &NetworkInfo, attachment: &Attachment) -> Result<(), DriverError>;
}

/// Checks that `path` exists and is a network namespace file.
pub(crate) fn check_netns(path: &Path) -> Result<(), DriverError> {
    match std::fs::read_link(path) {
        Ok(target) if target.to_string_lossy().starts_with("net:[") => return Ok(()),
        _ => {}
    }
    // Bind-mounted nsfs files are not symlinks: they are files on nsfs (magic
    // 0x6e736673), which std cannot tell; accept a regular file that exists
    // and let the kernel refuse it if it is not a namespace.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        _ => Err(DriverError::NamespaceNotFound(path.to_owned())),
    }
}
