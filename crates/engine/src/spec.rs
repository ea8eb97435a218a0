//! The OCI runtime spec of a container: the image's config, the user's run
//! options and the default security profile.
//!
//! The default profile is docker's: the 14 capabilities below, the default
//! seccomp profile kept as data in kontti-runtime
//! (`crates/runtime/profiles/default-seccomp.json`), masked and read-only
//! `/proc` and `/sys` paths, and a device cgroup that denies every device but
//! the few a process needs. `--privileged` lifts all of it.

use std::path::{Path, PathBuf};

use kontti_image::ImageConfig;
use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::options::{RunOptions, SeccompChoice};
use crate::user;

/// docker's default capabilities.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (docker's list).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only (docker's list).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where `--init` puts the init binary inside the container.
pub const INIT_PATH: &str = "/run/kontti-init";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the container gets its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsChoice {
    /// A new namespace of its own (only loopback).
    New,
    /// Join the namespace pinned at this path.
    Join(PathBuf),
    /// The host's namespace.
    Host,
}

/// Everything the spec is made from.
#[derive(Debug)]
pub struct SpecInput<'a> {
    /// The container id.
    pub id: &'a str,
    /// The image's run config.
    pub image: &'a ImageConfig,
    /// The user's options.
    pub options: &'a RunOptions,
    /// The mounted root filesystem (for user lookup).
    pub rootfs: &'a Path,
    /// The container's directory (hosts, hostname and resolv.conf live there).
    pub container_dir: &'a Path,
    /// The network namespace.
    pub netns: NetnsChoice,
    /// Extra mounts (volumes), as OCI mount objects.
    pub extra_mounts: Vec<Value>,
    /// The host's init binary for `--init`.
    pub init_binary: Option<PathBuf>,
}

/// A generated spec and what the engine keeps of it.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The config.json document.
    pub spec: Value,
    /// The process's arguments.
    pub args: Vec<String>,
    /// The signal that stops it.
    pub stop_signal: i32,
}

