//! The comparator of the build compatibility test (`build_compat_buildah.rs`):
//! applies a docker-archive's layers into a tree of path -> entry, normalises
//! image configs, and describes differences one line per path or field. What
//! it normalises is listed in the test's doc comment.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

// --- the tree of an image's final filesystem ----------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { sha256: String, size: u64 },
    Symlink(String),
    Fifo,
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Dir => "dir".to_owned(),
            Kind::File { sha256, size } => format!("file {size} bytes {}", &sha256[..19]),
            Kind::Symlink(t) => format!("symlink -> {t}"),
            Kind::Fifo => "fifo".to_owned(),
            Kind::CharDevice(a, b) => format!("char device {a}:{b}"),
            Kind::BlockDevice(a, b) => format!("block device {a}:{b}"),
        };
        write!(
            f,
            "{kind}, mode {:04o}, owner {}:{}",
            self.mode, self.uid, self.gid
        )
    }
}

/// Path ("/a/b", the root is "/") → entry.
pub type Tree = BTreeMap<String, Entry>;

/// "./a/b/" and "a/b" → "/a/b"; "./" → "/".
fn clean_path(raw: &str) -> String {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Removes `path` and everything under it.
fn remove_subtree(tree: &mut Tree, path: &str) {
    tree.remove(path);
    let prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    let under: Vec<String> = tree
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in under {
        tree.remove(&k);
    }
}

/// One parsed layer entry, before it is applied.
enum Change {
    Whiteout(String),
    Opaque(String),
    Put(String, Entry),
    HardLink(String, String),
}

/// Applies one layer (a tar, compressed or not) to `tree`. Whiteouts remove
/// what the layers below had; they are applied before the layer's own entries,
/// wherever they stand in the tar.
pub fn apply_layer(tree: &mut Tree, layer: impl Read) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(kontti_image::unpack::decompressed(layer)?);
    let mut changes = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let path = clean_path(&raw);
        let name = path.rsplit('/').next().unwrap_or("");
        if name == ".wh..wh..opq" {
            changes.push(Change::Opaque(parent_of(&path).to_owned()));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = parent_of(&path);
            let target = if parent == "/" {
                format!("/{hidden}")
            } else {
                format!("{parent}/{hidden}")
            };
            changes.push(Change::Whiteout(target));
            continue;
        }
        let header = entry.header().clone();
        let meta = |kind| Entry {
            kind,
            mode: header.mode().unwrap_or(0) & 0o7777,
            uid: header.uid().unwrap_or(u64::MAX),
            gid: header.gid().unwrap_or(u64::MAX),
        };
        let dev = || {
            (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            )
        };
        let link = || {
            entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let change = match header.entry_type() {
            tar::EntryType::Directory => Change::Put(path, meta(Kind::Dir)),
            tar::EntryType::Symlink => Change::Put(path, meta(Kind::Symlink(link()))),
            tar::EntryType::Link => Change::HardLink(path, clean_path(&link())),
            tar::EntryType::Fifo => Change::Put(path, meta(Kind::Fifo)),
            tar::EntryType::Char => {
                let (a, b) = dev();
                Change::Put(path, meta(Kind::CharDevice(a, b)))
            }
            tar::EntryType::Block => {
                let (a, b) = dev();
                Change::Put(path, meta(Kind::BlockDevice(a, b)))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                let sha256 = kontti_image::hash::sha256(&data).to_string();
                let size = data.len() as u64;
                Change::Put(path, meta(Kind::File { sha256, size }))
            }
            other => anyhow::bail!("layer entry {raw}: unexpected tar entry type {other:?}"),
        };
        changes.push(change);
    }
    for c in &changes {
        match c {
            Change::Whiteout(p) => remove_subtree(tree, p),
            Change::Opaque(dir) => {
                let keep = tree.get(dir).cloned();
                remove_subtree(tree, dir);
                if let Some(e) = keep {
                    tree.insert(dir.clone(), e);
                }
            }
            _ => {}
        }
    }
    for c in changes {
        match c {
            Change::Put(path, e) => put(tree, path, e),
            Change::HardLink(path, target) => {
                let e = tree.get(&target).cloned().ok_or_else(|| {
                    anyhow::anyhow!("hard link {path} to {target}, which the layers do not have")
                })?;
                put(tree, path, e);
            }
            Change::Whiteout(_) | Change::Opaque(_) => {}
        }
    }
    Ok(())
}

fn put(tree: &mut Tree, path: String, e: Entry) {
    let replaces_dir = tree.get(&path).is_some_and(|old| old.kind == Kind::Dir);
    if replaces_dir && e.kind != Kind::Dir {
        remove_subtree(tree, &path);
    }
    let mut p = parent_of(&path).to_owned();
    loop {
        tree.entry(p.clone()).or_insert(Entry {
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        });
        if p == "/" {
            break;
        }
        p = parent_of(&p).to_owned();
    }
    tree.insert(path, e);
}

