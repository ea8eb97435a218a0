//! Instruction flags (`--name=value`): which instruction takes which, and the
//! parsing of `--mount`, `--network`, durations and modes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ast::{CacheSharing, Mount, MountType, NetworkMode, SecurityMode};
use crate::error::SyntaxError;
use crate::words::Word;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    Value,
    /// `--mount=...`, any number of times.
    Repeated,
}

/// The flags each instruction accepts.
pub(crate) fn allowed(instruction: &str) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match instruction {
        "FROM" => &[("platform", Value)],
        "RUN" => &[("mount", Repeated), ("network", Value), ("security", Value)],
        "COPY" => &[
            ("from", Value),
            ("chown", Value),
            ("chmod", Value),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", Repeated),
        ],
        "ADD" => &[
            ("chown", Value),
            ("chmod", Value),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", Value),
            ("exclude", Repeated),
        ],
        "HEALTHCHECK" => &[
            ("interval", Value),
            ("timeout", Value),
            ("start-period", Value),
            ("start-interval", Value),
            ("retries", Value),
        ],
        _ => &[],
    }
}

/// A flag's value and the offset of its word (for error positions).
#[derive(Debug, Clone)]
pub(crate) struct FlagValue {
    pub value: Option<String>,
    pub offset: usize,
}

/// The flags of one instruction, by name.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<FlagValue>>,
}

/// A flag error with the offset of the flag word.
pub(crate) type FlagError = (usize, SyntaxError);

impl Flags {
    /// Checks the flag words against what `instruction` accepts.
    pub fn parse(instruction: &str, words: &[Word]) -> Result<Flags, FlagError> {
        let spec = allowed(instruction);
        let mut flags = Flags::default();
        for w in words {
            let body = w.text.trim_start_matches('-');
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some((name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err((
                    w.offset,
                    SyntaxError::UnknownFlag {
                        instruction: instruction.to_string(),
                        flag: name.to_string(),
                    },
                ));
            };
            let entry = flags.values.entry(name).or_default();
            if *kind != FlagKind::Repeated && !entry.is_empty() {
                return Err((w.offset, SyntaxError::DuplicateFlag(name.to_string())));
            }
            if *kind != FlagKind::Bool && value.is_none() {
                return Err((
                    w.offset,
                    SyntaxError::BadFlagValue {
                        flag: name.to_string(),
                        reason: "missing a value".into(),
                    },
                ));
            }
            entry.push(FlagValue {
                value,
                offset: w.offset,
            });
        }
        Ok(flags)
    }

    pub fn value(&self, name: &str) -> Option<&FlagValue> {
        self.values.get(name).and_then(|v| v.first())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.value(name).and_then(|v| v.value.clone())
    }

    pub fn all(&self, name: &str) -> &[FlagValue] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn bool(&self, name: &str) -> Result<bool, FlagError> {
        let Some(v) = self.value(name) else {
            return Ok(false);
        };
        match v.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err((
                v.offset,
                SyntaxError::BadFlagValue {
                    flag: name.to_string(),
                    reason: format!("expecting a boolean value, not {other:?}"),
                },
            )),
        }
    }
}

/// `--network=none|default|host`.
pub(crate) fn network(value: &str) -> Result<NetworkMode, String> {
    match value {
        "default" => Ok(NetworkMode::Default),
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        other => Err(format!(
            "unsupported network mode {other:?} (use none, default or host)"
        )),
    }
}

/// `--security=sandbox|insecure`.
pub(crate) fn security(value: &str) -> Result<SecurityMode, String> {
    match value {
        "sandbox" => Ok(SecurityMode::Sandbox),
        "insecure" => Ok(SecurityMode::Insecure),
        other => Err(format!(
            "unsupported security mode {other:?} (use sandbox or insecure)"
        )),
    }
}

/// Splits CSV fields, honouring double quotes (`target="/a,b"`).
fn csv_fields(value: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("invalid boolean {other:?} for {key}")),
    }
}

fn parse_u32(key: &str, v: Option<&str>, radix: u32) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("{key} needs a value"))?;
    u32::from_str_radix(v, radix).map_err(|_| format!("invalid {key} {v:?}"))
}

