//! Command lines kontti cannot use exit 125, as docker's do; help exits 0.

use std::process::Command;

fn kontti(args: &[&str]) -> std::process::Output {
    let root = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_kontti"))
        .arg("--root")
        .arg(root.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn an_unknown_flag_exits_125_naming_it() {
    for args in [
        &["run", "--no-such-flag", "busybox"][..],
        &["ps", "--no-such-flag"],
        &["images", "--no-such-flag"],
        &["no-such-command"],
    ] {
        let out = kontti(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                args.iter()
                    .find(|a| a.starts_with("--no") || a.starts_with("no-"))
                    .unwrap()
            ),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["run", "--help"], &["--version"]] {
        let out = kontti(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}