/// Lines describing how `a` (kontti) and `b` (buildah) differ.
pub fn diff_trees(a: &Tree, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, ea) in a {
        match b.get(path) {
            None => out.push(format!("  only in kontti:  {path} ({ea})")),
            Some(eb) if eb != ea => out.push(format!(
                "  differs:         {path}\n      kontti:  {ea}\n      buildah: {eb}"
            )),
            Some(_) => {}
        }
    }
    for (path, eb) in b {
        if !a.contains_key(path) {
            out.push(format!("  only in buildah: {path} ({eb})"));
        }
    }
    out
}

// --- the configs ----------------------------------------------------------------

const CONFIG_FIELDS: &[&str] = &[
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "Healthcheck",
    "StopSignal",
];

/// Labels the builders add themselves.
const BUILDER_LABELS: &[&str] = &["io.buildah.version"];

/// `null`, "", [] and {} all mean "not set".
fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The compared part of an image config file, normalised (see the crate doc).
pub fn normalise_config(file: &Value) -> BTreeMap<String, Value> {
    let empty = Map::new();
    let config = file["config"].as_object().unwrap_or(&empty);
    let mut out = BTreeMap::new();
    for field in CONFIG_FIELDS {
        let mut v = config.get(*field).cloned().unwrap_or(Value::Null);
        if *field == "Labels"
            && let Value::Object(m) = &mut v
        {
            for l in BUILDER_LABELS {
                m.remove(*l);
            }
        }
        if *field == "Env"
            && let Some(by_name) = env_by_name(&v)
        {
            v = by_name;
        }
        if *field == "Healthcheck"
            && let Value::Object(m) = &mut v
        {
            m.retain(|_, x| !(unset(x) || x.as_i64() == Some(0)));
        }
        if !unset(&v) {
            out.insert((*field).to_owned(), v);
        }
    }
    for field in ["os", "architecture"] {
        if let Some(v) = file.get(field).filter(|v| !unset(v)) {
            out.insert(field.to_owned(), v.clone());
        }
    }
    out
}

/// `["A=1", "B=2"]` → `{"A": "1", "B": "2"}` when every name appears once
/// (the order of distinct variables changes nothing in a container); `None`
/// when a name repeats, so that the list is compared as it is.
fn env_by_name(env: &Value) -> Option<Value> {
    let mut out = Map::new();
    for e in env.as_array()? {
        let (name, value) = e.as_str()?.split_once('=').unwrap_or((e.as_str()?, ""));
        if out.insert(name.to_owned(), Value::from(value)).is_some() {
            return None;
        }
    }
    Some(Value::Object(out))
}

pub fn diff_configs(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&Value>| v.map_or("(not set)".to_owned(), Value::to_string);
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "  config {k}\n      kontti:  {}\n      buildah: {}",
                show(a.get(k)),
                show(b.get(k))
            )
        })
        .collect()
}

// --- docker-archives --------------------------------------------------------------

/// An exported image: its config file and its final filesystem.
pub struct Exported {
    pub config: Value,
    /// The hex sha256 of the config file: the image id.
    pub config_digest: String,
    pub tree: Tree,
}

/// Reads a docker-archive (`manifest.json`, config, layer tars; layers may be
/// symlinks to other members, as buildah writes them).
pub fn read_docker_archive(path: &Path) -> anyhow::Result<Exported> {
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(path)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = clean_path(&entry.path()?.to_string_lossy());
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                    clean_path(&format!("{}/{target}", parent_of(&name)))
                } else {
                    clean_path(&target)
                };
                links.insert(name, normalise_dots(&target));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                members.insert(name, data);
            }
            _ => {}
        }
    }
    let member = |name: &str| -> anyhow::Result<&Vec<u8>> {
        let mut n = clean_path(name);
        for _ in 0..8 {
            if let Some(t) = links.get(&n) {
                n = t.clone();
            }
        }
        members
            .get(&n)
            .ok_or_else(|| anyhow::anyhow!("{}: no member {name}", path.display()))
    };
    let manifest: Value = serde_json::from_slice(member("manifest.json")?)?;
    let manifest = &manifest[0];
    let config_name = manifest["Config"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{}: manifest.json has no Config", path.display()))?;
    let config_bytes = member(config_name)?;
    let config: Value = serde_json::from_slice(config_bytes)?;
    let config_digest = kontti_image::hash::sha256(config_bytes)
        .to_string()
        .trim_start_matches("sha256:")
        .to_owned();
    let mut tree = Tree::new();
    for layer in manifest["Layers"].as_array().into_iter().flatten() {
        let name = layer.as_str().unwrap_or_default();
        apply_layer(&mut tree, member(name)?.as_slice())?;
    }
    Ok(Exported {
        config,
        config_digest,
        tree,
    })
}

