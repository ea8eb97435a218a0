//! The engine's network glue against the host: outbound NAT reaches a
//! namespace playing "the outside" (and nothing leaves by the default
//! route), a UDP port published on 127.0.0.1 answers, and `restore` brings
//! networks back after a simulated reboot. Run as root, serially (every
//! name contains `network`).
#![allow(clippy::disallowed_macros)]

mod network_support;

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kontti_engine::network::{self, NetworkMode, Settings};
use network_support::{Container, Guard, Leaks, Teardown, root_with, sh};

/// A namespace playing "the outside": a veth pair from the host with
/// 198.51.101.1 (host) and 198.51.101.2 (outside), and no route back to
/// any container subnet, so only masqueraded traffic gets answers.
struct Outside {
    _holder: Child,
    pid: u32,
    host_if: String,
}

impl Outside {
    fn new() -> Outside {
        let holder = Command::new("unshare")
            .args(["--net", "/bin/busybox", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = holder.id();
        let own = fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..500 {
            let ns = fs::read_link(format!("/proc/{pid}/ns/net"));
            if ns.is_ok_and(|n| n != own) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let host_if = format!("kto{}", std::process::id() % 100_000);
        sh(&format!(
            "ip link add {host_if} type veth peer name out0 netns {pid} && \
             ip addr add 198.51.101.1/24 dev {host_if} && ip link set {host_if} up && \
             echo 1 > /proc/sys/net/ipv4/conf/{host_if}/forwarding && \
             nsenter --net=/proc/{pid}/ns/net sh -c 'ip addr add 198.51.101.2/24 dev out0 && ip link set out0 up && ip link set lo up'"
        ));
        Outside {
            _holder: holder,
            pid,
            host_if,
        }
    }

    fn spawn(&self, args: &[&str]) -> Guard {
        Guard(
            Command::new("nsenter")
                .arg(format!("--net=/proc/{}/ns/net", self.pid))
                .arg("/bin/busybox")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = self._holder.kill();
        let _ = self._holder.wait();
    }
}

/// Counts packets from `subnet` leaving by the host's default-route
/// interface, in a table of the test's own: container traffic must never
/// reach a real outside address.
struct EgressCounter(String);

impl EgressCounter {
    fn new(subnet: &str) -> EgressCounter {
        let table = format!("kontti-egress-e{}", std::process::id());
        let route = fs::read_to_string("/proc/net/route").unwrap();
        let dev = route
            .lines()
            .skip(1)
            .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("eth0")
            .to_owned();
        sh(&format!(
            "nft 'add table ip {table}; add chain ip {table} post {{ type filter hook postrouting priority -300; }}; \
             add rule ip {table} post oifname \"{dev}\" ip saddr {subnet} counter'"
        ));
        EgressCounter(table)
    }

    fn packets(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.0])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text.find("packets ").expect("counter");
        text[at + 8..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("packet count")
    }
}

impl Drop for EgressCounter {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.0])
            .status();
    }
}

