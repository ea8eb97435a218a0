//! Container networking on one host.
//!
//! * [`Networks`] is what the engine and the node agent call: create and
//!   remove networks, connect and disconnect containers (by network namespace
//!   path), with addresses, published ports and names;
//! * [`NetworkDriver`] plumbs endpoints into namespaces; [`BridgeDriver`] is
//!   the Linux bridge + veth implementation;
//! * [`Ipam`] hands out subnets (skipping those the host routes) and
//!   addresses, safely across processes;
//! * [`Firewall`] keeps kontti's nftables table: masquerade, DNAT for
//!   published ports (127.0.0.1 included), accepts where the host drops
//!   forwarded traffic;
//! * [`dns`] is the per-network responder run by the `kontti-dns` helper.
//!
//! It does not create network namespaces (the runtime does), write
//! resolv.conf (the engine does) or do IPv6 yet.

mod addr;
mod bridge;
pub mod dns;
mod driver;
mod ipam;
mod netlink;
mod network_id;
mod networks;
mod nft;
mod routes;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use addr::{AddrError, Ipv4Net, PortMapping, Protocol};
pub use bridge::{BridgeDriver, host_ifname};
pub use driver::{Attachment, DriverError, EndpointSpec, NetworkDriver, NetworkInfo};
pub use ipam::{Ipam, IpamError, default_pool};
pub use networks::{
    ConnectSpec, Endpoint, NetConfig, NetworkError, NetworkSpec, NetworkState, Networks,
};
pub use nft::{FORWARD_CHAIN, Firewall, NftError};
pub use routes::{host_routes, parse_proc_net_route};

/// FNV-1a, for short stable device names derived from long keys.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
