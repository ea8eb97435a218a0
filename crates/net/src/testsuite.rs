//! The conformance suite every [`NetworkDriver`] implementation runs
//! (feature `testsuite`): idempotent network setup, an endpoint plumbed into
//! a real namespace, refusals that leave nothing behind, and detach after the
//! namespace died. Needs root, `unshare` and `nsenter` (util-linux) and `ip`
//! (iproute2) to look inside; panics with a message on the first violation.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kontti_core::ErrorKind;

use crate::driver::{EndpointSpec, NetworkDriver, NetworkInfo};

/// A network namespace held by a sleeping child; killed on drop.
struct Namespace {
    child: Child,
    path: PathBuf,
}

impl Namespace {
    fn new() -> Namespace {
        let own = fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino())
            .unwrap_or(0);
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs");
        let path = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::metadata(&path).map(|m| m.ino() == own).unwrap_or(true) {
            assert!(
                Instant::now() < deadline,
                "unshare did not create a namespace"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Namespace { child, path }
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .arg("ip")
            .args(args)
            .output()
            .expect("nsenter and ip run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(ns: &Path, key: &str, net: &NetworkInfo, n: u32) -> EndpointSpec {
    EndpointSpec {
        netns: ns.to_owned(),
        key: key.to_owned(),
        ifname: "eth0".to_owned(),
        address: net.subnet.nth(n),
        default_route: true,
    }
}

/// Runs every check against `driver` on the network `net` (which must not
/// exist yet and whose subnet must be free); removes the network at the end.
pub fn run_all(driver: &dyn NetworkDriver, net: &NetworkInfo) {
    driver
        .ensure_network(net)
        .expect("ensure_network creates the network");
    driver
        .ensure_network(net)
        .expect("ensure_network is idempotent");

    // An endpoint: the interface, its address and MTU, lo, the default route.
    let ns = Namespace::new();
    let a = driver
        .attach(net, &spec(&ns.path, "suite/a", net, 2))
        .expect("attach");
    assert_eq!(
        (a.ifname.as_str(), a.address, a.gateway),
        ("eth0", net.subnet.nth(2), net.gateway)
    );
    let addr = ns.ip(&["-o", "addr", "show", "eth0"]);
    let want = format!("{}/{}", net.subnet.nth(2), net.subnet.prefix());
    assert!(addr.contains(&want), "eth0 lacks {want}: {addr}");
    let link = ns.ip(&["-o", "link", "show", "eth0"]);
    assert!(
        link.contains(&format!("mtu {}", net.mtu)) && link.contains(",UP"),
        "{link}"
    );
    assert!(
        ns.ip(&["-o", "link", "show", "lo"]).contains(",UP"),
        "lo is down"
    );
    let routes = ns.ip(&["route"]);
    assert!(
        routes.contains(&format!("default via {}", net.gateway)),
        "{routes}"
    );

    // A second endpoint with the same interface name in the same namespace
    // is refused and leaves the first intact.
    let err = driver
        .attach(net, &spec(&ns.path, "suite/b", net, 3))
        .expect_err("a second eth0 in one namespace is refused");
    assert!(
        !fs::exists(format!("/sys/class/net/{}", crate::host_ifname("suite/b"))).unwrap_or(true)
    );
    assert!(
        ns.ip(&["-o", "addr", "show", "eth0"]).contains(&want),
        "{err}"
    );

    // Detach removes the pair; twice is fine.
    driver.detach(net, &a).expect("detach");
    driver.detach(net, &a).expect("detach is idempotent");
    assert!(
        ns.ip(&["-o", "link", "show", "eth0"]).is_empty(),
        "eth0 left inside"
    );

    // A namespace that does not exist.
    let err = driver
        .attach(net, &spec(Path::new("/proc/0/ns/net"), "suite/c", net, 4))
        .expect_err("a missing namespace is refused");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // Detach after the namespace died (the kernel took the pair with it).
    let dying = Namespace::new();
    let d = driver
        .attach(net, &spec(&dying.path, "suite/d", net, 5))
        .expect("attach");
    drop(dying);
    driver
        .detach(net, &d)
        .expect("detach after the namespace died");

    driver.remove_network(net).expect("remove_network");
    driver
        .remove_network(net)
        .expect("remove_network is idempotent");
    assert!(!fs::exists(format!("/sys/class/net/{}", net.bridge)).unwrap_or(true));
}
