//! `kontti network ls` and network ids with the real binary, as root: the
//! 64-hex id of each network (given at creation, or once to a network
//! stored without one), docker's NETWORK ID / NAME / DRIVER / SCOPE table,
//! `-q`, `--no-trunc`, `--filter` and `--format`, and an id or unique id
//! prefix wherever a network name is taken (`inspect`, `rm`, `connect`,
//! `disconnect`, `run --network`). Every test name contains `network`
//! (they run serially).
#![allow(clippy::disallowed_macros)]

#[path = "container_support/mod.rs"]
mod container_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use container_support::Kontti;
use kontti_engine::network::Settings;
use kontti_testutil::HostSnapshot;

/// Network settings of a test: `pool`, an nft table of its own, no DNS
/// forwarding, the host's uplink left alone.
fn settings(pool: &[&str], table: &str) -> Settings {
    Settings {
        pool: Some(pool.iter().map(|p| p.parse().unwrap()).collect()),
        upstreams: Some(Vec::new()),
        nft_table: Some(format!("{table}{}", std::process::id())),
        uplink_forwarding: Some(false),
        ..Default::default()
    }
}

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
    assert!(err.contains(msg), "kontti {args:?}: {err}");
}

fn links() -> Vec<String> {
    HostSnapshot::take("kontti-netls")
        .links
        .into_iter()
        .filter(|l| l.starts_with('k'))
        .collect()
}

fn table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", table])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Removes the networks of a root a failed test left.
struct Teardown(PathBuf);

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Ok(nets) = kontti_engine::network::networks(&self.0) {
            for n in nets.list().unwrap_or_default() {
                for c in n.endpoints.keys() {
                    let _ = nets.disconnect(&n.info.name, c);
                }
                let _ = nets.remove(&n.info.name);
            }
        }
    }
}

fn network_json(root: &Path, name: &str) -> PathBuf {
    root.join("networks/networks")
        .join(name)
        .join("network.json")
}

/// Rewrites the stored id of network `name` (`None` removes it, as in
/// state written before networks had ids).
fn set_stored_id(root: &Path, name: &str, id: Option<&str>) {
    let path = network_json(root, name);
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    match id {
        Some(id) => v["id"] = id.into(),
        None => {
            v.as_object_mut().unwrap().remove("id");
        }
    }
    fs::write(&path, v.to_string()).unwrap();
}

fn inspect_id(root: &Path, key: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(root, &["network", "inspect", key])).unwrap();
    v[0]["Id"].as_str().unwrap().to_owned()
}

