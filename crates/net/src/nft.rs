//! kontti's firewall: one nftables table (`table ip kontti` by default) with
//! sets of networks and maps of published ports, driven through the `nft`
//! tool, one atomic batch per change.
//!
//! * `postrouting` masquerades traffic leaving a kontti subnet for any other
//!   destination, and traffic from 127.0.0.0/8 into a kontti bridge (published
//!   ports reached on 127.0.0.1, with `route_localnet` on the bridge).
//! * `guard` drops packets from kontti bridges addressed to 127.0.0.0/8:
//!   `route_localnet` (needed for 127.0.0.1 publishing) would otherwise let a
//!   container reach the host's loopback-only services (CVE-2020-8558). Replies
//!   to DNATed loopback clients are not affected: before NAT they are addressed
//!   to the gateway.
//! * `forward` lets into a kontti bridge only what comes from a kontti bridge,
//!   replies, and DNATed (published) connections: with forwarding on, a
//!   neighbour routing a container subnet through this host must not reach
//!   unpublished ports.
//! * `prerouting` and `output` DNAT published ports for local destination
//!   addresses, so that other hosts and the host itself reach them; the maps
//!   are keyed by (address, protocol, port) and (protocol, port).
//! * Where the host filters forwarded traffic with a drop policy (dockerd sets
//!   `FORWARD DROP`), an accept in a chain of kontti's own cannot help: every
//!   base chain on a hook sees the packet and a drop anywhere is final. So kontti
//!   adds, in each such table, a regular chain `kontti-forward` holding its
//!   accepts and one jump rule at the top of the dropping chain, tagged with the
//!   comment `kontti`, and removes both with its last network.
//!
//! The host's own rules are never changed otherwise.

use std::io::Write;
use std::process::{Command, Stdio};

use kontti_core::ErrorKind;
use serde_json::Value;
use tracing::debug;

use crate::addr::{Ipv4Net, PortMapping};
use std::net::Ipv4Addr;

/// Firewall failures.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run.
    #[error("cannot run nft (install Debian's nftables): {0}")]
    Spawn(std::io::Error),
    /// `nft` rejected a batch.
    #[error("nft {what}: {detail}")]
    Rejected {
        /// What the batch did.
        what: String,
        /// nft's first error line.
        detail: String,
    },
    /// `nft -j` printed something that is not its JSON.
    #[error("nft printed unexpected JSON: {0}")]
    Json(String),
}

impl NftError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NftError::Spawn(_) => ErrorKind::Unavailable,
            NftError::Rejected { .. } | NftError::Json(_) => ErrorKind::Internal,
        }
    }
}

/// Name of the regular chain kontti adds to host tables that drop forwarded
/// traffic.
pub const FORWARD_CHAIN: &str = "kontti-forward";

/// Handle on kontti's nftables table.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

