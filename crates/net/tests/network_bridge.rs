//! Real-kernel tests of networks: two namespaces on a bridge talk and resolve
//! each other by name, a published port answers on 127.0.0.1 and on the
//! host's other addresses, outbound NAT reaches a namespace playing "the
//! outside", and nothing is left behind. Run as root, serially (names contain
//! `network`).
#![allow(clippy::disallowed_macros)]

mod support;

use std::fs;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use kontti_net::{ConnectSpec, NetworkSpec, Networks};
use support::{Leaks, Netns, sh};

fn connect(nets: &Networks, net: &str, name: &str, ns: &Netns) -> Ipv4Addr {
    let mut spec = ConnectSpec::new(name, ns.path());
    spec.aliases = vec![format!("{name}-alias")];
    nets.connect(net, &spec)
        .expect("connect")
        .attachment
        .address
}

#[test]
fn network_two_containers_ping_and_resolve_by_name() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let nets = Networks::new(support::config(state.path(), &["10.231.0.0/24"]));
        let _teardown = support::Teardown(&nets);
        let net = nets
            .create(&NetworkSpec {
                name: "front".into(),
                mtu: Some(1400),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(net.info.subnet.to_string(), "10.231.0.0/24");
        let bridge = net.info.bridge.clone();
        assert_eq!(
            fs::read_to_string(format!("/sys/class/net/{bridge}/mtu"))
                .unwrap()
                .trim(),
            "1400"
        );
        let (a, b) = (Netns::new(), Netns::new());
        let ip_a = connect(&nets, "front", "alpha", &a);
        let ip_b = connect(&nets, "front", "beta", &b);
        assert_eq!(
            (ip_a, ip_b),
            (Ipv4Addr::new(10, 231, 0, 2), Ipv4Addr::new(10, 231, 0, 3))
        );

        // Inside: eth0 with the address and MTU, lo up, a default route.
        let addrs = a.ok(&["ip", "-o", "addr"]);
        assert!(
            addrs.contains("eth0") && addrs.contains("10.231.0.2/24"),
            "{addrs}"
        );
        assert!(a.ok(&["ip", "link", "show", "eth0"]).contains("mtu 1400"));
        assert!(a.ok(&["ip", "route"]).contains("default via 10.231.0.1"));
        a.ok(&["ping", "-c", "1", "-W", "2", "127.0.0.1"]);

        a.ok(&["ping", "-c", "1", "-W", "2", &ip_b.to_string()]);
        b.ok(&["ping", "-c", "1", "-W", "2", &ip_a.to_string()]);

        // Names, aliases and reverse lookups through the network's responder.
        let gw = net.info.gateway.to_string();
        let out = a.ok(&["nslookup", "beta", &gw]);
        assert!(out.contains("10.231.0.3"), "{out}");
        let out = b.ok(&["nslookup", "alpha-alias", &gw]);
        assert!(out.contains("10.231.0.2"), "{out}");
        let out = b.ok(&["nslookup", "10.231.0.2", &gw]);
        assert!(out.contains("alpha"), "{out}");
        // Unknown names are not forwarded anywhere: NXDOMAIN.
        let out = a.run(&["nslookup", "example.com", &gw]);
        assert!(!out.status.success(), "example.com resolved: {out:?}");

        // A disconnected container's name disappears; the bridge keeps its
        // MAC when ports leave (else the gateway is unreachable for seconds).
        let mac = || fs::read_to_string(format!("/sys/class/net/{bridge}/address")).unwrap();
        assert_eq!(mac().trim(), "02:6b:0a:e7:00:01");
        nets.disconnect("front", "beta").unwrap();
        assert_eq!(mac().trim(), "02:6b:0a:e7:00:01");
        assert!(!a.run(&["nslookup", "beta", &gw]).status.success());
        assert!(
            !a.run(&["ping", "-c", "1", "-W", "1", &ip_b.to_string()])
                .status
                .success()
        );
        nets.disconnect("front", "alpha").unwrap();
        nets.remove("front").unwrap();
        assert!(!fs::exists(format!("/sys/class/net/{bridge}")).unwrap());
    }
    leaks.assert_clean();
}