#[test]
fn network_ls_ids_formats_filters_and_id_prefixes() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let table = format!("kontti-l{}", std::process::id());
    settings(&["10.236.0.0/24", "10.236.1.0/24"], "kontti-l")
        .store(r)
        .unwrap();
    let links_before = links();
    {
        let _t = Teardown(r.to_owned());
        ok(
            r,
            &[
                "network", "create", "--label", "env=prod", "--label", "tier", "front",
            ],
        );
        ok(r, &["network", "create", "--label", "env=dev", "back"]);
        let front = inspect_id(r, "front");
        let back = inspect_id(r, "back");
        for id in [&front, &back] {
            assert_eq!(id.len(), 64, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(front, back);
        let (f12, b12) = (&front[..12], &back[..12]);

        // the table, -q and --no-trunc
        assert_eq!(
            ok(r, &["network", "ls"]),
            format!(
                "NETWORK ID     NAME      DRIVER    SCOPE\n\
                 {b12}   back      bridge    local\n\
                 {f12}   front     bridge    local\n"
            )
        );
        assert_eq!(ok(r, &["network", "ls", "-q"]), format!("{b12}\n{f12}\n"));
        assert_eq!(
            ok(r, &["network", "ls", "-q", "--no-trunc"]),
            format!("{back}\n{front}\n")
        );
        let wide = ok(r, &["network", "ls", "--no-trunc"]);
        assert!(
            wide.lines()
                .nth(2)
                .unwrap()
                .starts_with(&format!("{front}   front")),
            "{wide}"
        );

        // --format: fields, table, json
        let fmt = |f: &str, extra: &[&str]| {
            let mut a = vec!["network", "ls", "--format", f];
            a.extend_from_slice(extra);
            ok(r, &a)
        };
        assert_eq!(
            fmt(
                "{{.ID}} {{.Name}} {{.Driver}} {{.Scope}} {{.Labels}}",
                &["-f", "name=front"]
            ),
            format!("{f12} front bridge local env=prod,tier=\n")
        );
        assert_eq!(
            fmt("table {{.Name}}\\t{{.Driver}}", &[]),
            "NAME\tDRIVER\nback\tbridge\nfront\tbridge\n"
        );
        for f in ["{{json .}}", "json"] {
            let out = fmt(f, &["--no-trunc"]);
            let rows: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(rows.len(), 2, "{out}");
            assert_eq!(rows[1]["ID"], front.as_str());
            assert_eq!(rows[1]["Name"], "front");
            assert_eq!(rows[1]["Driver"], "bridge");
            assert_eq!(rows[1]["Scope"], "local");
        }

        // --filter: one key's filters match when any does, keys all must
        let names = |filters: &[&str]| {
            let mut a = vec!["network", "ls", "--format", "{{.Name}}"];
            for f in filters {
                a.extend(["--filter", f]);
            }
            ok(r, &a)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(names(&["name=fr"]), "front");
        assert_eq!(names(&["name=fr", "name=ba"]), "back front");
        assert_eq!(names(&[&format!("id={}", &front[..10])]), "front");
        assert_eq!(names(&["driver=bridge"]), "back front");
        assert_eq!(names(&["driver=macvlan"]), "");
        assert_eq!(names(&["label=env"]), "back front");
        assert_eq!(names(&["label=env=prod"]), "front");
        assert_eq!(names(&["label=tier", "label=env=dev"]), "");
        assert_eq!(names(&["type=custom"]), "back front");
        assert_eq!(names(&["type=builtin"]), "");
        assert_eq!(names(&["dangling=true"]), "back front");
        assert_eq!(names(&["dangling=false"]), "");
        assert_eq!(names(&["dangling=true", "name=back"]), "back");

        // inspect by full id and by a unique prefix
        assert_eq!(inspect_id(r, &front), front);
        assert_eq!(inspect_id(r, &front[..6]), front);
        let v: serde_json::Value =
            serde_json::from_str(&ok(r, &["network", "inspect", &back[..8]])).unwrap();
        assert_eq!(v[0]["Name"], "back");
        assert_eq!(v[0]["Labels"]["env"], "dev");
        let created = v[0]["Created"].as_str().unwrap().to_owned();
        assert!(
            created.starts_with("20") && created.ends_with('Z'),
            "{created}"
        );
        assert_eq!(
            fmt("{{.CreatedAt}}", &["-f", "name=back"]),
            format!("{created}\n")
        );

        // bad input: one line, a non-zero exit, nothing changed
        fails(
            r,
            &["network", "ls", "-f", "bogus=1"],
            5,
            "invalid filter \"bogus=1\"",
        );
        fails(
            r,
            &["network", "ls", "-f", "name"],
            5,
            "invalid filter \"name\"",
        );
        fails(
            r,
            &["network", "ls", "-f", "type=weird"],
            5,
            "invalid filter",
        );
        fails(
            r,
            &["network", "ls", "-f", "dangling=maybe"],
            5,
            "invalid filter",
        );
        fails(
            r,
            &["network", "ls", "--format", "{{.Nope}}"],
            5,
            "no field \"Nope\"",
        );
        fails(
            r,
            &["network", "ls", "--format", "{{.Name"],
            5,
            "unclosed action",
        );
        fails(
            r,
            &["network", "create", "--label", "=x", "other"],
            5,
            "invalid label \"=x\"",
        );
        fails(
            r,
            &["network", "inspect", "0000"],
            2,
            "network 0000 not found",
        );

        // restore after a simulated reboot re-creates a network with its
        // id, creation time and labels
        let before: serde_json::Value =
            serde_json::from_str(&ok(r, &["network", "inspect", "front"])).unwrap();
        let bridge = before[0]["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap()
            .to_owned();
        let st = Command::new("ip")
            .args(["link", "del", &bridge])
            .status()
            .unwrap();
        assert!(st.success());
        ok(r, &["container", "restore"]);
        assert!(Path::new("/sys/class/net").join(&bridge).exists());
        let after: serde_json::Value =
            serde_json::from_str(&ok(r, &["network", "inspect", "front"])).unwrap();
        for k in ["Id", "Created", "Labels"] {
            assert_eq!(after[0][k], before[0][k], "{k}");
        }

        // networks stored without an id get one, once, persisted
        set_stored_id(r, "back", None);
        let given = ok(r, &["network", "ls", "-q", "--no-trunc", "-f", "name=back"]);
        let given = given.trim().to_owned();
        assert_eq!(given.len(), 64, "{given}");
        assert_ne!(given, back);
        let stored: serde_json::Value =
            serde_json::from_slice(&fs::read(network_json(r, "back")).unwrap()).unwrap();
        assert_eq!(stored["id"], given.as_str());
        assert_eq!(inspect_id(r, "back"), given);

        // an ambiguous prefix is refused everywhere a network is named
        let a1 = format!("abcd1{}", "0".repeat(59));
        let a2 = format!("abcd2{}", "0".repeat(59));
        set_stored_id(r, "front", Some(&a1));
        set_stored_id(r, "back", Some(&a2));
        let ambiguous = "multiple networks found with prefix: abcd";
        fails(r, &["network", "inspect", "abcd"], 5, ambiguous);
        fails(r, &["network", "rm", "abcd"], 5, ambiguous);
        assert_eq!(names(&[]), "back front", "nothing removed");
        assert_eq!(inspect_id(r, "abcd1"), a1);

        // rm by id prefix and by full id
        assert_eq!(ok(r, &["network", "rm", "abcd1"]), "abcd1\n");
        assert_eq!(ok(r, &["network", "rm", &a2]), format!("{a2}\n"));
        assert_eq!(ok(r, &["network", "ls", "-q"]), "");
    }
    assert_eq!(links(), links_before, "links left");
    assert!(!table_exists(&table), "nft table {table} left");
}

#[test]
fn network_ids_and_prefixes_work_for_run_connect_and_disconnect() {
    let k = Kontti::new();
    let r = k.root();
    let table = format!("kontti-m{}", std::process::id());
    settings(&["10.237.0.0/24", "10.237.1.0/24"], "kontti-m")
        .store(&r)
        .unwrap();
    let links_before = links();
    {
        let _t = Teardown(r.clone());
        ok(&r, &["network", "create", "one"]);
        ok(&r, &["network", "create", "two"]);
        let one = inspect_id(&r, "one");
        let two = inspect_id(&r, "two");
        let cg = k.cgroup_parent.clone();
        let c = k
            .ok(&[
                "run",
                "-d",
                "--name",
                "c1",
                "--network",
                &one[..9],
                "--cgroup-parent",
                &cg,
                "busybox",
                "sleep",
                "300",
            ])
            .trim()
            .to_owned();
        let n: serde_json::Value =
            serde_json::from_str(&ok(&r, &["network", "inspect", "one"])).unwrap();
        assert!(n[0]["Containers"].get(&c).is_some(), "{n:#}");
        // the container records the network's name, resolved at create
        assert_eq!(k.inspect("c1")["HostConfig"]["NetworkMode"], "one");
        // a network that does not exist is refused at create: nothing made
        let out = k.run(&[
            "run",
            "-d",
            "--name",
            "c2",
            "--network",
            "nosuch",
            "--cgroup-parent",
            &cg,
            "busybox",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert_eq!(err.trim(), "kontti: network nosuch not found");
        assert_eq!(k.ok(&["ps", "-a", "--format", "{{.Names}}"]), "c1\n");
        // dangling: only the network with no container
        assert_eq!(
            ok(
                &r,
                &[
                    "network",
                    "ls",
                    "--format",
                    "{{.Name}}",
                    "-f",
                    "dangling=true"
                ]
            ),
            "two\n"
        );

        ok(&r, &["network", "connect", &two, "c1"]);
        let addrs = k.ok(&["exec", "c1", "ip", "-o", "-4", "addr"]);
        assert!(addrs.contains("10.237.1."), "{addrs}");
        ok(&r, &["network", "disconnect", &two[..7], "c1"]);
        let addrs = k.ok(&["exec", "c1", "ip", "-o", "-4", "addr"]);
        assert!(!addrs.contains("10.237.1."), "{addrs}");

        // an ambiguous prefix: refused, nothing connected
        let p1 = format!("fedc1{}", "0".repeat(59));
        let p2 = format!("fedc2{}", "0".repeat(59));
        set_stored_id(&r, "one", Some(&p1));
        set_stored_id(&r, "two", Some(&p2));
        let ambiguous = "multiple networks found with prefix: fedc";
        fails(&r, &["network", "connect", "fedc", "c1"], 5, ambiguous);
        fails(&r, &["network", "disconnect", "fedc", "c1"], 5, ambiguous);
        let out = k.run(&[
            "run",
            "-d",
            "--network",
            "fedc",
            "--cgroup-parent",
            &cg,
            "busybox",
            "true",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(err.contains(ambiguous), "{err}");
        assert_eq!(k.ok(&["ps", "-a", "--format", "{{.Names}}"]), "c1\n");

        k.ok(&["rm", "-f", "c1"]);
        ok(&r, &["network", "rm", "fedc1", "fedc2"]);
    }
    assert_eq!(links(), links_before, "links left");
    assert!(!table_exists(&table), "nft table {table} left");
    k.finish();
}