/// Runs `nft` with `args`, feeding `stdin`; returns stdout.
fn nft(args: &[&str], stdin: &str, what: &str) -> Result<String, NftError> {
    debug!(?args, batch = stdin, "nft");
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = stderr
        .lines()
        .find(|l| l.contains("Error"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("failed")
        .trim()
        .to_owned();
    Err(NftError::Rejected {
        what: what.to_owned(),
        detail,
    })
}

fn apply(batch: &str, what: &str) -> Result<(), NftError> {
    nft(&["-f", "-"], batch, what).map(|_| ())
}

fn list_json(args: &[&str]) -> Result<Vec<Value>, NftError> {
    let mut full = vec!["-j", "list"];
    full.extend_from_slice(args);
    let out = nft(&full, "", &format!("list {}", args.join(" ")))?;
    let v: Value = serde_json::from_str(&out).map_err(|e| NftError::Json(e.to_string()))?;
    Ok(v.get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// A base chain of the host hooked at forward with a drop policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DroppingChain {
    family: String,
    table: String,
    chain: String,
}

impl Firewall {
    /// kontti's table named `table` (in the `ip` family).
    pub fn new(table: &str) -> Firewall {
        Firewall {
            table: table.to_owned(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The batch that creates the table, its sets, maps and chains, and
    /// (re)writes its rules. Idempotent: sets and maps keep their elements.
    fn base_batch(&self) -> String {
        let t = &self.table;
        let dnat = "fib daddr type local dnat to ip daddr . meta l4proto . th dport map @ports\n\
                    add rule ip TABLE CHAIN fib daddr type local dnat to meta l4proto . th dport map @ports_any";
        let mut b = format!(
            "add table ip {t}\n\
             add set ip {t} subnets {{ type ipv4_addr; flags interval; }}\n\
             add set ip {t} bridges {{ type ifname; }}\n\
             add map ip {t} ports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add map ip {t} ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             add chain ip {t} guard {{ type filter hook prerouting priority raw; policy accept; }}\n\
             flush chain ip {t} guard\n\
             add rule ip {t} guard iifname @bridges ip daddr 127.0.0.0/8 counter drop\n\
             add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}\n\
             flush chain ip {t} forward\n\
             add rule ip {t} forward oifname != @bridges accept\n\
             add rule ip {t} forward iifname @bridges accept\n\
             add rule ip {t} forward ct state established,related accept\n\
             add rule ip {t} forward ct status dnat accept\n\
             add rule ip {t} forward counter drop\n\
             flush chain ip {t} prerouting\n\
             flush chain ip {t} output\n\
             flush chain ip {t} postrouting\n"
        );
        for chain in ["prerouting", "output"] {
            b.push_str(&format!(
                "add rule ip {t} {chain} {}\n",
                dnat.replace("TABLE", t).replace("CHAIN", chain)
            ));
        }
        b.push_str(&format!(
            "add rule ip {t} postrouting ip saddr @subnets ip daddr != @subnets masquerade\n\
             add rule ip {t} postrouting ip saddr 127.0.0.0/8 oifname @bridges masquerade\n"
        ));
        b
    }

    /// Adds a network: its subnet is masqueraded on the way out and its bridge
    /// may receive DNATed loopback traffic; where the host drops forwarded
    /// traffic, the bridge's traffic is accepted.
    pub fn add_network(&self, name: &str, subnet: Ipv4Net, bridge: &str) -> Result<(), NftError> {
        let t = &self.table;
        let mut batch = self.base_batch();
        batch.push_str(&format!(
            "add element ip {t} subnets {{ {subnet} }}\nadd element ip {t} bridges {{ \"{bridge}\" }}\n"
        ));
        for host in dropping_forward_chains(&self.table)? {
            batch.push_str(&forward_accept_batch(
                &host,
                name,
                bridge,
                self.host_jump_missing(&host)?,
            ));
        }
        apply(&batch, &format!("add network {name}"))
    }

    fn host_jump_missing(&self, host: &DroppingChain) -> Result<bool, NftError> {
        let rules = list_json(&["chain", &host.family, &host.table, &host.chain])?;
        Ok(!rules.iter().any(|r| comment_of(r) == Some("kontti")))
    }

    /// Removes what [`Firewall::add_network`] added. With `last` set (no kontti
    /// network is left), the whole table and every jump into
    /// `kontti-forward` go too.
    pub fn remove_network(
        &self,
        name: &str,
        subnet: Ipv4Net,
        bridge: &str,
        last: bool,
    ) -> Result<(), NftError> {
        let t = &self.table;
        let mut batch = String::new();
        if last {
            if table_exists(t)? {
                batch.push_str(&format!("delete table ip {t}\n"));
            }
        } else {
            for (set, elem) in [
                ("subnets", subnet.to_string()),
                ("bridges", format!("\"{bridge}\"")),
            ] {
                if element_exists(t, set, &elem)? {
                    batch.push_str(&format!("delete element ip {t} {set} {{ {elem} }}\n"));
                }
            }
        }
        batch.push_str(&self.forward_cleanup_batch(name, last)?);
        if batch.is_empty() {
            return Ok(());
        }
        apply(&batch, &format!("remove network {name}"))
    }

    /// Deletes the accept rules of `name` from every host table's
    /// `kontti-forward` chain, and the chain and its jump when it empties (or
    /// when `last`).
    fn forward_cleanup_batch(&self, name: &str, last: bool) -> Result<String, NftError> {
        let mut batch = String::new();
        let tag = format!("kontti:{name}");
        for chain in list_json(&["chains"])? {
            let Some(c) = chain.get("chain") else {
                continue;
            };
            if c.get("name").and_then(Value::as_str) != Some(FORWARD_CHAIN) {
                continue;
            }
            let (Some(family), Some(table)) = (
                c.get("family").and_then(Value::as_str),
                c.get("table").and_then(Value::as_str),
            ) else {
                continue;
            };
            let rules = list_json(&["chain", family, table, FORWARD_CHAIN])?;
            let rules: Vec<&Value> = rules.iter().filter(|r| r.get("rule").is_some()).collect();
            let ours: Vec<u64> = rules
                .iter()
                .filter(|r| comment_of(r) == Some(tag.as_str()))
                .filter_map(|r| handle_of(r))
                .collect();
            if last || ours.len() == rules.len() {
                // Drop the jumps first, then the chain.
                for base in list_json(&["table", family, table])? {
                    if comment_of(&base) == Some("kontti")
                        && let (Some(h), Some(ch)) = (
                            handle_of(&base),
                            base["rule"].get("chain").and_then(Value::as_str),
                        )
                    {
                        batch.push_str(&format!("delete rule {family} {table} {ch} handle {h}\n"));
                    }
                }
                batch.push_str(&format!("flush chain {family} {table} {FORWARD_CHAIN}\n"));
                batch.push_str(&format!("delete chain {family} {table} {FORWARD_CHAIN}\n"));
            } else {
                for h in ours {
                    batch.push_str(&format!(
                        "delete rule {family} {table} {FORWARD_CHAIN} handle {h}\n"
                    ));
                }
            }
        }
        Ok(batch)
    }

    /// Publishes `ports` of the container at `ip`.
    pub fn publish(&self, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<(), NftError> {
        if ports.is_empty() {
            return Ok(());
        }
        let mut batch = self.base_batch();
        for p in ports {
            batch.push_str(&self.port_element("add", ip, p));
        }
        apply(&batch, &format!("publish ports of {ip}"))
    }

    /// Withdraws `ports` of the container at `ip`; ports that are not
    /// published are skipped.
    pub fn unpublish(&self, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<(), NftError> {
        if ports.is_empty() || !table_exists(&self.table)? {
            return Ok(());
        }
        let mut batch = String::new();
        for p in ports {
            let (map, key) = port_key(p);
            if element_exists(&self.table, map, &key)? {
                batch.push_str(&self.port_element("delete", ip, p));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        apply(&batch, &format!("unpublish ports of {ip}"))
    }

    fn port_element(&self, verb: &str, ip: Ipv4Addr, p: &PortMapping) -> String {
        let (map, key) = port_key(p);
        let value = if verb == "add" {
            format!(" : {ip} . {}", p.container_port)
        } else {
            String::new()
        };
        format!(
            "{verb} element ip {} {map} {{ {key}{value} }}\n",
            self.table
        )
    }
}

fn port_key(p: &PortMapping) -> (&'static str, String) {
    match p.host_ip {
        Some(addr) => (
            "ports",
            format!("{addr} . {} . {}", p.protocol.as_str(), p.host_port),
        ),
        None => (
            "ports_any",
            format!("{} . {}", p.protocol.as_str(), p.host_port),
        ),
    }
}

fn forward_accept_batch(host: &DroppingChain, name: &str, bridge: &str, add_jump: bool) -> String {
    let DroppingChain {
        family,
        table,
        chain,
    } = host;
    let c = format!("comment \"kontti:{name}\"");
    let mut b = format!("add chain {family} {table} {FORWARD_CHAIN}\n");
    b.push_str(&format!(
        "add rule {family} {table} {FORWARD_CHAIN} iifname \"{bridge}\" accept {c}\n\
         add rule {family} {table} {FORWARD_CHAIN} oifname \"{bridge}\" ct state established,related accept {c}\n\
         add rule {family} {table} {FORWARD_CHAIN} oifname \"{bridge}\" ct status dnat accept {c}\n"
    ));
    if add_jump {
        b.push_str(&format!(
            "insert rule {family} {table} {chain} jump {FORWARD_CHAIN} comment \"kontti\"\n"
        ));
    }
    b
}

/// Host base chains (not kontti's table) hooked at forward whose policy drops.
fn dropping_forward_chains(own_table: &str) -> Result<Vec<DroppingChain>, NftError> {
    let mut out = Vec::new();
    for v in list_json(&["chains"])? {
        let Some(c) = v.get("chain") else { continue };
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        let family = s("family");
        if s("hook") == "forward"
            && s("policy") == "drop"
            && matches!(family, "ip" | "inet")
            && !(family == "ip" && s("table") == own_table)
        {
            out.push(DroppingChain {
                family: family.to_owned(),
                table: s("table").to_owned(),
                chain: s("name").to_owned(),
            });
        }
    }
    Ok(out)
}

fn comment_of(v: &Value) -> Option<&str> {
    v.get("rule")?.get("comment")?.as_str()
}

fn handle_of(v: &Value) -> Option<u64> {
    v.get("rule")?.get("handle")?.as_u64()
}

fn table_exists(table: &str) -> Result<bool, NftError> {
    Ok(list_json(&["tables"])?.iter().any(|v| {
        v.get("table").is_some_and(|t| {
            t.get("family").and_then(Value::as_str) == Some("ip")
                && t.get("name").and_then(Value::as_str) == Some(table)
        })
    }))
}

fn element_exists(table: &str, set: &str, elem: &str) -> Result<bool, NftError> {
    if !table_exists(table)? {
        return Ok(false);
    }
    let batch = format!("get element ip {table} {set} {{ {elem} }}\n");
    Ok(nft(&["-f", "-"], &batch, "get element").is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_elements_are_keyed_by_address_when_given() {
        let fw = Firewall::new("kontti");
        let ip = Ipv4Addr::new(172, 18, 0, 2);
        let p: PortMapping = "127.0.0.1:8080:80".parse().unwrap();
        assert_eq!(
            fw.port_element("add", ip, &p),
            "add element ip kontti ports { 127.0.0.1 . tcp . 8080 : 172.18.0.2 . 80 }\n"
        );
        let p: PortMapping = "5353:53/udp".parse().unwrap();
        assert_eq!(
            fw.port_element("delete", ip, &p),
            "delete element ip kontti ports_any { udp . 5353 }\n"
        );
    }

    #[test]
    fn base_batch_is_checked_by_nft() {
        // `nft -c` parses and validates against the kernel without changing
        // anything; it needs root like every firewall test.
        kontti_testutil::require_root();
        let fw = Firewall::new("kontti-check");
        nft(&["-c", "-f", "-"], &fw.base_batch(), "check").unwrap();
    }
}