/// Connects and disconnects 20 namespaces; prints median and max per
/// operation, with the state root on `state_parent` (disk or tmpfs).
fn measure_attach_detach(state_parent: &str) {
    let state = tempfile::tempdir_in(state_parent).unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let nets = Networks::new(support::config(state.path(), &["10.232.0.0/24"]));
        let _teardown = support::Teardown(&nets);
        nets.create(&NetworkSpec {
            name: "bench".into(),
            ..Default::default()
        })
        .unwrap();
        let rounds = 20;
        let namespaces: Vec<Netns> = (0..rounds).map(|_| Netns::new()).collect();
        let (mut attach, mut detach) = (Vec::new(), Vec::new());
        for (i, ns) in namespaces.iter().enumerate() {
            let t = Instant::now();
            nets.connect("bench", &ConnectSpec::new(&format!("c{i}"), ns.path()))
                .unwrap();
            attach.push(t.elapsed());
        }
        for i in 0..rounds {
            let t = Instant::now();
            nets.disconnect("bench", &format!("c{i}")).unwrap();
            detach.push(t.elapsed());
        }
        nets.remove("bench").unwrap();
        let ms = |v: &mut Vec<Duration>| {
            v.sort();
            let median = v[v.len() / 2].as_secs_f64() * 1e3;
            let max = v[v.len() - 1].as_secs_f64() * 1e3;
            (median, max)
        };
        let (am, ax) = ms(&mut attach);
        let (dm, dx) = ms(&mut detach);
        eprintln!(
            "state on {state_parent}: attach median {am:.2} ms, max {ax:.2} ms; \
             detach median {dm:.2} ms, max {dx:.2} ms ({rounds} containers)"
        );
    }
    leaks.assert_clean();
}

#[test]
fn network_attach_and_detach_latency() {
    kontti_testutil::require_root();
    measure_attach_detach(&std::env::temp_dir().to_string_lossy());
    measure_attach_detach("/dev/shm");
}

/// A namespace playing "the outside": linked to the host by a veth pair with
/// 198.51.100.1 (host) and 198.51.100.2 (outside); it has no route to any
/// container subnet, so only masqueraded traffic can get answers.
struct Outside {
    ns: Netns,
    host_if: String,
}

impl Outside {
    fn new() -> Outside {
        let ns = Netns::new();
        let host_if = format!("kto{}", std::process::id());
        sh(&format!(
            "ip link add {host_if} type veth peer name out0 netns {pid} && \
             ip addr add 198.51.100.1/24 dev {host_if} && ip link set {host_if} up && \
             echo 1 > /proc/sys/net/ipv4/conf/{host_if}/forwarding",
            pid = ns_pid(&ns)
        ));
        ns.ip("ip addr add 198.51.100.2/24 dev out0 && ip link set out0 up && ip link set lo up");
        Outside { ns, host_if }
    }
}

