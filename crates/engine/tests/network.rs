//! The engine's network glue on the real kernel: namespaces pinned by the
//! test stand in for containers. The default network is created on first
//! use, addresses answer ping, a published port answers on 127.0.0.1, names
//! resolve through the network's responder, `--network` modes, connect and
//! disconnect, and detach + network rm leave nothing behind. Run as root,
//! serially (every name contains `network`).
#![allow(clippy::disallowed_macros)]

mod network_support;

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use kontti_core::ErrorKind;
use kontti_engine::network::{self, NetError, NetworkMode, Settings};
use kontti_testutil::HostSnapshot;
use network_support::{Container, Leaks, Teardown, read_from, root_with};

#[test]
fn network_default_bridge_ping_publish_dns_and_clean_detach() {
    let root = root_with("10.241.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let b = Container::new(r, "beta");
        let _t = Teardown(r, vec![a.id.clone(), b.id.clone()]);
        let mut req = a.request("alpha", NetworkMode::Bridge);
        req.ports = vec!["127.0.0.1:18480:80".parse().unwrap()];
        let setup = network::attach(r, &req).unwrap();
        let gw = Ipv4Addr::new(10, 241, 0, 1);
        assert_eq!(
            setup.endpoints,
            vec![("bridge".to_owned(), Ipv4Addr::new(10, 241, 0, 2), gw, 24)]
        );
        assert!(
            setup
                .hosts
                .ends_with(&format!("10.241.0.2\t{} alpha\n", &a.id[..12])),
            "{}",
            setup.hosts
        );
        assert!(setup.hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert_eq!(setup.resolv_conf, "nameserver 10.241.0.1\n");
        let setup_b = network::attach(r, &b.request("beta", NetworkMode::Bridge)).unwrap();
        assert_eq!(setup_b.endpoints[0].1, Ipv4Addr::new(10, 241, 0, 3));

        // Inside: eth0 with the address and a default route; the other
        // container answers ping.
        assert!(a.ok(&["ip", "-o", "addr"]).contains("10.241.0.2/24"));
        assert!(a.ok(&["ip", "route"]).contains("default via 10.241.0.1"));
        b.ok(&["ping", "-c", "1", "-W", "2", "10.241.0.2"]);

        // Names, aliases and the short id resolve through the responder.
        let out = b.ok(&["nslookup", "alpha", "10.241.0.1"]);
        assert!(out.contains("10.241.0.2"), "{out}");
        let out = b.ok(&["nslookup", "alpha-alias", "10.241.0.1"]);
        assert!(out.contains("10.241.0.2"), "{out}");
        let out = a.ok(&["nslookup", &b.id[..12], "10.241.0.1"]);
        assert!(out.contains("10.241.0.3"), "{out}");
        // Nothing is forwarded upstream.
        assert!(
            !a.run(&["nslookup", "example.com", "10.241.0.1"])
                .status
                .success()
        );

        // The published port answers on the host's loopback.
        let _server = a.spawn(&["nc", "-l", "-p", "80", "-e", "echo", "from-alpha"]);
        let mut got = String::new();
        for _ in 0..50 {
            got = read_from(18480);
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(got.trim(), "from-alpha");

        // Detach is idempotent; the name goes with the endpoint.
        network::detach(r, &b.id).unwrap();
        network::detach(r, &b.id).unwrap();
        assert!(!a.run(&["nslookup", "beta", "10.241.0.1"]).status.success());
        network::detach(r, &a.id).unwrap();
        assert_eq!(read_from(18480), "");
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_port_in_use_is_refused_and_leaves_nothing() {
    let root = root_with("10.242.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let a = Container::new(r, "alpha");
        let _t = Teardown(r, vec![a.id.clone()]);
        let mut req = a.request("alpha", NetworkMode::Bridge);
        req.ports = vec![format!("{port}:80").parse().unwrap()];
        // First use of the default network: it is created, then removed
        // again because the attach failed.
        let e = network::attach(r, &req).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("port {port}:80/tcp is already in use")),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(network::networks(r).unwrap().list().unwrap().is_empty());
        assert_eq!(a.ok(&["ip", "-o", "link"]).lines().count(), 1, "only lo");

        // With the network in place, a port taken by another container.
        let b = Container::new(r, "beta");
        let mut req_b = b.request("beta", NetworkMode::Bridge);
        req_b.ports = vec!["18482:80".parse().unwrap()];
        network::attach(r, &req_b).unwrap();
        let links = HostSnapshot::take("x").links;
        let mut req = a.request("alpha", NetworkMode::Bridge);
        req.ports = vec!["18482:8080".parse().unwrap()];
        let e = network::attach(r, &req).unwrap_err();
        assert!(e.to_string().contains(&b.id), "{e}");
        assert_eq!(HostSnapshot::take("x").links, links);
        network::detach(r, &b.id).unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
        drop(holder);
    }
    leaks.assert_clean();
}

#[test]
fn network_modes_user_network_none_host_and_container() {
    let root = root_with("10.243.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let b = Container::new(r, "beta");
        let _t = Teardown(r, vec![a.id.clone(), b.id.clone()]);
        // A user network that does not exist: not found, nothing created.
        let e = network::attach(r, &a.request("alpha", "appnet".parse().unwrap())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(e.to_string(), "network appnet not found");
        let spec = kontti_net::NetworkSpec {
            name: "appnet".into(),
            ..Default::default()
        };
        network::create(r, &spec, None).unwrap();
        let setup = network::attach(r, &a.request("alpha", "appnet".parse().unwrap())).unwrap();
        assert_eq!(setup.endpoints[0].0, "appnet");
        assert_eq!(setup.resolv_conf, "nameserver 10.243.0.1\n");

        // container:alpha shares alpha's resolver and address.
        let req = b.request("beta", NetworkMode::Container("alpha".into()));
        let joined = network::attach(r, &req).unwrap();
        assert!(joined.endpoints.is_empty());
        assert_eq!(joined.resolv_conf, "nameserver 10.243.0.1\n");
        assert!(joined.hosts.contains("10.243.0.2\t"), "{}", joined.hosts);
        let e = network::attach(
            r,
            &b.request("beta", NetworkMode::Container("nobody".into())),
        )
        .unwrap_err();
        assert!(matches!(e, NetError::ContainerNotFound(_)), "{e}");

        // none: loopback only, no resolver; host: the host's files.
        let none = network::attach(r, &b.request("beta", NetworkMode::None)).unwrap();
        assert!(none.endpoints.is_empty() && none.resolv_conf.is_empty());
        assert!(
            none.hosts
                .ends_with(&format!("127.0.1.1\t{} beta\n", &b.id[..12]))
        );
        let host = network::attach(r, &b.request("beta", NetworkMode::Host)).unwrap();
        assert!(host.endpoints.is_empty());
        assert_eq!(b.ok(&["ip", "-o", "link"]).lines().count(), 1, "only lo");

        // The network with an endpoint cannot go; after detach it can.
        let e = network::networks(r).unwrap().remove("appnet").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        network::detach(r, &a.id).unwrap();
        assert_eq!(network::prune(r).unwrap(), vec!["appnet".to_owned()]);
    }
    leaks.assert_clean();
}

#[test]
fn network_connect_and_disconnect_a_running_container_by_name() {
    let root = root_with("10.244.0.0/24");
    let r = root.path();
    // A second pool entry for the second network.
    let mut settings = Settings::load(r).unwrap();
    settings.pool = Some(vec![
        "10.244.0.0/24".parse().unwrap(),
        "10.244.1.0/24".parse().unwrap(),
    ]);
    settings.store(r).unwrap();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let _t = Teardown(r, vec![a.id.clone()]);
        network::attach(r, &a.request("alpha", NetworkMode::Bridge)).unwrap();
        let spec = kontti_net::NetworkSpec {
            name: "second".into(),
            ..Default::default()
        };
        network::create(r, &spec, None).unwrap();
        let ep = network::connect(r, "second", "alpha", &["db".to_owned()], None).unwrap();
        assert_eq!(ep.attachment.ifname, "eth1");
        assert_eq!(ep.attachment.address, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(ep.name, "alpha");
        let addrs = a.ok(&["ip", "-o", "addr"]);
        assert!(
            addrs.contains("eth1") && addrs.contains("10.244.1.2/24"),
            "{addrs}"
        );
        // The default route stays on the first network.
        assert!(a.ok(&["ip", "route"]).contains("default via 10.244.0.1"));
        let e = network::connect(r, "second", &a.id[..12], &[], None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let e = network::connect(r, "second", "ghost", &[], None).unwrap_err();
        assert_eq!(e.to_string(), "no such container: ghost");
        network::disconnect(r, "second", "alpha", false).unwrap();
        assert!(!a.ok(&["ip", "-o", "addr"]).contains("eth1"));
        let e = network::disconnect(r, "second", "alpha", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        network::detach(r, &a.id).unwrap();
        let nets = network::networks(r).unwrap();
        nets.remove("second").unwrap();
        nets.remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_parallel_first_attaches_share_one_default_network() {
    let root = root_with("10.253.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let containers: Vec<Container> = (0..4)
            .map(|i| Container::new(r, &format!("par{i}")))
            .collect();
        let _t = Teardown(r, containers.iter().map(|c| c.id.clone()).collect());
        let mut addrs: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let req = c.request(&format!("par{i}"), NetworkMode::Bridge);
                    s.spawn(move || network::attach(r, &req).unwrap().endpoints[0].1)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        addrs.sort();
        let want: Vec<Ipv4Addr> = (2..6).map(|n| Ipv4Addr::new(10, 253, 0, n)).collect();
        assert_eq!(addrs, want);
        let nets = network::networks(r).unwrap();
        assert_eq!(nets.list().unwrap().len(), 1);
        containers[0].ok(&["ping", "-c", "1", "-W", "2", "10.253.0.5"]);
        for c in &containers {
            network::detach(r, &c.id).unwrap();
        }
        nets.remove("bridge").unwrap();
    }
    leaks.assert_clean();
}