/// The process arguments: entrypoint and command, as docker combines them.
pub fn process_args(image: &ImageConfig, options: &RunOptions) -> Result<Vec<String>> {
    let entrypoint = match &options.entrypoint {
        Some(e) => e.clone(),
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !options.command.is_empty() {
        options.command.clone()
    } else if options.entrypoint.is_some() {
        Vec::new() // --entrypoint resets the image's CMD
    } else {
        image.cmd.clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(EngineError::NoCommand);
    }
    Ok(args)
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// Sets `entry` in `env`, replacing an entry with the same key.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = env_key(&entry).to_owned();
    if let Some(slot) = env.iter_mut().find(|e| env_key(e) == key) {
        *slot = entry;
    } else {
        env.push(entry);
    }
}

/// Capabilities after `--cap-add`/`--cap-drop` (names with or without `CAP_`,
/// any case, `ALL`).
pub fn capabilities(options: &RunOptions) -> Result<Vec<String>> {
    let known = kontti_runtime::templates::capability_names();
    // "all" is every capability this host lets us hold (no CAP_SYS_RESOURCE
    // in a restricted environment, for one)
    let all = || -> Vec<String> {
        let bounding = host_bounding_set();
        known
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding.is_none_or(|b| *bit < 64 && b & (1u64 << bit) != 0))
            .map(|(_, c)| (*c).to_owned())
            .collect()
    };
    if options.privileged {
        return Ok(all());
    }
    let norm = |what: &'static str, c: &str| -> Result<String> {
        let up = c.to_ascii_uppercase();
        if up == "ALL" {
            return Ok(up);
        }
        let name = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if !known.contains(&name.as_str()) {
            return Err(EngineError::invalid(what, c, "unknown capability"));
        }
        Ok(name)
    };
    let add: Vec<String> = options
        .cap_add
        .iter()
        .map(|c| norm("--cap-add", c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = options
        .cap_drop
        .iter()
        .map(|c| norm("--cap-drop", c))
        .collect::<Result<_>>()?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        all()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    };
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    for c in add.iter().filter(|c| *c != "ALL") {
        if !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

/// The capability bounding set of this process (`CapBnd` in
/// `/proc/self/status`); `None` if it cannot be read.
fn host_bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

fn device_rules(options: &RunOptions) -> Value {
    if options.privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let allow = |kind: &str, major: i64, minor: i64, access: &str| {
        let mut v = json!({"allow": true, "type": kind, "access": access});
        if major >= 0 {
            v["major"] = json!(major);
        }
        if minor >= 0 {
            v["minor"] = json!(minor);
        }
        v
    };
    json!([
        {"allow": false, "access": "rwm"},
        allow("c", -1, -1, "m"),
        allow("b", -1, -1, "m"),
        allow("c", 1, 3, "rwm"),   // null
        allow("c", 1, 5, "rwm"),   // zero
        allow("c", 1, 7, "rwm"),   // full
        allow("c", 1, 8, "rwm"),   // random
        allow("c", 1, 9, "rwm"),   // urandom
        allow("c", 5, 0, "rwm"),   // tty
        allow("c", 5, 1, "rwm"),   // console
        allow("c", 5, 2, "rwm"),   // ptmx
        allow("c", 136, -1, "rwm"), // pts
    ])
}

fn seccomp(options: &RunOptions) -> Result<Option<Value>> {
    if options.privileged {
        return Ok(None);
    }
    match &options.seccomp {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::Default => {
            let v = serde_json::from_str(kontti_runtime::seccomp::DEFAULT_PROFILE_JSON)
                .map_err(|e| EngineError::invalid("seccomp profile", "default", e.to_string()))?;
            Ok(Some(v))
        }
        SeccompChoice::File(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read(path).map_err(|e| {
                EngineError::invalid("--security-opt seccomp", &shown, e.to_string())
            })?;
            let v: Value = serde_json::from_slice(&text).map_err(|e| {
                EngineError::invalid("--security-opt seccomp", &shown, e.to_string())
            })?;
            serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(v.clone()).map_err(|e| {
                EngineError::invalid("--security-opt seccomp", &shown, e.to_string())
            })?;
            Ok(Some(v))
        }
    }
}

fn device_node(d: &crate::options::DeviceMapping) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let shown = d.host.display().to_string();
    let md = std::fs::metadata(&d.host)
        .map_err(|e| EngineError::invalid("--device", &shown, e.to_string()))?;
    let kind = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Err(EngineError::invalid(
            "--device",
            &shown,
            "not a device node",
        ));
    };
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    let node = json!({
        "path": d.container, "type": kind, "major": major, "minor": minor,
        "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid()
    });
    let rule = json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": d.permissions});
    Ok((node, rule))
}