fn ns_pid(ns: &Netns) -> String {
    ns.path()
        .to_string_lossy()
        .trim_start_matches("/proc/")
        .trim_end_matches("/ns/net")
        .to_owned()
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

/// Counts packets from `subnet` leaving through the host's default-route
/// interface, in a table of the test's own (before kontti's masquerade).
struct EgressCounter {
    table: String,
}

impl EgressCounter {
    fn new(subnet: &str) -> EgressCounter {
        let table = format!("kontti-egress-{}", std::process::id());
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
        EgressCounter { table }
    }

    fn packets(&self) -> u64 {
        let out = std::process::Command::new("nft")
            .args(["list", "table", "ip", &self.table])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let at = text.find("packets ").expect("counter");
        text[at + 8..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for EgressCounter {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .status();
    }
}

#[test]
fn network_outbound_nat_reaches_an_outside_namespace_only() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let outside = Outside::new();
        let counter = EgressCounter::new("10.233.0.0/24");
        let nets = Networks::new(support::config(state.path(), &["10.233.0.0/24"]));
        let _teardown = support::Teardown(&nets);
        nets.create(&NetworkSpec {
            name: "egress".into(),
            ..Default::default()
        })
        .unwrap();
        let c = Netns::new();
        connect(&nets, "egress", "client", &c);
        c.ok(&["ping", "-c", "2", "-W", "2", "198.51.100.2"]);
        // The outside saw the host's address, not the container's: a TCP
        // server there answers the masqueraded connection.
        let server = outside
            .ns
            .spawn(&["nc", "-l", "-p", "9000", "-e", "echo", "from-outside"]);
        std::thread::sleep(Duration::from_millis(200));
        let out = c.ok(&["nc", "198.51.100.2", "9000"]);
        assert!(out.contains("from-outside"), "{out}");
        drop(server);
        assert_eq!(
            counter.packets(),
            0,
            "container traffic left by the default route"
        );
        nets.disconnect("egress", "client").unwrap();
        nets.remove("egress").unwrap();
    }
    leaks.assert_clean();
}

/// The body of `GET /` from `addr`, or "" when nothing answers in 3 s.
/// (Debian's busybox wget crashes with `-T`, so the host side uses std.)
fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))
    else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn network_published_port_answers_on_loopback_host_and_outside() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let www = tempfile::tempdir().unwrap();
    fs::write(www.path().join("index.html"), "hello from the container\n").unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let outside = Outside::new();
        let nets = Networks::new(support::config(state.path(), &["10.234.0.0/24"]));
        let _teardown = support::Teardown(&nets);
        nets.create(&NetworkSpec {
            name: "web".into(),
            ..Default::default()
        })
        .unwrap();
        let c = Netns::new();
        let mut spec = ConnectSpec::new("server", c.path());
        spec.ports = vec![
            "18080:80".parse().unwrap(),
            "127.0.0.1:18081:80".parse().unwrap(),
        ];
        nets.connect("web", &spec).unwrap();
        let _httpd = c.spawn(&[
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            &www.path().to_string_lossy(),
        ]);
        std::thread::sleep(Duration::from_millis(200));
        let get = |addr: &str| http_get(addr);
        for url in ["127.0.0.1:18080", "127.0.0.1:18081", "198.51.100.1:18080"] {
            assert_eq!(get(url), "hello from the container\n", "{url}");
        }
        // 18081 is published on 127.0.0.1 only.
        assert_eq!(get("198.51.100.1:18081"), "");
        // From another machine (the outside namespace) through the host's
        // address on that link: prerouting DNAT.
        let out = outside
            .ns
            .ok(&["wget", "-q", "-O", "-", "http://198.51.100.1:18080/"]);
        assert_eq!(out, "hello from the container\n");
        // A neighbour that routes the container subnet through the host
        // (forwarding is on for its link) does not reach port 80 directly:
        // kontti's forward chain drops what is neither published nor a reply.
        outside.ns.ip("ip route add 10.234.0.0/24 via 198.51.100.1");
        let direct = outside.ns.run(&["nc", "-w", "2", "10.234.0.2", "80"]);
        assert!(
            !direct.status.success(),
            "unpublished port reached: {direct:?}"
        );
        nets.disconnect("web", "server").unwrap();
        assert_eq!(get("127.0.0.1:18080"), "");
        nets.remove("web").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_host_forward_drop_policy_is_passed_and_restored() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let table = format!("kontti-hostfw-{}", std::process::id());
    let leaks = Leaks::snapshot(state.path());
    {
        let outside = Outside::new();
        // What dockerd leaves behind: forwarded traffic dropped by default.
        sh(&format!(
            "nft 'add table ip {table}; add chain ip {table} FORWARD {{ type filter hook forward priority 0; policy drop; }}; \
             add rule ip {table} FORWARD iifname \"docker0\" accept'"
        ));
        let host_rules = || {
            let out = std::process::Command::new("nft")
                .args(["list", "table", "ip", &table])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let before = host_rules();
        let nets = Networks::new(support::config(
            state.path(),
            &["10.235.0.0/24", "10.235.1.0/24"],
        ));
        let _teardown = support::Teardown(&nets);
        for name in ["one", "two"] {
            nets.create(&NetworkSpec {
                name: name.into(),
                ..Default::default()
            })
            .unwrap();
        }
        let during = host_rules();
        assert!(during.contains("jump kontti-forward"), "{during}");
        assert_eq!(during.matches("jump kontti-forward").count(), 1, "{during}");
        let (a, b) = (Netns::new(), Netns::new());
        connect(&nets, "one", "a", &a);
        let ip_b = connect(&nets, "one", "b", &b);
        a.ok(&["ping", "-c", "1", "-W", "2", &ip_b.to_string()]);
        a.ok(&["ping", "-c", "1", "-W", "2", "198.51.100.2"]);
        nets.disconnect("one", "a").unwrap();
        nets.disconnect("one", "b").unwrap();
        nets.remove("one").unwrap();
        let after_one = host_rules();
        assert!(
            !after_one.contains("kontti:one") && after_one.contains("kontti:two"),
            "{after_one}"
        );
        nets.remove("two").unwrap();
        assert_eq!(host_rules(), before, "host table not restored");
        drop(outside);
        sh(&format!("nft delete table ip {table}"));
    }
    leaks.assert_clean();
}

