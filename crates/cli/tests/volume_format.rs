//! `kontti volume ls --format` and `ps --format` through the one template
//! subset the listing commands share: fields, `table`, `{{json .}}` and
//! `json`, and a template it does not cover refused in one line.
#![allow(clippy::disallowed_macros)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

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

fn fails(root: &Path, args: &[&str], code: i32, msg: &str) {
    let out = kontti(root, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "kontti {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(msg), "{err}");
}

#[test]
fn volume_ls_format_fields_table_and_json() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    ok(r, &["volume", "create", "--label", "app=web", "data"]);
    ok(r, &["volume", "create", "logs"]);
    let mountpoint = r.join("volumes/data/_data");
    assert_eq!(
        ok(
            r,
            &[
                "volume",
                "ls",
                "--format",
                "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{ .Mountpoint }}",
                "-f",
                "name=da",
            ]
        ),
        format!("data local local app=web {}\n", mountpoint.display())
    );
    assert_eq!(
        ok(
            r,
            &["volume", "ls", "--format", "table {{.Name}}\\t{{.Driver}}"]
        ),
        "VOLUME NAME\tDRIVER\ndata\tlocal\nlogs\tlocal\n"
    );
    for f in ["json", "{{json .}}"] {
        let out = ok(r, &["volume", "ls", "--format", f]);
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 2, "{out}");
        assert_eq!(rows[0]["Name"], "data");
        assert_eq!(rows[0]["Labels"], "app=web");
        assert!(
            rows[0]["CreatedAt"].as_str().unwrap().ends_with('Z'),
            "{out}"
        );
    }
    assert_eq!(
        ok(r, &["volume", "ls", "--format", "{{json .Name}}"]),
        "\"data\"\n\"logs\"\n"
    );
    // "table" alone is the default table
    assert_eq!(
        ok(r, &["volume", "ls", "--format", "table"]),
        ok(r, &["volume", "ls"])
    );
    fails(
        r,
        &["volume", "ls", "--format", "{{.Size}}"],
        5,
        "invalid --format \"{{.Size}}\": no field \"Size\"",
    );
    fails(
        r,
        &["volume", "ls", "--format", "{{if .Name}}x{{end}}"],
        5,
        "unsupported action {{if .Name}}",
    );
}

#[test]
fn ps_format_refuses_an_unknown_field_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    assert_eq!(ok(r, &["ps", "-a", "--format", "{{.Names}}"]), "");
    fails(
        r,
        &["ps", "--format", "{{.Nope}}"],
        125,
        "invalid --format \"{{.Nope}}\": no field \"Nope\"",
    );
}
