//! IPv4 subnets and published-port specifications: pure parsing, no I/O.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};

/// Why a subnet or port specification could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    /// A subnet is not `A.B.C.D/N` with N between 8 and 30.
    #[error("invalid subnet {0:?}: expected A.B.C.D/N with 8 <= N <= 30")]
    Subnet(String),
    /// A published port is not `[ip:]host:container[/tcp|/udp]`.
    #[error("invalid port mapping {0:?}: expected [ip:]hostport:containerport[/tcp|/udp]")]
    PortMapping(String),
}

impl AddrError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// An IPv4 subnet, always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A subnet from an address (host bits are cleared) and a prefix length.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, AddrError> {
        if !(8..=30).contains(&prefix) {
            return Err(AddrError::Subnet(format!("{addr}/{prefix}")));
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        Ok(Ipv4Net { network, prefix })
    }

    /// A subnet of any prefix length 0..=32, for host routes.
    pub(crate) fn route(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let prefix = prefix.min(32);
        Ipv4Net {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The gateway kontti gives a network: its first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }

    /// The `n`th address of the subnet (0 is the network address).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(n))
    }

    /// How many addresses the subnet has, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` lies in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(p) == u32::from(other.network) & mask(p)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddrError::Subnet(s.to_owned());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let net = Ipv4Net::new(addr, prefix).map_err(|_| bad())?;
        if net.network != addr {
            // 10.0.0.5/24 is almost always a typo for 10.0.0.0/24: say so.
            return Err(bad());
        }
        Ok(net)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The name nftables and users know.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A `-p [ip:]host:container[/udp]` publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to publish on; `None` means every local address,
    /// 127.0.0.1 included.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl FromStr for PortMapping {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddrError::PortMapping(s.to_owned());
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Protocol::Tcp),
            Some((r, "udp")) => (r, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (s, Protocol::Tcp),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, host, container) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [ip, h, c] => {
                let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
                let ip = if ip.is_unspecified() { None } else { Some(ip) };
                (ip, *h, *c)
            }
            _ => return Err(bad()),
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad()),
            Ok(n) => Ok(n),
        };
        Ok(PortMapping {
            host_ip,
            host_port: port(host)?,
            container_port: port(container)?,
            protocol,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let a: Ipv4Net = "172.18.0.0/16".parse().unwrap();
        let b: Ipv4Net = "172.18.5.0/24".parse().unwrap();
        let c: Ipv4Net = "172.19.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert_eq!(a.gateway(), Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(a.broadcast(), Ipv4Addr::new(172, 18, 255, 255));
        assert_eq!(a.to_string(), "172.18.0.0/16");
        assert!(a.contains(Ipv4Addr::new(172, 18, 9, 9)));
        assert!(!a.contains(Ipv4Addr::new(172, 19, 0, 1)));
    }

    #[test]
    fn bad_subnets_are_rejected() {
        for s in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/31",
            "10.0.0.5/24",
            "x/8",
            "10.0.0.0/4",
        ] {
            assert_eq!(
                s.parse::<Ipv4Net>(),
                Err(AddrError::Subnet(s.into())),
                "{s}"
            );
        }
    }

    #[test]
    fn port_mappings_parse() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol),
            (None, 8080, 80, Protocol::Tcp)
        );
        let p: PortMapping = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.to_string(), "127.0.0.1:5353:53/udp");
        let p: PortMapping = "0.0.0.0:1:2".parse().unwrap();
        assert_eq!(p.host_ip, None);
    }

    #[test]
    fn bad_port_mappings_are_rejected() {
        for s in [
            "80",
            "0:80",
            "80:0",
            "70000:80",
            "a:80",
            "1.2.3:80:80",
            "80:80/sctp",
            "1:2:3:4",
        ] {
            assert!(s.parse::<PortMapping>().is_err(), "{s}");
        }
    }
}
