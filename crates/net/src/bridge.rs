//! The bridge driver: a Linux bridge per network holding the gateway address,
//! and a veth pair per endpoint (host end on the bridge, the other end inside
//! the container's namespace).
//!
//! Links, addresses and routes are changed over rtnetlink ([`crate::netlink`]),
//! in-process: the veth pair is created with its inside end placed directly in
//! the namespace (`IFLA_NET_NS_FD`), and the inside is configured through a
//! netlink socket opened in that namespace.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use tracing::instrument;

use crate::driver::{
    Attachment, DriverError, EndpointSpec, NetworkDriver, NetworkInfo, check_netns,
};
use crate::netlink::Netlink;

/// The bridge driver. Stateless: everything it needs is in its arguments.
#[derive(Debug, Clone, Default)]
pub struct BridgeDriver;

/// The host-side veth name for an endpoint key: `kv` and 10 hex digits of a
/// hash, within the kernel's 15-character limit.
pub fn host_ifname(key: &str) -> String {
    format!("kv{:010x}", crate::fnv1a(key.as_bytes()) & 0xff_ffff_ffff)
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn set_sysctl(dev: &str, key: &str, value: &str) -> Result<(), DriverError> {
    let path = format!("/proc/sys/net/ipv4/conf/{dev}/{key}");
    fs::write(&path, value).map_err(|e| DriverError::Command {
        what: format!("set {path}"),
        detail: e.to_string(),
    })
}

/// Enables forwarding on the interfaces of the host's default routes, so
/// that replies to masqueraded container traffic are routed back in. This is
/// the one host setting kontti changes outside its own devices; it is left on
/// when networks go (docker sets `ip_forward` host-wide and leaves it too).
/// kontti's `forward` chain keeps neighbours out of unpublished ports.
pub(crate) fn enable_uplink_forwarding() -> Result<(), DriverError> {
    let table = fs::read_to_string("/proc/net/route").unwrap_or_default();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" {
            let path = format!("/proc/sys/net/ipv4/conf/{}/forwarding", f[0]);
            if fs::read_to_string(&path)
                .map(|v| v.trim() == "1")
                .unwrap_or(false)
            {
                continue;
            }
            tracing::info!(interface = f[0], "enabling IPv4 forwarding on the uplink");
            set_sysctl(f[0], "forwarding", "1")?;
        }
    }
    Ok(())
}

/// Wraps a netlink failure with what was being done.
fn nl(what: impl Into<String>) -> impl FnOnce(io::Error) -> DriverError {
    let what = what.into();
    move |e| DriverError::Command {
        what,
        detail: e.to_string(),
    }
}

impl NetworkDriver for BridgeDriver {
    #[instrument(skip_all, fields(network = %net.name, bridge = %net.bridge))]
    fn ensure_network(&self, net: &NetworkInfo) -> Result<(), DriverError> {
        let br = &net.bridge;
        let mut sock = Netlink::open().map_err(nl("open netlink socket"))?;
        if link_exists(br) {
            if !Path::new("/sys/class/net").join(br).join("bridge").exists() {
                return Err(DriverError::NotABridge(br.clone()));
            }
        } else {
            // A fixed MAC: a bridge without one takes the lowest MAC of its
            // ports and changes it when ports leave, which strands the
            // gateway in the containers' ARP caches for seconds.
            let [a, b, c, d] = net.gateway.octets();
            sock.create_bridge(br, [0x02, 0x6b, a, b, c, d], net.mtu)
                .map_err(nl(format!("create bridge {br}")))?;
        }
        let configured = sock
            .index(br)
            .and_then(|index| {
                sock.replace_address(index, net.gateway, net.subnet.prefix())?;
                sock.set_up(index, Some(net.mtu))
            })
            .map_err(nl(format!("configure bridge {br}")))
            // Containers' traffic is routed and NATed by the host: forwarding
            // is enabled on the bridge only, not host-wide. route_localnet
            // lets 127.0.0.1:PORT be DNATed to a container.
            .and_then(|()| set_sysctl(br, "forwarding", "1"))
            .and_then(|()| set_sysctl(br, "route_localnet", "1"));
        if let Err(e) = configured {
            let _ = self.remove_network(net);
            return Err(e);
        }
        Ok(())
    }

    #[instrument(skip_all, fields(network = %net.name, bridge = %net.bridge))]
    fn remove_network(&self, net: &NetworkInfo) -> Result<(), DriverError> {
        delete_link(&net.bridge, &format!("remove bridge {}", net.bridge))
    }

    #[instrument(skip_all, fields(network = %net.name, key = %spec.key))]
    fn attach(&self, net: &NetworkInfo, spec: &EndpointSpec) -> Result<Attachment, DriverError> {
        check_netns(&spec.netns)?;
        let netns = File::open(&spec.netns)
            .map_err(|_| DriverError::NamespaceNotFound(spec.netns.clone()))?;
        let host = host_ifname(&spec.key);
        let inside = &spec.ifname;
        let mut sock = Netlink::open().map_err(nl("open netlink socket"))?;
        let master = sock
            .index(&net.bridge)
            .map_err(nl(format!("find bridge {}", net.bridge)))?;
        sock.create_veth(&host, master, inside, &netns, net.mtu)
            .map_err(nl(format!(
                "create veth {host} and {inside} in {}",
                spec.netns.display()
            )))?;
        let configure = || -> io::Result<()> {
            let mut ns = Netlink::open_in(&netns)?;
            let lo = ns.index("lo")?;
            ns.set_up(lo, None)?;
            let index = ns.index(inside)?;
            ns.replace_address(index, spec.address, net.subnet.prefix())?;
            ns.set_up(index, None)?;
            if spec.default_route {
                ns.add_default_route(net.gateway)?;
            }
            Ok(())
        };
        if let Err(e) = configure() {
            // Deleting either end of a veth pair deletes both.
            let _ = delete_link(&host, "clean up");
            return Err(nl(format!(
                "configure {inside} in {}",
                spec.netns.display()
            ))(e));
        }
        Ok(Attachment {
            ifname: inside.clone(),
            host_ifname: host,
            netns: spec.netns.clone(),
            address: spec.address,
            prefix: net.subnet.prefix(),
            gateway: net.gateway,
        })
    }

    #[instrument(skip_all, fields(network = %net.name, host_ifname = %attachment.host_ifname))]
    fn detach(&self, net: &NetworkInfo, attachment: &Attachment) -> Result<(), DriverError> {
        // A namespace that died took the pair with it: nothing to do then.
        delete_link(
            &attachment.host_ifname,
            &format!("remove {}", attachment.host_ifname),
        )
    }
}

/// Deletes the host link `name`; a link that is gone already is fine.
fn delete_link(name: &str, what: &str) -> Result<(), DriverError> {
    let mut sock = Netlink::open().map_err(nl("open netlink socket"))?;
    let index = match sock.index(name) {
        Ok(i) => i,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(nl(what)(e)),
    };
    match sock.delete_link(index) {
        Err(e) if e.raw_os_error() == Some(19) => Ok(()), // ENODEV: raced away
        other => other.map_err(nl(what)),
    }
}
