//! `kontti-supervisor exec`: an extra process in a running container.
#![allow(clippy::disallowed_macros)]

mod common;

use common::{World, collect};
use kontti_supervisor::exit::ExitRecord;
use kontti_supervisor::protocol::AttachClient;
use kontti_supervisor::spawn::ExecCommand;

fn process_file(w: &World, name: &str, args: &[&str], terminal: bool) -> std::path::PathBuf {
    let p = w.root.path().join(format!("{name}.json"));
    let v = serde_json::json!({
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin:/usr/bin", "TERM=xterm"],
        "cwd": "/",
    });
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    p
}

fn exec_command(w: &World, name: &str, process: &std::path::Path) -> ExecCommand {
    let mut c = ExecCommand::new(
        &w.id,
        &w.runtime_root(),
        process,
        &w.state_dir().join(format!("{name}.sock")),
        &w.state_dir().join(format!("{name}.exit.json")),
    );
    c.binary = common::BIN.into();
    c
}

#[test]
fn exec_returns_its_exit_code_output_and_stdin() {
    let mut w = World::new("exec", &["sleep", "1000"]);
    let c = w.command();
    w.start(&c);

    let p = process_file(
        &w,
        "one",
        &["sh", "-c", "read x; echo out $x; echo err >&2; exit 7"],
        false,
    );
    let mut e = exec_command(&w, "one", &p);
    e.stdin = true;
    let ready = e.spawn().expect("exec ready");
    assert!(ready.pid > 1);
    let mut client = AttachClient::connect(&e.socket).unwrap();
    client.send_stdin(b"typed\n").unwrap();
    let (out, err, code) = collect(&mut client);
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("out typed\n", "err\n", Some(7))
    );
    common::wait_gone(ready.supervisor_pid);
    assert_eq!(ExitRecord::read(&e.exit_file).unwrap().exit_code, 7);
    assert!(!e.socket.exists());

    // with a terminal
    let p = process_file(&w, "tty", &["sh", "-c", "tty; stty size; exit 4"], true);
    let mut e = exec_command(&w, "tty", &p);
    e.tty = true;
    let ready = e.spawn().expect("exec ready");
    let mut client = AttachClient::connect(&e.socket).unwrap();
    client.resize(20, 60).unwrap();
    let (out, _, code) = collect(&mut client);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(code, Some(4));
    common::wait_gone(ready.supervisor_pid);

    // the container itself was not disturbed
    let state = kontti_runtime::ops::state(&w.runtime_root(), &w.id).unwrap();
    assert_eq!(state.status, kontti_runtime::state::Status::Running);
    kontti_runtime::ops::kill(&w.runtime_root(), &w.id, libc::SIGKILL, false).unwrap();
    assert_eq!(w.wait_exit().exit_code, 137);
    w.assert_clean();
}

#[test]
fn exec_of_a_missing_executable_is_127_with_an_error() {
    let mut w = World::new("execmissing", &["sleep", "1000"]);
    let c = w.command();
    w.start(&c);
    let p = process_file(&w, "missing", &["/no/such/thing"], false);
    let e = exec_command(&w, "missing", &p);
    let ready = e.spawn().expect("exec ready");
    let mut client = AttachClient::connect(&e.socket).unwrap();
    let (_, _, code) = collect(&mut client);
    assert_eq!(code, Some(127));
    common::wait_gone(ready.supervisor_pid);
    let rec = ExitRecord::read(&e.exit_file).unwrap();
    assert_eq!(rec.exit_code, 127);
    assert!(rec.error.unwrap().contains("/no/such/thing"));

    // a malformed process file fails readiness, naming the file
    std::fs::write(&p, "{\"args\": 5}").unwrap();
    let err = exec_command(&w, "bad", &p).spawn().unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    // a container that does not exist
    let p = process_file(&w, "ok", &["true"], false);
    let mut e = exec_command(&w, "nocontainer", &p);
    e.id = "ksv-not-there".into();
    let ready = e.spawn().expect("ready: the socket listens");
    let mut client = AttachClient::connect(&e.socket).unwrap();
    let (_, _, code) = collect(&mut client);
    assert_eq!(code, Some(127));
    common::wait_gone(ready.supervisor_pid);
    assert!(
        ExitRecord::read(&e.exit_file)
            .unwrap()
            .error
            .unwrap()
            .contains("ksv-not-there")
    );

    kontti_runtime::ops::kill(&w.runtime_root(), &w.id, libc::SIGKILL, false).unwrap();
    w.wait_exit();
    w.assert_clean();
}
