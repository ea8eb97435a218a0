//! `kontti volume` with the real binary: docker's output shapes, and bad
//! input answered by one clear line and a non-zero exit.
#![allow(clippy::disallowed_macros)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kontti_engine::volume::Volumes;

fn kontti(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kontti"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kontti")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = kontti(root, args);
    assert!(
        out.status.success(),
        "kontti {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with `code` and a single line on stderr
/// containing `msg`; returns stdout.
fn fails(root: &Path, args: &[&str], code: i32, msg: &str) -> String {
    let out = kontti(root, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "kontti {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(msg), "{err}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn volume_create_ls_inspect_rm() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    assert_eq!(
        ok(r, &["volume", "create", "--label", "app=web", "data"]),
        "data\n"
    );
    // Creating an existing volume prints its name again, as docker does.
    assert_eq!(ok(r, &["volume", "create", "data"]), "data\n");
    let anon = ok(r, &["volume", "create"]);
    let anon = anon.trim();
    assert_eq!(anon.len(), 64);

    let ls = ok(r, &["volume", "ls"]);
    let mut names = [anon, "data"];
    names.sort();
    let want = format!(
        "DRIVER    VOLUME NAME\nlocal     {}\nlocal     {}\n",
        names[0], names[1]
    );
    assert_eq!(ls, want);
    assert_eq!(
        ok(r, &["volume", "ls", "-q", "--filter", "label=app=web"]),
        "data\n"
    );
    assert_eq!(ok(r, &["volume", "ls", "-q", "-f", "name=dat"]), "data\n");
    assert_eq!(ok(r, &["volume", "ls", "-q", "-f", "label=app=db"]), "");

    let json: serde_json::Value =
        serde_json::from_str(&ok(r, &["volume", "inspect", "data"])).unwrap();
    let v = &json[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["app"], "web");
    let mountpoint = r.join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mountpoint.to_str().unwrap());
    assert!(mountpoint.is_dir());
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));

    assert_eq!(
        ok(r, &["volume", "rm", "data", anon]),
        format!("data\n{anon}\n")
    );
    assert_eq!(ok(r, &["volume", "ls", "-q"]), "");
    assert!(!r.join("volumes/data").exists());
}

#[test]
fn volume_bad_input_is_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fails(
        r,
        &["volume", "create", "../etc"],
        5,
        "invalid volume name \"../etc\"",
    );
    fails(
        r,
        &["volume", "create", "-d", "nfs", "x1"],
        5,
        "volume driver \"nfs\"",
    );
    fails(
        r,
        &["volume", "create", "-l", "=v", "x1"],
        5,
        "invalid label \"=v\"",
    );
    fails(
        r,
        &["volume", "ls", "-f", "size=1"],
        5,
        "invalid filter \"size=1\"",
    );
    assert_eq!(ok(r, &["volume", "ls", "-q"]), "");
    fails(
        r,
        &["volume", "rm", "missing"],
        2,
        "no such volume: missing",
    );
    // -f: a missing volume is no error.
    assert_eq!(ok(r, &["volume", "rm", "-f", "missing"]), "missing\n");
    let out = fails(
        r,
        &["volume", "inspect", "missing"],
        2,
        "no such volume: missing",
    );
    assert_eq!(out.trim(), "[]");
    assert!(!r.join("volumes/missing").exists());
}

#[test]
fn volume_in_use_is_not_removed_nor_pruned() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    ok(r, &["volume", "create", "data"]);
    let id = "ab".repeat(32);
    fs::create_dir_all(r.join("containers").join(&id)).unwrap();
    Volumes::open(r).acquire("data", &id).unwrap();
    for args in [
        &["volume", "rm", "data"][..],
        &["volume", "rm", "-f", "data"],
    ] {
        fails(
            r,
            args,
            4,
            "volume data is in use by container abababababab",
        );
    }
    let pruned = ok(r, &["volume", "prune", "-a", "-f"]);
    assert_eq!(pruned, "Total reclaimed space: 0B\n");
    assert_eq!(
        ok(r, &["volume", "ls", "-q", "-f", "dangling=false"]),
        "data\n"
    );
    // Once the container is gone, the volume is free.
    fs::remove_dir(r.join("containers").join(&id)).unwrap();
    assert_eq!(
        ok(r, &["volume", "ls", "-q", "-f", "dangling=true"]),
        "data\n"
    );
    ok(r, &["volume", "rm", "data"]);
}

#[test]
fn volume_prune_asks_and_removes_anonymous_unless_all() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    ok(r, &["volume", "create", "named"]);
    let anon = ok(r, &["volume", "create"]);
    let anon = anon.trim();
    fs::write(
        r.join("volumes").join(anon).join("_data/f"),
        vec![0u8; 1500],
    )
    .unwrap();
    // No answer: nothing happens.
    let out = kontti(r, &["volume", "prune"]);
    assert!(out.status.success());
    assert_eq!(ok(r, &["volume", "ls", "-q"]).lines().count(), 2);
    // "y" on stdin confirms.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kontti"))
        .arg("--root")
        .arg(r)
        .args(["volume", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.ends_with(&format!(
            "Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 1.5kB\n"
        )),
        "{text}"
    );
    assert_eq!(ok(r, &["volume", "ls", "-q"]), "named\n");
    assert_eq!(
        ok(r, &["volume", "prune", "--all", "--force"]),
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    );
}
