//! What a user asks for when creating a container (`kontti run`'s flags, the
//! node agent's pod spec), and the parsers of docker's flag syntax. Parsed
//! once, stored in the container's record, turned into an OCI spec by
//! [`crate::spec`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The options of one container, after parsing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOptions {
    /// The command (replaces the image's CMD when not empty).
    #[serde(default)]
    pub command: Vec<String>,
    /// `--entrypoint`: `Some(vec![])` clears the image's.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `-e`, `--env-file`: `KEY=value` entries, applied over the image's.
    #[serde(default)]
    pub env: Vec<String>,
    /// `-w`.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `-u`: `user[:group]`, names or numbers.
    #[serde(default)]
    pub user: Option<String>,
    /// `--hostname` (default: the short id).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `--label`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `-t`.
    #[serde(default)]
    pub tty: bool,
    /// `-i`.
    #[serde(default)]
    pub stdin: bool,
    /// `--memory` in bytes.
    #[serde(default)]
    pub memory: Option<u64>,
    /// `--cpus` in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: Option<u64>,
    /// `--pids-limit`.
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// `--read-only`.
    #[serde(default)]
    pub read_only: bool,
    /// `--privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// `--cap-add` (`CAP_` prefix added; `ALL` allowed).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges`.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=...`.
    #[serde(default)]
    pub seccomp: SeccompChoice,
    /// `--tmpfs DEST[:OPTIONS]`.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// `-v`.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// `--ulimit`.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size` in bytes (default 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// `--device`.
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// `--init`.
    #[serde(default)]
    pub init: bool,
    /// `--restart`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--rm`.
    #[serde(default)]
    pub auto_remove: bool,
    /// `--network` (`none`, `host`, `bridge`, a network's name, `container:NAME`).
    #[serde(default)]
    pub network: Option<String>,
    /// `-p` as given (`[ip:]host:container[/proto]`).
    #[serde(default)]
    pub publish: Vec<String>,
    /// `--stop-signal` (default: the image's STOPSIGNAL, else SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (default 10).
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    /// `--log-opt max-size`.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file`.
    #[serde(default)]
    pub log_max_files: Option<u32>,
    /// `--cgroup-parent`: the container's cgroup goes below it.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    /// `--health-*` flags (merged with the image's HEALTHCHECK at create).
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// `--no-healthcheck`.
    #[serde(default)]
    pub no_healthcheck: bool,
}

/// A health check: docker's `HEALTHCHECK` and `--health-*` flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthConfig {
    /// `["CMD", args...]` or `["CMD-SHELL", command]`; empty: the image's.
    pub test: Vec<String>,
    /// Between checks, milliseconds (default 30 s).
    pub interval_ms: Option<u64>,
    /// A check slower than this fails, milliseconds (default 30 s).
    pub timeout_ms: Option<u64>,
    /// Failures in a row that make it unhealthy (default 3).
    pub retries: Option<u32>,
    /// Failures during this time after start do not count, milliseconds.
    pub start_period_ms: Option<u64>,
}

/// A duration such as `500ms`, `30s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration_ms(what: &'static str, s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| EngineError::invalid(what, s, "expected a duration such as 500ms, 30s, 2m"))?;
    let mult = match unit {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(EngineError::invalid(what, s, "units are ms, s, m, h")),
    };
    Ok((n * mult) as u64)
}

/// `--security-opt seccomp=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SeccompChoice {
    /// The default profile.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile read from this file at create time.
    File(PathBuf),
}

/// A `--tmpfs` mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Where in the container.
    pub destination: String,
    /// Mount options (`size=64m`, `mode=1777`, ...).
    pub options: Vec<String>,
}

/// A `-v` mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// A host path (absolute) or a volume name; `None` for an anonymous volume.
    pub source: Option<String>,
    /// Where in the container.
    pub destination: String,
    /// `:ro`.
    pub readonly: bool,
}

impl VolumeSpec {
    /// Whether the source is a host path (a bind mount) rather than a volume.
    pub fn is_bind(&self) -> bool {
        self.source.as_deref().is_some_and(|s| s.starts_with('/'))
    }
}

