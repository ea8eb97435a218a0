//! Attach clients of `kontti-supervisor run`: output, stdin, waiting for
//! the first client, and a terminal with resizes.
#![allow(clippy::disallowed_macros)]

mod common;

use common::{World, collect};
use kontti_supervisor::crilog::Stream;
use kontti_supervisor::protocol::Frame;

#[test]
fn an_attach_client_sees_stdout_and_stderr_and_writes_stdin() {
    let script = "read line; echo got $line; echo to-err >&2; cat; echo after-eof";
    let mut w = World::new("attach", &["sh", "-c", script]);
    let mut c = w.command();
    c.stdin = true;
    c.wait_attach = true;
    w.start(&c);
    let mut client = w.attach();
    client.send_stdin(b"hello\n").unwrap();
    client.send_stdin(b"through cat\n").unwrap();
    client.close_stdin().unwrap();
    let (out, err, code) = collect(&mut client);
    assert_eq!(out, "got hello\nthrough cat\nafter-eof\n");
    assert_eq!(err, "to-err\n");
    assert_eq!(code, Some(0));
    let exit = w.wait_exit();
    assert_eq!(exit.exit_code, 0);
    assert_eq!(w.log_text(Stream::Stdout), out);
    assert_eq!(w.log_text(Stream::Stderr), err);
    w.assert_clean();
}

#[test]
fn wait_attach_loses_no_output() {
    let script =
        "echo first; i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exit 3";
    let mut w = World::new("waitattach", &["sh", "-c", script]);
    let mut c = w.command();
    c.wait_attach = true;
    w.start(&c);
    // nothing runs before the first client
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(w.log().is_empty());
    let mut first = w.attach();
    let (out, _, code) = collect(&mut first);
    assert!(
        out.starts_with("first\nline 0\n"),
        "{}",
        &out[..40.min(out.len())]
    );
    assert!(out.ends_with("line 1999\n"));
    assert_eq!(out.lines().count(), 2001);
    assert_eq!(code, Some(3));
    assert_eq!(w.wait_exit().exit_code, 3);
    w.assert_clean();
}

#[test]
fn without_stdin_client_input_is_ignored_and_a_client_may_leave() {
    let mut w = World::new("nostdin", &["sh", "-c", "cat; echo eof-at-once"]);
    let mut c = w.command();
    c.wait_attach = true;
    w.start(&c);
    let mut client = w.attach();
    client.send_stdin(b"ignored\n").unwrap();
    let (out, _, code) = collect(&mut client);
    assert_eq!(out, "eof-at-once\n");
    assert_eq!(code, Some(0));
    w.wait_exit();
    w.assert_clean();
}

#[test]
fn a_terminal_takes_typed_input_and_resizes() {
    let mut w = World::new("tty", &["sh"]);
    // and its sockets' paths are too long for a socket address
    w.long_state_dir();
    w.config()["process"]["terminal"] = serde_json::json!(true);
    let mut c = w.command();
    c.tty = true;
    c.stdin = true;
    c.wait_attach = true;
    w.start(&c);
    let mut client = w.attach();
    client.resize(33, 77).unwrap();
    client.send_stdin(b"tty; stty size\n").unwrap();
    // wait for the first answer, then resize again
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("33 77") {
        match client.recv().unwrap() {
            Some(Frame::Stdout(b)) => out.extend_from_slice(&b),
            Some(Frame::Stderr(_)) => panic!("a terminal has no stderr channel"),
            other => panic!("unexpected {other:?}: {}", String::from_utf8_lossy(&out)),
        }
    }
    client.resize(12, 34).unwrap();
    client.send_stdin(b"stty size; exit 5\n").unwrap();
    let (rest, _, code) = collect(&mut client);
    let all = format!("{}{rest}", String::from_utf8_lossy(&out));
    assert!(all.contains("/dev/pts/0"), "{all}");
    assert!(all.contains("12 34"), "{all}");
    assert_eq!(code, Some(5));
    assert_eq!(w.wait_exit().exit_code, 5);
    assert!(w.log_text(Stream::Stdout).contains("33 77"));
    w.assert_clean();
}

#[test]
fn a_client_that_never_reads_does_not_stall_the_container() {
    // 40 MiB of output, more than a client may fall behind
    let script = "head -c 41943040 /dev/zero | tr '\\0' 'x' | fold -w 1000; echo done";
    let mut w = World::new("slowclient", &["sh", "-c", script]);
    let mut c = w.command();
    c.wait_attach = true;
    c.log_max_size = Some(1 << 20);
    c.log_max_files = Some(2);
    w.start(&c);
    let mut client = w.attach();
    // the container finishes while this client reads nothing
    let exit = w.wait_exit();
    assert_eq!(exit.exit_code, 0);
    assert!(w.log_text(Stream::Stdout).ends_with("done\n"));
    // the client was cut off (possibly mid-frame): no exit frame, and far
    // less than all of the output
    let mut got = 0;
    loop {
        match client.recv() {
            Ok(Some(Frame::Stdout(b))) => got += b.len(),
            Ok(Some(Frame::Exit(c))) => panic!("a dropped client got the exit frame {c}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(got < 40 << 20, "{got}");
    w.assert_clean();
}
