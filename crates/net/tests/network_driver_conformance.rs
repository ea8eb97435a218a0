//! The bridge driver passes the NetworkDriver conformance suite (as root).

use kontti_net::{BridgeDriver, NetworkInfo};

#[test]
fn network_bridge_driver_conformance() {
    kontti_testutil::require_root();
    let subnet: kontti_net::Ipv4Net = "10.245.0.0/24".parse().unwrap();
    let net = NetworkInfo {
        name: "suite".into(),
        bridge: format!("ktsuite{}", std::process::id() % 100_000),
        subnet,
        gateway: subnet.gateway(),
        mtu: 1450,
    };
    let before = kontti_testutil::HostSnapshot::take("kontti-net-suite");
    kontti_net::testsuite::run_all(&BridgeDriver, &net);
    let after = kontti_testutil::HostSnapshot::take("kontti-net-suite");
    let leaked: Vec<_> = after
        .links
        .difference(&before.links)
        .filter(|l| l.starts_with('k'))
        .collect();
    assert!(leaked.is_empty(), "links left: {leaked:?}");
}