/// `64m`, `1g`, `4096`: bytes (binary units).
fn parse_size(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, mult) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses one `--mount=` value.
pub(crate) fn mount(value: &str) -> Result<Mount, String> {
    let fields = csv_fields(value);
    let mut kind = MountType::Bind;
    for f in &fields {
        if let Some(t) = f.strip_prefix("type=") {
            kind = match t {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => {
                    return Err(format!(
                        "unsupported mount type {other:?} (use bind, cache, tmpfs, secret or ssh)"
                    ));
                }
            };
        }
    }
    let mut m = Mount {
        kind,
        target: None,
        source: None,
        from: None,
        id: None,
        read_only: matches!(kind, MountType::Bind | MountType::Secret | MountType::Ssh),
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    for f in &fields {
        if f.is_empty() {
            continue;
        }
        let (key, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (f.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| -> Result<String, String> {
            v.map(str::to_string)
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = Some(need(v)?),
            "source" | "src" => m.source = Some(need(v)?),
            "from" => m.from = Some(need(v)?),
            "id" => m.id = Some(need(v)?),
            "readonly" | "ro" => m.read_only = parse_bool(&key, v)?,
            "readwrite" | "rw" => m.read_only = !parse_bool(&key, v)?,
            "required" => m.required = parse_bool(&key, v)?,
            "sharing" => {
                m.sharing = Some(match v {
                    Some("shared") => CacheSharing::Shared,
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    other => {
                        return Err(format!(
                            "unsupported sharing {:?} (use shared, private or locked)",
                            other.unwrap_or("")
                        ));
                    }
                })
            }
            "mode" => m.mode = Some(parse_u32(&key, v, 8)?),
            "uid" => m.uid = Some(parse_u32(&key, v, 10)?),
            "gid" => m.gid = Some(parse_u32(&key, v, 10)?),
            "size" => {
                let s = need(v)?;
                m.size = Some(parse_size(&s).ok_or_else(|| format!("invalid size {s:?}"))?);
            }
            "env" => m.env = Some(need(v)?),
            _ => return Err(format!("unexpected key {key:?} in {f:?}")),
        }
    }
    check_mount(&m)?;
    Ok(m)
}

fn check_mount(m: &Mount) -> Result<(), String> {
    let kind = format!("{:?}", m.kind).to_ascii_lowercase();
    match m.kind {
        MountType::Bind | MountType::Cache | MountType::Tmpfs if m.target.is_none() => {
            return Err(format!("type={kind} needs target="));
        }
        MountType::Secret if m.id.is_none() && m.target.is_none() => {
            return Err("type=secret needs id= or target=".into());
        }
        _ => {}
    }
    if m.from.is_some() && !matches!(m.kind, MountType::Bind | MountType::Cache) {
        return Err(format!("from= is not valid for type={kind}"));
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("sharing= is not valid for type={kind}"));
    }
    if m.size.is_some() && m.kind != MountType::Tmpfs {
        return Err(format!("size= is not valid for type={kind}"));
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err(format!("env= is not valid for type={kind}"));
    }
    Ok(())
}

/// Go's `time.ParseDuration` syntax: `30s`, `1m30s`, `1.5h`, `100ms`, `0`.
pub(crate) fn duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if !total.is_finite() || total > 1e9 {
        return None;
    }
    Some(Duration::from_nanos((total * 1e9).round() as u64))
}

/// Checks a `--chmod` value: octal up to 7777, or symbolic (`u+x,go-w`).
/// Values with variables are checked after expansion.
pub(crate) fn chmod_ok(value: &str) -> bool {
    if value.contains('$') {
        return true;
    }
    if value.chars().all(|c| c.is_ascii_digit()) {
        return u32::from_str_radix(value, 8).is_ok_and(|m| m <= 0o7777);
    }
    value.split(',').all(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        !ops.is_empty()
            && ops.starts_with(['+', '-', '='])
            && ops
                .chars()
                .all(|c| matches!(c, '+' | '-' | '=' | 'r' | 'w' | 'x' | 'X' | 's' | 't'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_cache_with_options() {
        let m = mount("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000")
            .expect("mount");
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1000));
        assert!(!m.read_only);
    }

    #[test]
    fn mount_bind_defaults_read_only() {
        let m = mount("target=/src,from=build,source=/out,rw").expect("mount");
        assert_eq!(m.kind, MountType::Bind);
        assert!(!m.read_only);
        assert!(mount("target=/src").expect("mount").read_only);
    }

    #[test]
    fn mount_errors() {
        assert!(
            mount("type=nfs,target=/x")
                .expect_err("type")
                .contains("unsupported mount type \"nfs\"")
        );
        assert!(
            mount("type=cache,target=/x,bogus=1")
                .expect_err("key")
                .contains("unexpected key")
        );
        assert!(
            mount("type=cache")
                .expect_err("target")
                .contains("needs target=")
        );
        assert!(mount("type=secret").expect_err("id").contains("needs id="));
        assert!(mount("type=tmpfs,target=/t,from=x").is_err());
    }

    #[test]
    fn secret_defaults() {
        let m = mount("type=secret,id=npmrc").expect("mount");
        assert_eq!(m.target_path().as_deref(), Some("/run/secrets/npmrc"));
        let m = mount("type=secret,target=/root/.npmrc").expect("mount");
        assert_eq!(m.effective_id().as_deref(), Some(".npmrc"));
        let m = mount("type=secret,id=tok,env=TOKEN").expect("mount");
        assert_eq!(m.target_path(), None);
        let m = mount("type=cache,target=/var/cache/apt").expect("mount");
        assert_eq!(m.effective_id().as_deref(), Some("/var/cache/apt"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(duration("5"), None);
        assert_eq!(duration("s"), None);
        assert_eq!(duration(""), None);
    }

    #[test]
    fn chmod_values() {
        assert!(chmod_ok("0755"));
        assert!(chmod_ok("u+x,go-w"));
        assert!(!chmod_ok("999"));
        assert!(!chmod_ok("rwx"));
    }
}