/// A `--ulimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `RLIMIT_NOFILE`, ...
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A `--device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMapping {
    /// The host's device node.
    pub host: PathBuf,
    /// Its path in the container.
    pub container: String,
    /// `rwm` or a subset.
    pub permissions: String,
}

/// `--restart`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart on a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        /// The limit of restarts.
        max: u32,
    },
    /// Always restart, unless removed.
    Always,
    /// Always restart unless stopped by the user.
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let p = match name {
            "no" | "" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max = match count {
                    None => 0,
                    Some(c) => c.parse().map_err(|_| {
                        EngineError::invalid(
                            "--restart",
                            s,
                            "the retry count after on-failure: must be a non-negative number",
                        )
                    })?,
                };
                return Ok(RestartPolicy::OnFailure { max });
            }
            _ => {
                return Err(EngineError::invalid(
                    "--restart",
                    s,
                    "use no, on-failure[:N], always or unless-stopped",
                ));
            }
        };
        if count.is_some() {
            return Err(EngineError::invalid(
                "--restart",
                s,
                "only on-failure takes a retry count",
            ));
        }
        Ok(p)
    }

    /// docker's name of the policy.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

/// Parses a size such as `512m`, `1g`, `4096`, `64k` (binary units, as
/// docker does).
pub fn parse_bytes(what: &'static str, s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(EngineError::invalid(
            what,
            s,
            "expected a number with an optional unit (b, k, m, g)",
        ));
    }
    let n: f64 = num.parse().map_err(|_| {
        EngineError::invalid(
            what,
            s,
            "expected a number with an optional unit (b, k, m, g)",
        )
    })?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(EngineError::invalid(
                what,
                s,
                format!("unknown unit {unit:?} (use b, k, m, g or t)"),
            ));
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(EngineError::invalid(what, s, "too large"));
    }
    Ok(v as u64)
}

/// `--memory`: at least 6 MiB, as docker requires.
pub fn parse_memory(s: &str) -> Result<u64> {
    let v = parse_bytes("--memory", s)?;
    if v < 6 << 20 {
        return Err(EngineError::invalid(
            "--memory",
            s,
            "the minimum memory limit is 6m",
        ));
    }
    Ok(v)
}

/// `--cpus 1.5` → billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<u64> {
    let v: f64 = s.trim().parse().map_err(|_| {
        EngineError::invalid("--cpus", s, "expected a number of CPUs such as 0.5 or 2")
    })?;
    if !v.is_finite() || v <= 0.0 || v > 1_000_000.0 {
        return Err(EngineError::invalid(
            "--cpus",
            s,
            "must be a positive number of CPUs",
        ));
    }
    Ok((v * 1e9).round() as u64)
}

/// `--ulimit nofile=1024[:2048]`.
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let bad = |r: &str| EngineError::invalid("--ulimit", s, r.to_owned());
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let known = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !known.contains(&name) {
        return Err(bad(
            "unknown limit name (nofile, nproc, core, stack, memlock, ...)",
        ));
    }
    let num = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse()
            .map_err(|_| bad("limits must be non-negative numbers"))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let v = num(vals)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard limit"));
    }
    Ok(Ulimit {
        name: format!("RLIMIT_{}", name.to_ascii_uppercase()),
        soft,
        hard,
    })
}

/// `-v HOST:CTR[:ro|rw]`, `-v NAME:CTR[:ro]`, `-v CTR`.
pub fn parse_volume(s: &str) -> Result<VolumeSpec> {
    let bad = |r: &str| EngineError::invalid("--volume", s, r.to_owned());
    let parts: Vec<&str> = s.split(':').collect();
    let (source, dest, mode) = match parts.as_slice() {
        [d] => (None, *d, None),
        [src, d] => (Some(*src), *d, None),
        [src, d, m] => (Some(*src), *d, Some(*m)),
        _ => return Err(bad("expected [SOURCE:]DESTINATION[:ro|rw]")),
    };
    if !dest.starts_with('/') {
        return Err(bad("the destination must be an absolute path"));
    }
    if dest == "/" {
        return Err(bad("the destination cannot be /"));
    }
    let readonly = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(_) => return Err(bad("the mode must be ro or rw")),
    };
    if let Some(src) = source {
        if src.is_empty() {
            return Err(bad("empty source"));
        }
        if !src.starts_with('/') && !crate::container::valid_name(src) {
            return Err(bad("a volume name uses letters, digits, '_', '.', '-'"));
        }
    }
    Ok(VolumeSpec {
        source: source.map(str::to_owned),
        destination: dest.to_owned(),
        readonly,
    })
}

/// What a `--mount` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// `type=bind` or `type=volume`: as `-v`.
    Volume(VolumeSpec),
    /// `type=tmpfs`: as `--tmpfs`.
    Tmpfs(TmpfsMount),
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]`
/// (`src`/`dst`/`destination`, `ro`, `tmpfs-size`, `tmpfs-mode` as docker).
pub fn parse_mount(s: &str) -> Result<MountSpec> {
    let bad = |r: &str| EngineError::invalid("--mount", s, r.to_owned());
    let (mut kind, mut source, mut target, mut readonly) = ("volume", None, None, false);
    let mut tmpfs_opts = Vec::new();
    for field in s.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        match (k, v) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => kind = t,
            ("type", _) => return Err(bad("type is bind, volume or tmpfs")),
            ("source" | "src", Some(v)) => source = Some(v.to_owned()),
            ("target" | "dst" | "destination", Some(v)) => target = Some(v.to_owned()),
            ("readonly" | "ro", None | Some("true" | "1")) => readonly = true,
            ("readonly" | "ro", Some("false" | "0")) => readonly = false,
            ("tmpfs-size", Some(v)) => {
                tmpfs_opts.push(format!("size={}", parse_bytes("--mount", v)?))
            }
            ("tmpfs-mode", Some(v)) if u32::from_str_radix(v, 8).is_ok() => {
                tmpfs_opts.push(format!("mode={v}"))
            }
            _ => return Err(bad(&format!("unknown or malformed field {field:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad("a target is required"))?;
    if !target.starts_with('/') || target == "/" {
        return Err(bad("the target must be an absolute path other than /"));
    }
    match kind {
        "tmpfs" => {
            if source.is_some() {
                return Err(bad("a tmpfs mount has no source"));
            }
            let mut t = parse_tmpfs(&target)?;
            t.options.extend(tmpfs_opts);
            if readonly {
                t.options.push("ro".into());
            }
            Ok(MountSpec::Tmpfs(t))
        }
        "bind" => {
            let src = source.ok_or_else(|| bad("a bind mount needs a source"))?;
            if !src.starts_with('/') {
                return Err(bad("a bind mount's source must be an absolute path"));
            }
            Ok(MountSpec::Volume(VolumeSpec {
                source: Some(src),
                destination: target,
                readonly,
            }))
        }
        _ => {
            if let Some(src) = &source
                && (src.starts_with('/') || !crate::container::valid_name(src))
            {
                return Err(bad("a volume's source is a volume name"));
            }
            Ok(MountSpec::Volume(VolumeSpec {
                source,
                destination: target,
                readonly,
            }))
        }
    }
}

/// `--tmpfs /run[:size=64m,mode=1777]`.
pub fn parse_tmpfs(s: &str) -> Result<TmpfsMount> {
    let (dest, opts) = match s.split_once(':') {
        Some((d, o)) => (d, o),
        None => (s, ""),
    };
    if !dest.starts_with('/') {
        return Err(EngineError::invalid(
            "--tmpfs",
            s,
            "the destination must be an absolute path",
        ));
    }
    let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => options.push(format!("size={}", parse_bytes("--tmpfs", v)?)),
            Some(("mode", v)) if u32::from_str_radix(v, 8).is_ok() => options.push(o.to_owned()),
            Some(("uid" | "gid" | "nr_inodes", v)) if v.parse::<u64>().is_ok() => {
                options.push(o.to_owned())
            }
            None if matches!(
                o,
                "ro" | "rw" | "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev"
            ) =>
            {
                options.push(o.to_owned())
            }
            _ => {
                return Err(EngineError::invalid(
                    "--tmpfs",
                    s,
                    format!("unknown or malformed option {o:?}"),
                ));
            }
        }
    }
    Ok(TmpfsMount {
        destination: dest.to_owned(),
        options,
    })
}

/// `--device /dev/x[:/dev/y[:rwm]]`.
pub fn parse_device(s: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = s.split(':').collect();
    let perms_ok = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if perms_ok(c) && !c.starts_with('/') => (*h, *h, *c),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(EngineError::invalid(
                "--device",
                s,
                "expected HOST[:CONTAINER][:PERMISSIONS]",
            ));
        }
    };
    if !host.starts_with('/') || !ctr.starts_with('/') {
        return Err(EngineError::invalid(
            "--device",
            s,
            "device paths must be absolute",
        ));
    }
    if !perms_ok(perms) {
        return Err(EngineError::invalid(
            "--device",
            s,
            "permissions are a combination of r, w and m",
        ));
    }
    Ok(DeviceMapping {
        host: PathBuf::from(host),
        container: ctr.to_owned(),
        permissions: perms.to_owned(),
    })
}

