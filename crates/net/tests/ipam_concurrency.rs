//! IPAM under concurrency: threads and processes allocating from one state
//! directory never get the same address. No root needed.
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kontti_net::{Ipam, Ipv4Net};

fn ipam(dir: &Path) -> Ipam {
    let pool: Vec<Ipv4Net> = vec!["10.240.0.0/24".parse().unwrap()];
    Ipam::new(dir, pool)
}

#[test]
fn ipam_threads_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    ipam(dir.path()).allocate_subnet("n", None).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let ipam = ipam(dir.path());
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| ipam.allocate_ip("n", &format!("t{t}-{i}"), None).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (200, 200));
    assert_eq!(ipam(dir.path()).leases("n").unwrap().len(), 200);
}

/// Runs inside the worker processes of the test below.
#[test]
#[ignore = "worker of ipam_processes_never_share_an_address"]
fn ipam_worker_process() {
    let (Ok(dir), Ok(id)) = (
        std::env::var("KONTTI_IPAM_DIR"),
        std::env::var("KONTTI_IPAM_WORKER"),
    ) else {
        return;
    };
    let ipam = ipam(Path::new(&dir));
    for i in 0..30 {
        let ip = ipam.allocate_ip("n", &format!("p{id}-{i}"), None).unwrap();
        println!("lease {ip}");
    }
}

#[test]
fn ipam_processes_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    ipam(dir.path()).allocate_subnet("n", None).unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawned: Vec<_> = (0..4)
        .map(|w| {
            Command::new(&exe)
                .args([
                    "ipam_worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("KONTTI_IPAM_DIR", dir.path())
                .env("KONTTI_IPAM_WORKER", w.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut leases = Vec::new();
    for child in spawned {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        leases.extend(
            text.lines()
                .filter_map(|l| l.split("lease ").nth(1))
                .map(str::to_owned),
        );
    }
    let distinct: BTreeSet<_> = leases.iter().collect();
    assert_eq!((leases.len(), distinct.len()), (120, 120));
    assert_eq!(ipam(dir.path()).leases("n").unwrap().len(), 120);
}