/// Builds the spec.
pub fn generate(input: &SpecInput<'_>) -> Result<Generated> {
    let o = input.options;
    let img = input.image;
    let mut args = process_args(img, o)?;
    if o.init {
        if input.init_binary.is_none() {
            return Err(EngineError::Unsupported(
                "--init needs a static init binary (catatonit or tini); none was found: install catatonit or set KONTTI_INIT".into(),
            ));
        }
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }
    let user_spec = o
        .user
        .clone()
        .or_else(|| img.user.clone())
        .unwrap_or_default();
    let user = user::resolve(input.rootfs, &user_spec)?;
    let hostname = o
        .hostname
        .clone()
        .unwrap_or_else(|| input.id[..12.min(input.id.len())].to_owned());

    let mut env: Vec<String> = vec![DEFAULT_PATH.to_owned()];
    for e in img.env.iter().flatten() {
        set_env(&mut env, e.clone());
    }
    set_env(&mut env, format!("HOSTNAME={hostname}"));
    if o.tty {
        set_env(&mut env, "TERM=xterm".to_owned());
    }
    for e in &o.env {
        set_env(&mut env, e.clone());
    }
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    let cwd = o
        .workdir
        .clone()
        .or_else(|| img.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(EngineError::invalid(
            "--workdir",
            &cwd,
            "the working directory must be an absolute path",
        ));
    }

    let caps = capabilities(o)?;
    let stop_signal = match o.stop_signal.as_deref().or(img.stop_signal.as_deref()) {
        Some(s) => crate::options::parse_signal(s)?,
        None => libc::SIGTERM,
    };
    let rlimits: Vec<Value> = o
        .ulimits
        .iter()
        .map(|u| json!({"type": u.name, "soft": u.soft, "hard": u.hard}))
        .collect();

    let shm = o.shm_size.unwrap_or(64 << 20);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if o.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if o.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    for (file, dest) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        let src = input.container_dir.join(file);
        if src.exists() {
            mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"]}));
        }
    }
    for t in &o.tmpfs {
        mounts.push(json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": t.options}));
    }
    for v in o.volumes.iter().filter(|v| v.is_bind()) {
        let src = v.source.as_deref().unwrap_or_default();
        if !Path::new(src).exists() {
            return Err(EngineError::invalid(
                "--volume",
                src,
                "the host path does not exist",
            ));
        }
        let mut opts = vec!["rbind", "rprivate"];
        if v.readonly {
            opts.push("ro");
        }
        mounts.push(
            json!({"destination": v.destination, "type": "bind", "source": src, "options": opts}),
        );
    }
    mounts.extend(input.extra_mounts.iter().cloned());
    if let (true, Some(init)) = (o.init, &input.init_binary) {
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro", "nosuid", "nodev"]}));
    }

    let mut devices = Vec::new();
    let mut rules = device_rules(o);
    for d in &o.devices {
        let (node, rule) = device_node(d)?;
        devices.push(node);
        if let Some(a) = rules.as_array_mut() {
            a.push(rule);
        }
    }
    let mut resources = json!({"devices": rules});
    if let Some(m) = o.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(n) = o.nano_cpus {
        resources["cpu"] =
            json!({"quota": (n as u128 * 100_000 / 1_000_000_000) as i64, "period": 100_000});
    }
    if let Some(p) = o.pids_limit {
        resources["pids"] = json!({"limit": p});
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match &input.netns {
        NetnsChoice::New => namespaces.push(json!({"type": "network"})),
        NetnsChoice::Join(p) => namespaces.push(json!({"type": "network", "path": p})),
        NetnsChoice::Host => {}
    }
    let cgroups_path = match &o.cgroup_parent {
        Some(p) => format!("{}/{}", p.trim_end_matches('/'), input.id),
        None => input.id.to_owned(),
    };
    let mut linux = json!({
        "cgroupsPath": cgroups_path,
        "resources": resources,
        "namespaces": namespaces,
        "devices": devices,
    });
    if !o.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(s) = seccomp(o)? {
        linux["seccomp"] = s;
    }
    let mut process = json!({
        "terminal": o.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": o.no_new_privileges,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in &o.labels {
        annotations.insert(k.clone(), json!(v));
    }
    let spec = json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": {"path": "rootfs", "readonly": o.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    });
    // namespaces to join are pinned at start: validate without their paths
    let mut check = spec.clone();
    if let Some(ns) = check["linux"]["namespaces"].as_array_mut() {
        for n in ns.iter_mut() {
            if let Some(o) = n.as_object_mut() {
                o.remove("path");
            }
        }
    }
    let typed: oci_spec::runtime::Spec = serde_json::from_value(check)
        .map_err(|e| EngineError::invalid("runtime spec", input.id, e.to_string()))?;
    kontti_runtime::config::validate(&typed)?;
    Ok(Generated {
        spec,
        args: process_args(img, o)?,
        stop_signal,
    })
}

/// The host's init binary for `--init`: `$KONTTI_INIT`, else catatonit.
pub fn find_init_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KONTTI_INIT") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/catatonit",
        "/usr/libexec/podman/catatonit",
        "/usr/bin/tini-static",
        "/usr/bin/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