#[test]
fn network_outbound_nat_reaches_an_outside_namespace() {
    let root = root_with("10.245.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let outside = Outside::new();
        let counter = EgressCounter::new("10.245.0.0/24");
        let c = Container::new(r, "client");
        let _t = Teardown(r, vec![c.id.clone()]);
        network::attach(r, &c.request("client", NetworkMode::Bridge)).unwrap();
        c.ok(&["ping", "-c", "1", "-W", "2", "198.51.101.2"]);
        // The outside answers a TCP connection: it saw the host's address
        // (it has no route to 10.245.0.0/24).
        let _server = outside.spawn(&["nc", "-l", "-p", "9000", "-e", "echo", "from-outside"]);
        let mut out = String::new();
        for _ in 0..50 {
            let o = c.run(&["nc", "-w", "2", "198.51.101.2", "9000"]);
            out = String::from_utf8_lossy(&o.stdout).into_owned();
            if out.contains("from-outside") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(out.contains("from-outside"), "{out:?}");
        assert_eq!(
            counter.packets(),
            0,
            "container traffic left by the default route"
        );
        network::detach(r, &c.id).unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_restore_brings_networks_back_after_a_simulated_reboot() {
    let root = root_with("10.252.0.0/24");
    let r = root.path();
    let mut settings = Settings::load(r).unwrap();
    settings.pool = Some(vec![
        "10.252.0.0/24".parse().unwrap(),
        "10.252.1.0/24".parse().unwrap(),
    ]);
    settings.store(r).unwrap();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let _t = Teardown(r, vec![a.id.clone()]);
        network::attach(r, &a.request("alpha", NetworkMode::Bridge)).unwrap();
        let spec = kontti_net::NetworkSpec {
            name: "spare".into(),
            ..Default::default()
        };
        let spare = network::create(r, &spec, None).unwrap();
        let state = network::networks(r).unwrap().inspect("bridge").unwrap();
        // What a reboot takes: the namespace (its pin file stays, empty),
        // the bridge, the DNS responder and kontti's nft table.
        sh(&format!("umount {}", a.netns.display()));
        sh(&format!("ip link del {}", state.info.bridge));
        sh(&format!("kill -9 {}", state.dns_pid.unwrap()));
        sh(&format!("ip link del {}", spare.info.bridge));
        sh(&format!("kill -9 {}", spare.dns_pid.unwrap()));
        sh(&format!(
            "nft delete table ip kontti-e{}",
            std::process::id()
        ));

        assert_eq!(
            network::restore(r).unwrap(),
            vec!["bridge".to_owned(), "spare".to_owned()]
        );
        let spare_now = network::networks(r).unwrap().inspect("spare").unwrap();
        assert_eq!(spare_now.info.subnet, spare.info.subnet);
        assert!(
            Path::new("/sys/class/net")
                .join(&spare_now.info.bridge)
                .exists()
        );
        let now = network::networks(r).unwrap().inspect("bridge").unwrap();
        assert!(now.endpoints.is_empty(), "the dead endpoint is dropped");
        assert_eq!(now.info.subnet, state.info.subnet);
        assert_eq!(now.info.bridge, state.info.bridge);
        assert!(Path::new("/sys/class/net").join(&now.info.bridge).exists());
        // Healthy now: nothing more to do.
        assert!(network::restore(r).unwrap().is_empty());

        // A new container attaches and resolves names again.
        let b = Container::new(r, "beta");
        let setup = network::attach(r, &b.request("beta", NetworkMode::Bridge)).unwrap();
        assert_eq!(setup.endpoints[0].1, Ipv4Addr::new(10, 252, 0, 2));
        let out = b.ok(&["nslookup", "beta", "10.252.0.1"]);
        assert!(out.contains("10.252.0.2"), "{out}");
        network::detach(r, &b.id).unwrap();
        network::networks(r).unwrap().remove("spare").unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

/// Run inside a container's namespace by
/// `network_published_udp_port_answers_on_loopback` (through nsenter):
/// answers one datagram on UDP port 53. Does nothing on its own.
#[test]
fn udp_echo_helper() {
    if std::env::var_os("KONTTI_UDP_ECHO").is_none() {
        return;
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:53").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, peer) = sock.recv_from(&mut buf).unwrap();
    let mut reply = b"pong:".to_vec();
    reply.extend_from_slice(&buf[..n]);
    sock.send_to(&reply, peer).unwrap();
}

#[test]
fn network_published_udp_port_answers_on_loopback() {
    let root = root_with("10.241.1.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "udp");
        let _t = Teardown(r, vec![a.id.clone()]);
        let mut req = a.request("udp", NetworkMode::Bridge);
        req.ports = vec!["127.0.0.1:18483:53/udp".parse().unwrap()];
        network::attach(r, &req).unwrap();
        let _server = Guard(
            Command::new("nsenter")
                .arg(format!("--net={}", a.netns.display()))
                .arg(std::env::current_exe().unwrap())
                .args(["--exact", "udp_echo_helper", "--nocapture"])
                .env("KONTTI_UDP_ECHO", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..25 {
            client.send_to(b"ping", "127.0.0.1:18483").unwrap();
            if let Ok(n) = client.recv(&mut buf) {
                got = buf[..n].to_vec();
                break;
            }
        }
        assert_eq!(String::from_utf8_lossy(&got), "pong:ping");
        network::detach(r, &a.id).unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}
