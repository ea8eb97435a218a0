//! `kontti build` with a registry and an HTTP server on loopback: `--push`,
//! a missing base image pulled before the build, ADD of a URL.
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use build_support::Kontti;

/// `kontti registry serve` on a loopback port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(k: &Kontti) -> Registry {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = k.cmd();
    c.args(["registry", "serve", "--addr", &addr, "--storage"])
        .arg(k.dir.path().join("registry"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "registry did not start: {line}");
    Registry { child, addr }
}

#[test]
fn push_then_build_from_the_pushed_image_in_another_store() {
    let k = Kontti::new();
    let reg = serve(&k);
    let name = format!("{}/demo/app:1", reg.addr);
    let ctx = k.context("ctx", "FROM busybox\nRUN echo pushed > /pushed\n", &[]);
    k.build_ok(&ctx, &["-t", &name, "--push"]);

    // Another store has no base: the build pulls it first.
    let other = Kontti::new();
    let ctx2 = other.context(
        "ctx",
        &format!("FROM {name}\nRUN cat /pushed > /seen\n"),
        &[],
    );
    let (_, err) = other.build_ok(&ctx2, &["-t", "child"]);
    assert!(err.contains(&format!("pulling {name}")), "{err}");
    let r = other.flatten("child");
    assert_eq!(
        fs::read_to_string(r.path().join("seen")).unwrap(),
        "pushed\n"
    );
    k.assert_clean();
    other.assert_clean();
}

const BODY_SHA256: &str = "sha256:be852bb8c5d904abaf8d2cd56de884ebc15929ab177e527c77c02faa13d70c11";

/// An HTTP server on loopback answering one request with a fixed body;
/// the thread returns the request it read.
fn serve_once() -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        let start = Instant::now();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && start.elapsed() < Duration::from_secs(5)
        {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let body = b"downloaded body\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (port, server)
}

#[test]
fn add_of_a_url_with_a_wrong_checksum_fails() {
    let k = Kontti::new();
    let (port, server) = serve_once();
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let ctx = k.context(
        "ctx",
        &format!("FROM busybox\nADD --checksum={wrong} http://127.0.0.1:{port}/x /x\n"),
        &[],
    );
    let err = k.build_fails(&ctx, &["-t", "sum"], 5);
    server.join().unwrap();
    assert!(
        err.contains("checksum mismatch") && err.contains(&format!("http://127.0.0.1:{port}/x")),
        "{err}"
    );
    k.assert_clean();
}

#[test]
fn add_of_a_url_downloads_it() {
    let k = Kontti::new();
    let (port, server) = serve_once();
    let ctx = k.context(
        "ctx",
        &format!("FROM busybox\nADD --checksum={BODY_SHA256} http://127.0.0.1:{port}/files/data.txt /srv/\n"),
        &[],
    );
    k.build_ok(&ctx, &["-t", "url"]);
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /files/data.txt "), "{request}");
    let r = k.flatten("url");
    assert_eq!(
        fs::read_to_string(r.path().join("srv/data.txt")).unwrap(),
        "downloaded body\n"
    );
    k.assert_clean();
}