/// Sends, from `eth0`, an Ethernet frame to MAC argv[1] carrying a UDP
/// datagram from argv[2] to 127.0.0.1:argv[3] (no UDP checksum).
const RAW_UDP_TO_LOOPBACK: &str = r#"
import socket, struct, sys
dst_mac = bytes.fromhex(sys.argv[1].replace(":", ""))
src, dst, port = socket.inet_aton(sys.argv[2]), socket.inet_aton("127.0.0.1"), int(sys.argv[3])
payload = b"leak"
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
s = sum(struct.unpack("!10H", hdr)); s = (s >> 16) + (s & 0xffff); s += s >> 16
hdr = hdr[:10] + struct.pack("!H", ~s & 0xffff) + hdr[12:]
eth = dst_mac + bytes.fromhex("020000000002") + b"\x08\x00"
so = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
so.bind(("eth0", 0))
for _ in range(3):
    so.send(eth + hdr + udp)
"#;

#[test]
fn network_containers_cannot_reach_host_loopback_services() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let cfg = support::config(state.path(), &["10.243.0.0/24"]);
        let table = cfg.nft_table.clone();
        let nets = Networks::new(cfg);
        let _teardown = support::Teardown(&nets);
        nets.create(&NetworkSpec {
            name: "guarded".into(),
            ..Default::default()
        })
        .unwrap();
        let c = Netns::new();
        let mut spec = ConnectSpec::new("probe", c.path());
        // A port published on 127.0.0.1 needs route_localnet on the bridge.
        spec.ports = vec!["127.0.0.1:18095:80".parse().unwrap()];
        nets.connect("guarded", &spec).unwrap();
        // A service the host offers on loopback only.
        let service = std::net::UdpSocket::bind("127.0.0.1:18096").unwrap();
        service
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // A container with CAP_NET_RAW (in docker's default set) sends an
        // Ethernet frame to the gateway's MAC with a 127.0.0.1 destination.
        let sent = std::process::Command::new("nsenter")
            .arg(format!("--net={}", c.path().display()))
            .args(["python3", "-c", RAW_UDP_TO_LOOPBACK])
            .args(["02:6b:0a:f3:00:01", "10.243.0.2", "18096"])
            .status()
            .expect("python3 (Debian's python3) sends the raw frame");
        assert!(sent.success());
        let mut buf = [0u8; 64];
        assert!(
            service.recv_from(&mut buf).is_err(),
            "a container reached the host's loopback-only service"
        );
        // The frames did reach the host and kontti's guard dropped them.
        let guard = std::process::Command::new("nft")
            .args(["list", "chain", "ip", &table, "guard"])
            .output()
            .unwrap();
        let guard = String::from_utf8_lossy(&guard.stdout).into_owned();
        let dropped: u64 = guard
            .split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert_eq!(dropped, 3, "{guard}");
        nets.disconnect("guarded", "probe").unwrap();
        nets.remove("guarded").unwrap();
    }
    leaks.assert_clean();
}
