//! IP address management: subnets for networks and addresses for endpoints.
//!
//! State is one JSON file under the state root, changed under an exclusive
//! file lock and replaced by an atomic rename, so that the CLI, the node agent
//! and a build running at the same time never hand out one address twice.
//! Subnets come from a configured pool (docker's defaults unless told
//! otherwise) and skip every subnet the host routes already.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::addr::Ipv4Net;
use crate::routes;

/// IPAM failures.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The requested subnet overlaps another network's or a host route.
    #[error("subnet {subnet} overlaps {other}")]
    Overlap {
        /// What was asked for.
        subnet: Ipv4Net,
        /// What it collides with (a network name or a host route).
        other: String,
    },
    /// Every subnet of the pool is taken or routed on the host.
    #[error("no free subnet left in the address pool ({pool})")]
    PoolExhausted {
        /// The pool, for the message.
        pool: String,
    },
    /// Every address of a network's subnet is allocated.
    #[error("no free address left in network {network} ({subnet})")]
    SubnetExhausted {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// The network has no subnet allocated.
    #[error("network {0:?} has no subnet in IPAM")]
    UnknownNetwork(String),
    /// The network has a subnet already.
    #[error("network {0:?} has a subnet in IPAM already")]
    NetworkExists(String),
    /// A requested address is outside the subnet or taken.
    #[error("address {ip} is not available in network {network}")]
    AddressUnavailable {
        /// The address.
        ip: Ipv4Addr,
        /// The network.
        network: String,
    },
    /// Reading or writing the state file failed.
    #[error("ipam state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("ipam state {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

impl IpamError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IpamError::Overlap { .. } | IpamError::AddressUnavailable { .. } => ErrorKind::Conflict,
            IpamError::PoolExhausted { .. } | IpamError::SubnetExhausted { .. } => {
                ErrorKind::Unavailable
            }
            IpamError::UnknownNetwork(_) => ErrorKind::NotFound,
            IpamError::NetworkExists(_) => ErrorKind::AlreadyExists,
            IpamError::Io { .. } | IpamError::Corrupt { .. } => ErrorKind::Internal,
        }
    }
}

/// Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut
/// into /20s.
pub fn default_pool() -> Vec<Ipv4Net> {
    let mut pool = Vec::new();
    for b in 17..=31u8 {
        pool.extend(Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    }
    for c in (0..=240u8).step_by(16) {
        pool.extend(Ipv4Net::new(Ipv4Addr::new(192, 168, c, 0), 20));
    }
    pool
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    networks: BTreeMap<String, NetworkLeases>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NetworkLeases {
    subnet: Ipv4Net,
    /// address -> owner (an endpoint key such as a container id)
    leases: BTreeMap<Ipv4Addr, String>,
}

/// The allocator. Cheap to construct; every operation locks, reads, changes
/// and atomically rewrites the state file.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    pool: Vec<Ipv4Net>,
}

impl Ipam {
    /// An allocator keeping its state in `dir` (created if missing) and taking
    /// subnets from `pool` in order.
    pub fn new(dir: &Path, pool: Vec<Ipv4Net>) -> Ipam {
        Ipam {
            dir: dir.to_owned(),
            pool,
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("ipam.json")
    }

    fn io(&self, path: &Path) -> impl Fn(io::Error) -> IpamError {
        let path = path.to_owned();
        move |source| IpamError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Runs `f` on the state under the lock; writes the state back if `f`
    /// succeeds.
    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let lock_path = self.dir.join("ipam.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(self.io(&lock_path))?;
        lock.lock().map_err(self.io(&lock_path))?;
        let path = self.state_path();
        let mut state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| IpamError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let out = f(&mut state)?;
        let bytes = serde_json::to_vec_pretty(&state).map_err(|source| IpamError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let tmp = self.dir.join(".ipam.json.tmp");
        let mut file = File::create(&tmp).map_err(self.io(&tmp))?;
        file.write_all(&bytes).map_err(self.io(&tmp))?;
        file.sync_all().map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        drop(lock);
        Ok(out)
    }

    /// Gives `network` a subnet: `requested` if it is free, else the first
    /// pool subnet that no other network holds and no host route touches.
    pub fn allocate_subnet(
        &self,
        network: &str,
        requested: Option<Ipv4Net>,
    ) -> Result<Ipv4Net, IpamError> {
        let host = routes::host_routes().map_err(self.io(Path::new("/proc/net/route")))?;
        self.with_state(|state| {
            if state.networks.contains_key(network) {
                return Err(IpamError::NetworkExists(network.to_owned()));
            }
            let held: Vec<(&str, Ipv4Net)> = state
                .networks
                .iter()
                .map(|(n, l)| (n.as_str(), l.subnet))
                .collect();
            let subnet = pick_subnet(&self.pool, &held, &host, requested)?;
            state.networks.insert(
                network.to_owned(),
                NetworkLeases {
                    subnet,
                    leases: BTreeMap::new(),
                },
            );
            Ok(subnet)
        })
    }

    /// Forgets `network`'s subnet and leases. Unknown networks are not an error.
    pub fn release_subnet(&self, network: &str) -> Result<(), IpamError> {
        self.with_state(|state| {
            state.networks.remove(network);
            Ok(())
        })
    }

    /// The subnet of `network`, if it has one.
    pub fn subnet(&self, network: &str) -> Result<Option<Ipv4Net>, IpamError> {
        self.with_state(|state| Ok(state.networks.get(network).map(|n| n.subnet)))
    }

    /// Leases an address of `network` to `owner`: `requested` if free, else
    /// the lowest free host address after the gateway. An owner that holds an
    /// address already gets the same one back.
    pub fn allocate_ip(
        &self,
        network: &str,
        owner: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        self.with_state(|state| {
            let net = state
                .networks
                .get_mut(network)
                .ok_or_else(|| IpamError::UnknownNetwork(network.to_owned()))?;
            if let Some((ip, _)) = net.leases.iter().find(|(_, o)| o.as_str() == owner) {
                return Ok(*ip);
            }
            let subnet = net.subnet;
            let usable = |ip: Ipv4Addr| {
                subnet.contains(ip)
                    && ip != subnet.network()
                    && ip != subnet.broadcast()
                    && ip != subnet.gateway()
            };
            let ip = match requested {
                Some(ip) if usable(ip) && !net.leases.contains_key(&ip) => ip,
                Some(ip) => {
                    return Err(IpamError::AddressUnavailable {
                        ip,
                        network: network.to_owned(),
                    });
                }
                None => (2..subnet.size().saturating_sub(1))
                    .map(|n| subnet.nth(n as u32))
                    .find(|ip| !net.leases.contains_key(ip))
                    .ok_or_else(|| IpamError::SubnetExhausted {
                        network: network.to_owned(),
                        subnet,
                    })?,
            };
            net.leases.insert(ip, owner.to_owned());
            Ok(ip)
        })
    }

    /// Returns `owner`'s address in `network` to the pool.
    pub fn release_ip(&self, network: &str, owner: &str) -> Result<(), IpamError> {
        self.with_state(|state| {
            if let Some(net) = state.networks.get_mut(network) {
                net.leases.retain(|_, o| o != owner);
            }
            Ok(())
        })
    }

    /// Every lease of `network`: address and owner.
    pub fn leases(&self, network: &str) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        self.with_state(|state| {
            Ok(state
                .networks
                .get(network)
                .map(|n| n.leases.iter().map(|(ip, o)| (*ip, o.clone())).collect())
                .unwrap_or_default())
        })
    }
}

/// Chooses a subnet: `requested` if nothing in `held` (other networks) or
/// `routes` (the host's) overlaps it, else the first such subnet of `pool`.
fn pick_subnet(
    pool: &[Ipv4Net],
    held: &[(&str, Ipv4Net)],
    routes: &[Ipv4Net],
    requested: Option<Ipv4Net>,
) -> Result<Ipv4Net, IpamError> {
    let taken = |candidate: &Ipv4Net| -> Option<String> {
        if let Some((name, _)) = held.iter().find(|(_, s)| s.overlaps(candidate)) {
            return Some(format!("network {name}"));
        }
        routes
            .iter()
            .find(|r| r.overlaps(candidate))
            .map(|r| format!("host route {r}"))
    };
    match requested {
        Some(subnet) => match taken(&subnet) {
            Some(other) => Err(IpamError::Overlap { subnet, other }),
            None => Ok(subnet),
        },
        None => pool
            .iter()
            .find(|c| taken(c).is_none())
            .copied()
            .ok_or_else(|| IpamError::PoolExhausted {
                pool: describe_pool(pool),
            }),
    }
}

fn describe_pool(pool: &[Ipv4Net]) -> String {
    match (pool.first(), pool.last()) {
        (Some(a), Some(b)) => format!("{} subnets from {a} to {b}", pool.len()),
        _ => "empty".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &[&str]) -> Vec<Ipv4Net> {
        s.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn allocates_subnets_and_addresses_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), pool(&["10.201.0.0/24", "10.201.1.0/24"]));
        let a = ipam.allocate_subnet("a", None).unwrap();
        let b = ipam.allocate_subnet("b", None).unwrap();
        assert_eq!(
            (a.to_string().as_str(), b.to_string().as_str()),
            ("10.201.0.0/24", "10.201.1.0/24")
        );
        assert!(matches!(
            ipam.allocate_subnet("c", None),
            Err(IpamError::PoolExhausted { .. })
        ));
        assert!(matches!(
            ipam.allocate_subnet("a", None),
            Err(IpamError::NetworkExists(_))
        ));
        assert_eq!(
            ipam.allocate_ip("a", "c1", None).unwrap(),
            Ipv4Addr::new(10, 201, 0, 2)
        );
        assert_eq!(
            ipam.allocate_ip("a", "c2", None).unwrap(),
            Ipv4Addr::new(10, 201, 0, 3)
        );
        assert_eq!(
            ipam.allocate_ip("a", "c1", None).unwrap(),
            Ipv4Addr::new(10, 201, 0, 2)
        );
        ipam.release_ip("a", "c1").unwrap();
        assert_eq!(
            ipam.allocate_ip("a", "c3", None).unwrap(),
            Ipv4Addr::new(10, 201, 0, 2)
        );
        ipam.release_subnet("a").unwrap();
        assert!(matches!(
            ipam.allocate_ip("a", "c4", None),
            Err(IpamError::UnknownNetwork(_))
        ));
    }

    #[test]
    fn rejects_overlaps_and_taken_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), pool(&["10.202.0.0/16"]));
        ipam.allocate_subnet("a", Some("10.202.0.0/16".parse().unwrap()))
            .unwrap();
        let err = ipam
            .allocate_subnet("b", Some("10.202.3.0/24".parse().unwrap()))
            .unwrap_err();
        assert_eq!(err.to_string(), "subnet 10.202.3.0/24 overlaps network a");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        ipam.allocate_ip("a", "c1", Some(Ipv4Addr::new(10, 202, 0, 9)))
            .unwrap();
        for ip in [
            Ipv4Addr::new(10, 202, 0, 9),
            Ipv4Addr::new(10, 202, 0, 1),
            Ipv4Addr::new(10, 9, 0, 1),
        ] {
            assert!(matches!(
                ipam.allocate_ip("a", "c2", Some(ip)),
                Err(IpamError::AddressUnavailable { .. })
            ));
        }
    }

    #[test]
    fn exhausts_a_small_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), pool(&["10.203.0.0/30"]));
        ipam.allocate_subnet("a", None).unwrap();
        // /30: network, gateway, one host, broadcast.
        ipam.allocate_ip("a", "c1", None).unwrap();
        assert!(matches!(
            ipam.allocate_ip("a", "c2", None),
            Err(IpamError::SubnetExhausted { .. })
        ));
    }

    #[test]
    fn corrupt_state_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ipam.json"), b"{not json").unwrap();
        let ipam = Ipam::new(dir.path(), pool(&["10.204.0.0/24"]));
        let err = ipam.allocate_subnet("a", None).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    #[test]
    fn the_default_pool_skips_docker0_and_other_routes() {
        let routes = pool(&["192.0.2.0/24", "172.17.0.0/16", "172.18.5.0/24"]);
        let held = [("a", "172.19.0.0/16".parse().unwrap())];
        let got = pick_subnet(&default_pool(), &held, &routes, None).unwrap();
        assert_eq!(got.to_string(), "172.20.0.0/16");
        let err = pick_subnet(
            &default_pool(),
            &held,
            &routes,
            Some("172.17.3.0/24".parse().unwrap()),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet 172.17.3.0/24 overlaps host route 172.17.0.0/16"
        );
    }

    #[test]
    fn default_pool_starts_like_dockers() {
        let p = default_pool();
        assert_eq!(p[0].to_string(), "172.17.0.0/16");
        assert_eq!(p[15].to_string(), "192.168.0.0/20");
        assert_eq!(p.len(), 31);
    }
}
