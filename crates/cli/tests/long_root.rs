//! A state root of more than 200 characters, where no socket path under it
//! fits in `sun_path` (108 bytes): `run -d`, `run -t`, `exec` (with and
//! without a terminal), `attach`, `logs`, `stop` and `rm` work, a bridge
//! network with its DNS responder and a published port works, and nothing
//! is left behind (mounts, cgroups, processes, sockets, short links).
#![allow(clippy::disallowed_macros)]

mod container_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use container_support::Kontti;
use kontti_engine::network::Settings;

/// A kontti on a state root of `len`+ characters below the test's dir.
struct LongRoot {
    k: Kontti,
    root: PathBuf,
}

impl LongRoot {
    fn new() -> LongRoot {
        let k = Kontti::new();
        let mut root = k.dir.path().to_owned();
        while root.as_os_str().len() < 220 {
            root.push("a-rather-long-directory-name-for-a-state-root");
        }
        std::fs::create_dir_all(&root).unwrap();
        let lr = LongRoot { k, root };
        let tar = lr.k.dir.path().join("rootfs.tar");
        lr.ok(&[
            "import",
            "--cmd",
            "/bin/sh",
            tar.to_str().unwrap(),
            "busybox",
        ]);
        lr
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kontti"));
        c.arg("--root").arg(&self.root);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kontti {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every unix socket under the root, with its path length.
    fn sockets(&self) -> Vec<(usize, PathBuf)> {
        let out = Command::new("find")
            .arg(&self.root)
            .args(["-type", "s"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| (l.len(), PathBuf::from(l)))
            .collect()
    }

    /// Removes what is left, asserts the root holds no container, socket
    /// or short link, then the host-wide leak check.
    fn finish(self) {
        let ids = self.ok(&["ps", "-aq", "--no-trunc"]);
        for id in ids.lines() {
            self.ok(&["rm", "-f", id]);
        }
        assert_eq!(self.sockets(), Vec::new(), "sockets left");
        let links: Vec<_> = std::fs::read_dir(self.root.join("run"))
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(links.is_empty(), "short links left: {links:?}");
        let recs: Vec<_> = std::fs::read_dir(self.root.join("containers"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name())
                    .filter(|n| n.len() == 64)
                    .collect()
            })
            .unwrap_or_default();
        assert!(recs.is_empty(), "container directories left: {recs:?}");
        let netns: Vec<_> = std::fs::read_dir(self.root.join("netns"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(netns.is_empty(), "pinned namespaces left: {netns:?}");
        self.k.assert_clean();
    }
}

fn assert_long(socket: &Path) {
    assert!(
        socket.as_os_str().len() > 108,
        "{} fits in sun_path: the test proves nothing",
        socket.display()
    );
}

#[test]
fn long_state_root_run_exec_attach_logs_stop_rm() {
    let lr = LongRoot::new();
    assert!(lr.root.as_os_str().len() > 200);
    let cg = lr.k.cgroup_parent.clone();

    // run -d with stdin open: a loop that echoes what it reads
    let id = lr
        .ok(&[
            "run",
            "-di",
            "--name",
            "echoer",
            "--network",
            "none",
            "--cgroup-parent",
            &cg,
            "busybox",
            "sh",
            "-c",
            "echo started; while read l; do echo got-$l; done; exit 3",
        ])
        .trim()
        .to_owned();
    let socks = lr.sockets();
    assert!(!socks.is_empty(), "no attach socket under the root");
    for (_, s) in &socks {
        assert_long(s);
    }

    // exec, piped and with a terminal
    assert_eq!(
        lr.ok(&["exec", "echoer", "echo", "from-exec"]),
        "from-exec\n"
    );
    let t = lr.ok(&["exec", "-t", "echoer", "echo", "with-tty"]);
    assert_eq!(t.trim_end(), "with-tty");
    let code = lr.run(&["exec", "echoer", "sh", "-c", "exit 7"]);
    assert_eq!(code.status.code(), Some(7));

    // attach: stdin reaches the container; its end ends the loop
    let mut child = lr
        .cmd()
        .args(["attach", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(b"hello\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("got-hello"), "{stdout}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // logs
    let logs = lr.ok(&["logs", "echoer"]);
    assert_eq!(logs, "started\ngot-hello\n");

    // a terminal container: its console socket is under the root too
    lr.ok(&[
        "run",
        "-dt",
        "--name",
        "tty",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "busybox",
        "sh",
    ]);
    let t = lr.ok(&["exec", "-t", "tty", "tty"]);
    assert!(t.starts_with("/dev/pts/"), "{t}");

    // stop and rm
    lr.ok(&["stop", "-t", "1", "tty"]);
    let v: serde_json::Value = serde_json::from_str(&lr.ok(&["inspect", "tty"])).unwrap();
    assert_eq!(v[0]["State"]["Running"], false);
    lr.ok(&["rm", "tty"]);
    lr.ok(&["rm", "echoer"]);
    assert_eq!(lr.ok(&["ps", "-aq"]), "");
    lr.finish();
}

/// The body `127.0.0.1:port` answers to `GET /` ("" when nothing does).
fn http_get(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn long_state_root_network_names_resolve_and_ports_publish() {
    let lr = LongRoot::new();
    let dns = Path::new(env!("CARGO_BIN_EXE_kontti")).with_file_name("kontti-dns");
    if !dns.is_file() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "kontti-net", "--bin", "kontti-dns"])
            .status()
            .unwrap();
        assert!(st.success(), "building kontti-dns failed");
    }
    Settings {
        pool: Some(vec!["10.238.0.0/24".parse().unwrap()]),
        upstreams: Some(Vec::new()),
        nft_table: Some(format!("kontti-r{}", std::process::id())),
        dns_binary: Some(dns),
        uplink_forwarding: Some(false),
        ..Default::default()
    }
    .store(&lr.root)
    .unwrap();
    let cg = lr.k.cgroup_parent.clone();
    lr.ok(&["network", "create", "longnet"]);
    lr.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "longnet",
        "--cgroup-parent",
        &cg,
        "-p",
        "127.0.0.1:18517:80",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo long-root-web > /www/index.html && httpd -f -p 80 -h /www",
    ]);
    let out = lr.ok(&[
        "run",
        "--rm",
        "--network",
        "longnet",
        "--cgroup-parent",
        &cg,
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://web/ && exit 0; sleep 0.3; done; exit 1",
    ]);
    assert_eq!(out, "long-root-web\n");
    let mut body = String::new();
    for _ in 0..20 {
        body = http_get(18517);
        if !body.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(body, "long-root-web\n");
    lr.ok(&["rm", "-f", "web"]);
    lr.ok(&["network", "rm", "longnet"]);
    let nft = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&nft.stdout);
    assert!(
        !rules.contains(&format!("kontti-r{}", std::process::id())),
        "nft table left"
    );
    lr.finish();
}