/// `--label k=v` (a bare `k` is an empty value).
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(EngineError::invalid("--label", s, "empty label name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// An env entry from `-e`: `KEY=value` as is, a bare `KEY` takes the value
/// of `lookup(KEY)` and is dropped when that is unset (docker's rule).
pub fn parse_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    let key = s.split_once('=').map_or(s, |(k, _)| k);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(EngineError::invalid(
            "--env",
            s,
            "expected KEY=VALUE with a non-empty KEY without spaces",
        ));
    }
    if s.contains('=') {
        return Ok(Some(s.to_owned()));
    }
    Ok(lookup(key).map(|v| format!("{key}={v}")))
}

/// The entries of an `--env-file`: one per line, `#` comments and blank lines
/// skipped, bare names looked up as with `-e`.
pub fn parse_env_file(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(e) = parse_env(l, &lookup)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// A signal by name (`SIGTERM`, `TERM`, `term`) or number (`15`).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(EngineError::invalid(
            "signal",
            s,
            "signal numbers go from 1 to 64",
        ));
    }
    kontti_runtime::sys::process::signal_number(&s.to_ascii_uppercase())
        .ok_or_else(|| EngineError::invalid("signal", s, "unknown signal name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("x", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("x", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("x", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("x", "1.5k").unwrap(), 1536);
        let e = parse_memory("12q").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid --memory \"12q\": unknown unit \"q\" (use b, k, m, g or t)"
        );
        assert!(parse_memory("1m").is_err());
        assert!(parse_bytes("x", "m").is_err());
    }

    #[test]
    fn cpus_ulimits_signals() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("many").is_err());
        let u = parse_ulimit("nofile=100:200").unwrap();
        assert_eq!(
            (u.name.as_str(), u.soft, u.hard),
            ("RLIMIT_NOFILE", 100, 200)
        );
        assert!(parse_ulimit("nofile=300:200").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("SIGNOPE").is_err());
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGSYS").unwrap(), libc::SIGSYS);
        assert!(parse_signal("65").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max: 3 }
        );
        assert_eq!(
            RestartPolicy::parse("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert!(RestartPolicy::parse("always:2").is_err());
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn volumes_tmpfs_devices() {
        let v = parse_volume("/srv:/data:ro").unwrap();
        assert!(v.is_bind() && v.readonly && v.destination == "/data");
        let v = parse_volume("cache:/cache").unwrap();
        assert!(!v.is_bind());
        assert_eq!(parse_volume("/data").unwrap().source, None);
        assert!(parse_volume("/a:rel").is_err());
        assert!(parse_volume("/a:/b:rx").is_err());
        let t = parse_tmpfs("/run:size=1m,mode=755").unwrap();
        assert!(t.options.contains(&"size=1048576".to_owned()));
        assert!(parse_tmpfs("/run:bogus").is_err());
        let d = parse_device("/dev/fuse:rw").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/fuse", "rw")
        );
        let d = parse_device("/dev/null:/dev/mynull").unwrap();
        assert_eq!(d.container, "/dev/mynull");
        assert!(parse_device("dev/null").is_err());
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=bind,source=/srv,target=/data,readonly").unwrap();
        assert_eq!(
            m,
            MountSpec::Volume(VolumeSpec {
                source: Some("/srv".into()),
                destination: "/data".into(),
                readonly: true
            })
        );
        let m = parse_mount("type=volume,src=cache,dst=/cache").unwrap();
        assert!(matches!(m, MountSpec::Volume(v) if v.source.as_deref() == Some("cache")));
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap();
        assert!(matches!(m, MountSpec::Tmpfs(t) if t.options.contains(&"size=1048576".to_owned())));
        assert!(parse_mount("type=bind,source=rel,target=/x").is_err());
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("source=/a").is_err());
        assert!(parse_mount("type=tmpfs,source=x,target=/t").is_err());
    }

    #[test]
    fn env_and_labels() {
        let look = |k: &str| (k == "HOME").then(|| "/root".to_owned());
        assert_eq!(parse_env("A=1", look).unwrap().as_deref(), Some("A=1"));
        assert_eq!(
            parse_env("HOME", look).unwrap().as_deref(),
            Some("HOME=/root")
        );
        assert_eq!(parse_env("UNSET", look).unwrap(), None);
        assert!(parse_env("=x", look).is_err());
        let f = parse_env_file("# c\n\nA=1\nHOME\n", look).unwrap();
        assert_eq!(f, vec!["A=1", "HOME=/root"]);
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
    }
}
