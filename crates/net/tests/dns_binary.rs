//! The `kontti-dns` helper as a process: bad arguments, a taken port, and
//! `--daemon` handing back the pid of a responder that answers. No root.
#![allow(clippy::disallowed_macros)]

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kontti-dns");

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[test]
fn dns_binary_rejects_bad_arguments() {
    assert_eq!(run(&[]), (5, "kontti-dns: --listen is required".to_owned()));
    assert_eq!(
        run(&["--listen", "nowhere", "--records", "/x"]),
        (
            5,
            "kontti-dns: --listen: invalid address \"nowhere\", expected IP:PORT".to_owned()
        )
    );
    assert_eq!(
        run(&["--listen", "127.0.0.1:53", "--bogus"]),
        (5, "kontti-dns: unknown argument \"--bogus\"".to_owned())
    );
    assert_eq!(
        run(&["--records"]),
        (5, "kontti-dns: --records needs a value".to_owned())
    );
}

#[test]
fn dns_binary_reports_a_taken_port_even_as_a_daemon() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let want = format!("kontti-dns: cannot listen on {addr}: Address already in use (os error 98)");
    assert_eq!(
        run(&["--listen", &addr, "--records", "/nonexistent"]),
        (4, want.clone())
    );
    assert_eq!(
        run(&["--daemon", "--listen", &addr, "--records", "/nonexistent"]),
        (6, want)
    );
}

#[test]
fn dns_binary_daemon_answers_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.json");
    std::fs::write(&records, r#"{"records":[{"name":"db","ipv4":"10.9.9.9"}]}"#).unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new(BIN)
        .args(["--daemon", "--listen", &addr, "--records"])
        .arg(&records)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // A query for "db", type A.
    let mut q = vec![
        0x11, 0x22, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, b'd', b'b', 0, 0, 1, 0, 1,
    ];
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send_to(&q, &addr).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[n - 4..n], &[10, 9, 9, 9]);
    assert!(
        Command::new("kill")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(200));
    q[1] = 0x23;
    c.send_to(&q, &addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.recv_from(&mut buf).is_err(),
        "the responder still answers after SIGTERM"
    );
}
