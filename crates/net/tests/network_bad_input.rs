//! Bad input against real networks: each case gets a clear error of the right
//! kind and leaves nothing behind. Also IPAM skipping a subnet the host
//! routes. Run as root, serially (names contain `network`).
#![allow(clippy::disallowed_macros)]

mod support;

use std::net::TcpListener;
use std::path::Path;

use kontti_core::ErrorKind;
use kontti_net::{ConnectSpec, Ipam, NetworkError, NetworkSpec, Networks};
use support::{Leaks, Netns, sh};

fn spec(name: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        ..Default::default()
    }
}

fn assert_err(r: Result<impl std::fmt::Debug, NetworkError>, kind: ErrorKind, msg: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!((e.kind(), e.to_string().as_str()), (kind, msg));
}

/// A veth pair routing a subnet on the host (no dummy module here), removed
/// on drop.
struct RoutedSubnet(String);

impl RoutedSubnet {
    fn new(addr_cidr: &str) -> RoutedSubnet {
        let name = format!("ktd{}", std::process::id());
        sh(&format!(
            "ip link add {name} type veth peer name {name}p && ip addr add {addr_cidr} dev {name} && ip link set {name} up && ip link set {name}p up"
        ));
        RoutedSubnet(name)
    }
}

impl Drop for RoutedSubnet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

#[test]
fn network_ipam_skips_a_subnet_routed_on_the_host() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let _routed = RoutedSubnet::new("10.241.0.1/24");
        let nets = Networks::new(support::config(
            state.path(),
            &["10.241.0.0/24", "10.241.1.0/24"],
        ));
        let _teardown = support::Teardown(&nets);
        let net = nets.create(&spec("skip")).unwrap();
        assert_eq!(net.info.subnet.to_string(), "10.241.1.0/24");
        // Asking for the routed subnet outright is refused, and so is the
        // second network when the pool has nothing else.
        let mut s = spec("clash");
        s.subnet = Some("10.241.0.0/24".parse().unwrap());
        assert_err(
            nets.create(&s),
            ErrorKind::Conflict,
            "subnet 10.241.0.0/24 overlaps host route 10.241.0.0/24",
        );
        let e = nets.create(&spec("full")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert_eq!(nets.list().unwrap().len(), 1);
        nets.remove("skip").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_bad_input_is_refused_and_leaves_nothing() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        let nets = Networks::new(support::config(
            state.path(),
            &["10.242.0.0/24", "10.242.1.0/24"],
        ));
        let _teardown = support::Teardown(&nets);
        let ns = Netns::new();

        // Names and MTU.
        assert_err(
            nets.create(&spec("bad/name")),
            ErrorKind::Invalid,
            "invalid network name \"bad/name\": use letters, digits, '_', '.', '-' (at most 64)",
        );
        let mut s = spec("tiny");
        s.mtu = Some(100);
        assert_err(
            nets.create(&s),
            ErrorKind::Invalid,
            "invalid mtu 100: expected 576..=65535",
        );

        // Unknown networks.
        let c = ConnectSpec::new("c1", ns.path());
        assert_err(
            nets.connect("nope", &c),
            ErrorKind::NotFound,
            "network nope not found",
        );
        assert_err(
            nets.disconnect("nope", "c1"),
            ErrorKind::NotFound,
            "network nope not found",
        );
        assert_err(
            nets.remove("nope"),
            ErrorKind::NotFound,
            "network nope not found",
        );
        assert_err(
            nets.inspect("nope"),
            ErrorKind::NotFound,
            "network nope not found",
        );

        // Duplicates and overlaps.
        let mut s = spec("a");
        s.subnet = Some("10.242.0.0/24".parse().unwrap());
        nets.create(&s).unwrap();
        assert_err(
            nets.create(&spec("a")),
            ErrorKind::AlreadyExists,
            "network a already exists",
        );
        let mut s = spec("b");
        s.subnet = Some("10.242.0.128/25".parse().unwrap());
        assert_err(
            nets.create(&s),
            ErrorKind::Conflict,
            "subnet 10.242.0.128/25 overlaps network a",
        );
        assert_eq!(nets.list().unwrap().len(), 1);

        // A namespace that does not exist: no address stays leased.
        let ghost = ConnectSpec::new("ghost", Path::new("/proc/0/ns/net"));
        assert_err(
            nets.connect("a", &ghost),
            ErrorKind::NotFound,
            "network namespace /proc/0/ns/net: not found",
        );
        let ipam = Ipam::new(state.path(), vec![]);
        assert!(ipam.leases("a").unwrap().is_empty());

        // A port a host process holds.
        let holder = TcpListener::bind("0.0.0.0:18090").unwrap();
        let mut c = ConnectSpec::new("c1", ns.path());
        c.ports = vec!["18090:80".parse().unwrap()];
        assert_err(
            nets.connect("a", &c),
            ErrorKind::Conflict,
            "port 18090:80/tcp is already in use: a process on the host listens on it",
        );
        drop(holder);
        assert!(ipam.leases("a").unwrap().is_empty());

        // A port another container publishes.
        c.ports = vec!["18091:80".parse().unwrap()];
        nets.connect("a", &c).unwrap();
        let ns2 = Netns::new();
        let mut c2 = ConnectSpec::new("c2", ns2.path());
        c2.ports = vec!["127.0.0.1:18091:81".parse().unwrap()];
        assert_err(
            nets.connect("a", &c2),
            ErrorKind::Conflict,
            "port 127.0.0.1:18091:81/tcp is already in use: published for container c1 on network a",
        );
        c2.ports = vec!["18092:80".parse().unwrap(), "18092:81".parse().unwrap()];
        assert_err(
            nets.connect("a", &c2),
            ErrorKind::Conflict,
            "port 18092:81/tcp is already in use: published twice in one request",
        );
        assert_err(
            nets.connect("a", &c),
            ErrorKind::AlreadyExists,
            "container c1 is already connected to network a",
        );
        assert_eq!(ipam.leases("a").unwrap().len(), 1);

        // Removing a network with endpoints.
        assert_err(
            nets.remove("a"),
            ErrorKind::Conflict,
            "network a has active endpoints: c1",
        );
        assert_err(
            nets.disconnect("a", "c2"),
            ErrorKind::NotFound,
            "container c2 is not connected to network a",
        );
        nets.disconnect("a", "c1").unwrap();
        nets.remove("a").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_create_failing_late_undoes_everything() {
    kontti_testutil::require_root();
    let state = tempfile::tempdir().unwrap();
    let leaks = Leaks::snapshot(state.path());
    {
        // The DNS helper cannot start: the bridge, firewall entries and the
        // subnet created before it must go again.
        let mut cfg = support::config(state.path(), &["10.246.0.0/24"]);
        cfg.dns_binary = Some("/nonexistent/kontti-dns".into());
        let nets = Networks::new(cfg);
        let _teardown = support::Teardown(&nets);
        assert_err(
            nets.create(&spec("late")),
            ErrorKind::Unavailable,
            "dns responder for network late: cannot run /nonexistent/kontti-dns: No such file or directory (os error 2)",
        );
        assert!(nets.list().unwrap().is_empty());
        let ipam = Ipam::new(state.path(), vec![]);
        assert_eq!(ipam.subnet("late").unwrap(), None);
    }
    leaks.assert_clean();
}