/// "/a/b/../c" → "/a/c".
fn normalise_dots(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from (path, kind, mode, uid) entries; kind: "dir", "file:DATA",
    /// "link:TARGET" (symlink), "hard:TARGET", "wh" (an empty whiteout file).
    fn layer(entries: &[(&str, &str, u32, u64)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, mode, uid) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_gid(*uid);
            h.set_size(0);
            let data: &[u8] = if let Some(d) = kind.strip_prefix("file:") {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                d.as_bytes()
            } else if let Some(t) = kind.strip_prefix("link:") {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).unwrap();
                b""
            } else if let Some(t) = kind.strip_prefix("hard:") {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(t).unwrap();
                b""
            } else if *kind == "dir" {
                h.set_entry_type(tar::EntryType::Directory);
                b""
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                b""
            };
            b.append_data(&mut h, path, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn tree_of(layers: &[Vec<u8>]) -> Tree {
        let mut t = Tree::new();
        for l in layers {
            apply_layer(&mut t, l.as_slice()).unwrap();
        }
        t
    }

    #[test]
    fn comparator_applies_whiteouts_only_to_lower_layers() {
        let t = tree_of(&[
            layer(&[
                ("./", "dir", 0o755, 0),
                ("d/", "dir", 0o755, 0),
                ("d/a", "file:a", 0o644, 0),
                ("d/sub/", "dir", 0o700, 0),
                ("d/sub/x", "file:x", 0o644, 0),
                ("keep/", "dir", 0o755, 0),
                ("keep/old", "file:o", 0o644, 0),
                ("f", "file:f", 0o644, 0),
            ]),
            layer(&[
                // An opaque marker after the layer's own entry still keeps it.
                ("keep/new", "file:n", 0o600, 7),
                ("keep/.wh..wh..opq", "wh", 0, 0),
                ("d/.wh.sub", "wh", 0, 0),
                (".wh.f", "wh", 0, 0),
                ("f/", "dir", 0o750, 3),
                ("d/h", "hard:d/a", 0, 0),
                ("d/l", "link:a", 0o777, 0),
            ]),
        ]);
        let paths: Vec<&str> = t.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/",
                "/d",
                "/d/a",
                "/d/h",
                "/d/l",
                "/f",
                "/keep",
                "/keep/new"
            ]
        );
        assert_eq!(t["/d/h"], t["/d/a"], "a hard link has its target's content");
        assert_eq!(t["/f"].kind, Kind::Dir);
        assert_eq!((t["/keep/new"].mode, t["/keep/new"].uid), (0o600, 7));
        assert_eq!(t["/d/l"].kind, Kind::Symlink("a".to_owned()));
    }

    #[test]
    fn comparator_reports_every_kind_of_difference() {
        let a = tree_of(&[layer(&[
            ("x", "file:same", 0o644, 0),
            ("m", "file:m", 0o644, 0),
            ("o", "file:o", 0o644, 0),
            ("c", "file:one", 0o644, 0),
            ("only-a", "dir", 0o755, 0),
        ])]);
        let b = tree_of(&[layer(&[
            ("x", "file:same", 0o644, 0),
            ("m", "file:m", 0o600, 0),
            ("o", "file:o", 0o644, 1),
            ("c", "file:two", 0o644, 0),
            ("only-b", "link:x", 0o777, 0),
        ])]);
        let d = diff_trees(&a, &b).join("\n");
        for want in [
            "differs:         /c",
            "differs:         /m",
            "mode 0600",
            "differs:         /o",
            "owner 1:1",
            "only in kontti:  /only-a (dir",
            "only in buildah: /only-b (symlink -> x",
        ] {
            assert!(d.contains(want), "{want:?} missing from:\n{d}");
        }
        assert!(!d.contains("/x"), "{d}");
        assert!(diff_trees(&a, &a).is_empty());
    }

    #[test]
    fn comparator_normalises_only_what_the_doc_lists() {
        let kontti = serde_json::json!({
            "os": "linux", "architecture": "amd64", "created": "2020-01-01T00:00:00Z",
            "config": {
                "Cmd": ["sh"], "Env": ["A=1"], "Labels": {"x": "1"},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000_i64, "Retries": 0},
            },
            "history": [{"created_by": "kontti"}],
        });
        let buildah = serde_json::json!({
            "os": "linux", "architecture": "amd64", "created": "2021-01-01T00:00:00Z",
            "config": {
                "Cmd": ["sh"], "Env": ["A=1"], "Entrypoint": [], "Volumes": {}, "User": "",
                "Labels": {"x": "1", "io.buildah.version": "1.28.2"}, "Hostname": "abc",
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000_i64},
            },
            "history": [{"created_by": "buildah"}],
        });
        let mut buildah = buildah;
        buildah["config"]["Env"] = serde_json::json!(["B=2", "A=1"]);
        let mut kontti = kontti;
        kontti["config"]["Env"] = serde_json::json!(["A=1", "B=2"]);
        let (k, b) = (normalise_config(&kontti), normalise_config(&buildah));
        assert!(
            diff_configs(&k, &b).is_empty(),
            "{:?}",
            diff_configs(&k, &b)
        );
        let mut other = buildah.clone();
        other["config"]["Env"] = serde_json::json!(["A=2", "B=2"]);
        other["config"]["StopSignal"] = serde_json::json!("SIGKILL");
        let d = diff_configs(&k, &normalise_config(&other)).join("\n");
        assert!(d.contains("config Env") && d.contains("\"A\":\"2\""), "{d}");
        assert!(
            d.contains("config StopSignal") && d.contains("(not set)"),
            "{d}"
        );
    }
}
