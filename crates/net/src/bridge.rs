//! The bridge driver: a Linux bridge per network holding the gateway address,
//! and a veth pair per endpoint (host end on the bridge, the other end inside
//! the container's namespace).
//!
//! Links are changed with iproute2's `ip -batch` (one process on the host side
//! and one inside the namespace, entered with `nsenter --net=PATH`), which keeps
//! the library free of unsafe code and of an async netlink stack; an attach
//! costs two short-lived processes. The inside end is created in the namespace
//! and its peer is sent back to the host by PID, because iproute2 6.1 accepts
//! only names under /run/netns or PIDs, not namespace paths.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tracing::{debug, instrument};

use crate::driver::{
    Attachment, DriverError, EndpointSpec, NetworkDriver, NetworkInfo, check_netns,
};

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

/// Runs `ip -batch -` (optionally inside `netns`) with `script` on stdin.
fn ip_batch(netns: Option<&Path>, script: &str, what: &str) -> Result<(), DriverError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    debug!(netns = ?netns, script, "ip -batch");
    let fail = |detail: String| DriverError::Command {
        what: what.to_owned(),
        detail,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(format!("writing to ip: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for ip: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = stderr
        .lines()
        .find(|l| !l.starts_with("Command failed"))
        .unwrap_or("ip failed")
        .trim()
        .to_owned();
    Err(fail(detail))
}

impl NetworkDriver for BridgeDriver {
    #[instrument(skip_all, fields(network = %net.name, bridge = %net.bridge))]
    fn ensure_network(&self, net: &NetworkInfo) -> Result<(), DriverError> {
        let br = &net.bridge;
        if link_exists(br) {
            if !Path::new("/sys/class/net").join(br).join("bridge").exists() {
                return Err(DriverError::NotABridge(br.clone()));
            }
        } else {
            ip_batch(
                None,
                &format!("link add name {br} mtu {} type bridge\n", net.mtu),
                &format!("create bridge {br}"),
            )?;
        }
        let script = format!(
            "addr replace {}/{} dev {br}\nlink set {br} mtu {} up\n",
            net.gateway,
            net.subnet.prefix(),
            net.mtu
        );
        let configured = ip_batch(None, &script, &format!("configure bridge {br}"))
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
        if !link_exists(&net.bridge) {
            return Ok(());
        }
        ip_batch(
            None,
            &format!("link del {}\n", net.bridge),
            &format!("remove bridge {}", net.bridge),
        )
    }

    #[instrument(skip_all, fields(network = %net.name, key = %spec.key))]
    fn attach(&self, net: &NetworkInfo, spec: &EndpointSpec) -> Result<Attachment, DriverError> {
        check_netns(&spec.netns)?;
        let host = host_ifname(&spec.key);
        let inside = &spec.ifname;
        let mtu = net.mtu;
        let mut script = format!(
            "link add {inside} mtu {mtu} type veth peer name {host} mtu {mtu} netns {pid}\n\
             link set lo up\n\
             addr add {ip}/{prefix} dev {inside}\n\
             link set {inside} up\n",
            pid = std::process::id(),
            ip = spec.address,
            prefix = net.subnet.prefix(),
        );
        if spec.default_route {
            script.push_str(&format!("route add default via {}\n", net.gateway));
        }
        let attachment = Attachment {
            ifname: inside.clone(),
            host_ifname: host.clone(),
            netns: spec.netns.clone(),
            address: spec.address,
            prefix: net.subnet.prefix(),
            gateway: net.gateway,
        };
        let result = ip_batch(
            Some(&spec.netns),
            &script,
            &format!("configure {inside} in {}", spec.netns.display()),
        )
        .and_then(|()| {
            ip_batch(
                None,
                &format!("link set {host} master {} up\n", net.bridge),
                &format!("attach {host} to {}", net.bridge),
            )
        });
        if let Err(e) = result {
            // Deleting either end of a veth pair deletes both.
            if link_exists(&host) {
                let _ = ip_batch(None, &format!("link del {host}\n"), "clean up");
            } else {
                let _ = ip_batch(
                    Some(&spec.netns),
                    &format!("link del {inside}\n"),
                    "clean up",
                );
            }
            return Err(e);
        }
        Ok(attachment)
    }

    #[instrument(skip_all, fields(network = %net.name, host_ifname = %attachment.host_ifname))]
    fn detach(&self, net: &NetworkInfo, attachment: &Attachment) -> Result<(), DriverError> {
        let _ = net;
        let host = &attachment.host_ifname;
        if !link_exists(host) {
            // The namespace died and took the pair with it.
            return Ok(());
        }
        match ip_batch(
            None,
            &format!("link del {host}\n"),
            &format!("remove {host}"),
        ) {
            Err(_) if !link_exists(host) => Ok(()),
            other => other,
        }
    }
}
