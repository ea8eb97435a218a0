//! RUN: the command runs in a container through the `kontti-runc` binary (a
//! fresh single-threaded process: the builder itself never forks a
//! container), with the step's mounted snapshot as its root filesystem.
//!
//! The container gets new pid, ipc, uts, mount and cgroup namespaces; the
//! host's network unless `--network=none` (a new, empty network namespace:
//! loopback only). `RUN --mount` adds bind, cache, tmpfs and secret mounts.
//! Mount points the runtime had to create in the root filesystem are
//! removed from the snapshot's upper directory afterwards, so they do not
//! land in the layer; secrets are bind-mounted files (or environment
//! variables) and never part of the tree.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use kontti_build::{
    BuildContext, CommandForm, Mount as RunMount, MountType, NetworkMode, Run, clean_path,
};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::error::BuildError;
use crate::options::Progress;
use crate::user;
use crate::workspace::{Machine, Workspace};

/// The capabilities a RUN step has (Docker's default set).
const CAPS: [&str; 14] = [
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

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a RUN step needs besides the workspace.
pub(crate) struct RunStep<'a> {
    /// `Dockerfile:LINE: RUN ...`, for errors.
    pub label: &'a str,
    /// The stage's name for progress.
    pub stage: &'a str,
    pub run: &'a Run,
    pub shell: &'a [String],
    pub env: Vec<(String, String)>,
    pub user: Option<&'a str>,
    pub workdir: &'a str,
    pub context: &'a BuildContext,
    pub secrets: &'a BTreeMap<String, PathBuf>,
    pub resolv_conf: Option<&'a Path>,
    /// The mounted trees of `--mount from=` stages and images, by value.
    pub from_trees: &'a BTreeMap<String, PathBuf>,
    pub progress: &'a Arc<dyn Progress>,
}

/// The argv of the step: exec form as is; shell form through the shell,
/// with heredoc bodies appended for the shell to read, or a lone heredoc
/// run as the script itself.
pub(crate) fn argv(run: &Run, shell: &[String]) -> Vec<String> {
    match &run.command {
        CommandForm::Exec(args) => args.clone(),
        CommandForm::Shell(text) => {
            let mut script = text.clone();
            let lone = run.heredocs.len() == 1 && text.trim().starts_with("<<") && {
                let t = text.trim();
                !t.contains(char::is_whitespace)
            };
            if lone {
                script = run.heredocs[0].content.clone();
            } else {
                for h in &run.heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                }
            }
            let mut out = shell.to_vec();
            out.push(script);
            out
        }
    }
}

fn exists_in_root(root: &Path, path: &str) -> bool {
    let Ok(dir) = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) else {
        return false;
    };
    rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .is_ok()
}

/// Every ancestor of `path` and itself, shallowest first (`/a`, `/a/b`).
fn with_ancestors(path: &str) -> Vec<String> {
    let clean = clean_path(path);
    let mut out = Vec::new();
    let mut acc = String::new();
    for c in clean.split('/').filter(|c| !c.is_empty()) {
        acc.push('/');
        acc.push_str(c);
        out.push(acc.clone());
    }
    out
}

/// Runs the step in `ws`.
pub(crate) fn run(
    m: &Machine,
    ws: &mut Workspace<'_>,
    step: &RunStep<'_>,
) -> Result<(), BuildError> {
    if step.run.security == Some(kontti_build::SecurityMode::Insecure) {
        return Err(BuildError::Unsupported {
            step: step.label.to_string(),
            reason: "RUN --security=insecure is not allowed: RUN steps are always confined".into(),
        });
    }
    let rootfs = ws.rootfs().to_path_buf();
    let ids = match step.user {
        Some(u) if !u.is_empty() => {
            user::resolve(&rootfs, u).map_err(|e| BuildError::step(step.label, e))?
        }
        _ => user::Ids {
            uid: 0,
            gid: 0,
            additional: Vec::new(),
        },
    };
    let workdir = if step.workdir.is_empty() {
        "/"
    } else {
        step.workdir
    };
    if workdir != "/" {
        let root = kontti_image::fsroot::Root::open(&rootfs)
            .map_err(|e| BuildError::io("open", &rootfs, e))?;
        root.dir(Path::new(workdir.trim_start_matches('/')), true)
            .map_err(|e| BuildError::step(step.label, format!("working directory: {e}")))?;
    }
    let mut env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !step.env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    let mut mounts: Vec<Value> = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    // Name resolution: a hosts file of our own, and the caller's resolv.conf
    // on the host's network. Both are bind mounts, never part of the layer.
    let hosts = ws.dir().join("hosts");
    fs::write(
        &hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tkontti-build\n",
    )
    .map_err(|e| BuildError::io("write", &hosts, e))?;
    mounts.push(json!({"destination": "/etc/hosts", "type": "bind", "source": hosts, "options": ["bind", "ro"]}));
    if let Some(resolv) = step.resolv_conf
        && step.run.network != Some(NetworkMode::None)
    {
        mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind", "source": resolv, "options": ["bind", "ro"]}));
    }
    // `sharing=locked` cache mounts: held until the step ends.
    let mut locks: Vec<fs::File> = Vec::new();
    for (i, mnt) in step.run.mounts.iter().enumerate() {
        let mut held = Held {
            env: &mut env,
            locks: &mut locks,
        };
        if let Some(v) = run_mount(m, ws, step, i, mnt, &ids, &mut held)? {
            mounts.push(v);
        }
    }
    let dests: Vec<String> = mounts
        .iter()
        .filter_map(|v| v["destination"].as_str().map(str::to_string))
        .collect();
    let mut created: Vec<String> = Vec::new();
    // Existing directories that the runtime's new mount points will make
    // overlay copy up, with their metadata: they leave the layer again if
    // nothing else changed them.
    let mut parents: Vec<(String, (u32, u32, u32))> = Vec::new();
    for d in &dests {
        let chain = with_ancestors(d);
        if chain.iter().all(|p| exists_in_root(&rootfs, p)) {
            continue;
        }
        for p in chain {
            if created.contains(&p) || parents.iter().any(|(q, _)| *q == p) {
                continue;
            }
            if !exists_in_root(&rootfs, &p) {
                created.push(p);
            } else if let Ok(md) = fs::symlink_metadata(rootfs.join(p.trim_start_matches('/')))
                && md.is_dir()
            {
                use std::os::unix::fs::MetadataExt;
                parents.push((p, (md.mode(), md.uid(), md.gid())));
            }
        }
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if step.run.network == Some(NetworkMode::None) {
        namespaces.push(json!({"type": "network"}));
    }
    let config = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": ids.uid, "gid": ids.gid, "additionalGids": ids.additional},
            "args": argv(step.run, step.shell),
            "env": env,
            "cwd": workdir,
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
            "noNewPrivileges": false
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": "kontti-build",
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    let config_path = ws.dir().join("config.json");
    write_private(&config_path, config.to_string().as_bytes())?;
    let result = spawn(m, ws, step);
    // The config may hold a secret (`env=`): it goes as soon as it is used.
    let _ = fs::remove_file(&config_path);
    result?;
    remove_created(ws, &created, &parents)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BuildError::io("create", path, e))?;
    f.write_all(data)
        .map_err(|e| BuildError::io("write", path, e))
}

/// Runs `kontti-runc run` and waits; output goes to progress, its tail into
/// the error when the command fails.
fn spawn(m: &Machine, ws: &Workspace<'_>, step: &RunStep<'_>) -> Result<(), BuildError> {
    let mut child = Command::new(&m.runtime)
        .arg("--root")
        .arg(&m.runc_root)
        .arg("run")
        .arg("--bundle")
        .arg(ws.dir())
        .arg(ws.key())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BuildError::Runtime {
            path: m.runtime.clone(),
            cause: source,
        })?;
    let tail: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let pipes: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let status = std::thread::scope(|s| {
        for pipe in pipes {
            let tail = Arc::clone(&tail);
            s.spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                while let Ok(n) = reader.read_until(b'\n', &mut line) {
                    if n == 0 {
                        break;
                    }
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    step.progress.output(step.stage, text);
                    if let Ok(mut t) = tail.lock() {
                        t.push(String::from_utf8_lossy(text).into_owned());
                        if t.len() > 20 {
                            t.remove(0);
                        }
                    }
                    line.clear();
                }
            });
        }
        child.wait()
    })
    .map_err(|source| BuildError::Runtime {
        path: m.runtime.clone(),
        cause: source,
    })?;
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    let output = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
    Err(BuildError::RunFailed {
        step: step.label.to_string(),
        code,
        output,
    })
}

/// Removes the mount points the runtime created (empty files and
/// directories) from the upper directory, deepest first.
fn remove_created(
    ws: &Workspace<'_>,
    created: &[String],
    parents: &[(String, (u32, u32, u32))],
) -> Result<(), BuildError> {
    if created.is_empty() {
        return Ok(());
    }
    let upper = ws.upper()?;
    for p in created.iter().rev() {
        let path = upper.join(p.trim_start_matches('/'));
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => {
                let _ = fs::remove_dir(&path); // only when empty
            }
            Ok(md) if md.is_file() && md.len() == 0 => {
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
    }
    let mut parents: Vec<&(String, (u32, u32, u32))> = parents.iter().collect();
    parents.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (p, meta) in parents {
        use std::os::unix::fs::MetadataExt;
        let path = upper.join(p.trim_start_matches('/'));
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        // Only a bare copy-up: empty, same mode and owner as below.
        if md.is_dir()
            && (md.mode(), md.uid(), md.gid()) == *meta
            && !crate::layer::is_opaque(&path)
        {
            let _ = fs::remove_dir(&path); // only when empty
        }
    }
    Ok(())
}

/// What `RUN --mount`s add to the step: environment variables (secrets
/// with `env=`) and locks held until it ends (`sharing=locked`).
struct Held<'a> {
    env: &'a mut Vec<String>,
    locks: &'a mut Vec<fs::File>,
}

/// The OCI mount for one `RUN --mount`, or `None` (an absent optional
/// secret).
fn run_mount(
    m: &Machine,
    ws: &mut Workspace<'_>,
    step: &RunStep<'_>,
    i: usize,
    mnt: &RunMount,
    ids: &user::Ids,
    held: &mut Held<'_>,
) -> Result<Option<Value>, BuildError> {
    let Held { env, locks } = held;
    let ro = |read_only: bool| if read_only { "ro" } else { "rw" };
    match mnt.kind {
        MountType::Bind => {
            let target = mnt
                .target_path()
                .ok_or_else(|| BuildError::step(step.label, "--mount type=bind needs target="))?;
            let source = mnt.source.clone().unwrap_or_else(|| ".".into());
            let host = match &mnt.from {
                None => {
                    step.context
                        .select(&source)
                        .map_err(|e| BuildError::Context {
                            step: step.label.to_string(),
                            cause: e,
                        })?;
                    let rel = clean_path(source.trim_start_matches('/'));
                    step.context.root().join(rel.trim_start_matches('/'))
                }
                Some(from) => {
                    let tree = step.from_trees.get(from).ok_or_else(|| {
                        BuildError::step(step.label, format!("--mount from={from}: not built"))
                    })?;
                    crate::copy::resolve_in_tree(tree, &source)
                        .map_err(|e| BuildError::step(step.label, format!("{source}: {e}")))?
                }
            };
            let host = if mnt.read_only {
                host
            } else {
                // Writes to a writable bind mount are discarded, as BuildKit
                // does: the container gets a copy.
                let copy = ws.dir().join(format!("bind{i}"));
                let status = Command::new("cp")
                    .arg("-a")
                    .arg(&host)
                    .arg(&copy)
                    .stdin(Stdio::null())
                    .status()
                    .map_err(|e| BuildError::io("copy bind source", &host, e))?;
                if !status.success() {
                    return Err(BuildError::step(
                        step.label,
                        format!("cannot copy {source} for a writable bind mount"),
                    ));
                }
                copy
            };
            Ok(Some(json!({
                "destination": target, "type": "bind", "source": host,
                "options": ["rbind", ro(mnt.read_only)]
            })))
        }
        MountType::Cache => {
            let target = mnt
                .target_path()
                .ok_or_else(|| BuildError::step(step.label, "--mount type=cache needs target="))?;
            let id = mnt.effective_id().unwrap_or_else(|| target.clone());
            let name = hex::encode(sha2::Sha256::digest(id.as_bytes()));
            let dir = m.cache_mounts.join(&name);
            if mnt.sharing == Some(kontti_build::CacheSharing::Locked) {
                let path = m.cache_mounts.join(format!("{name}.lock"));
                let f = fs::File::create(&path).map_err(|e| BuildError::io("create", &path, e))?;
                rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                    .map_err(|e| BuildError::io("lock", &path, e.into()))?;
                locks.push(f);
            }
            if !dir.exists() {
                fs::create_dir_all(&dir).map_err(|e| BuildError::io("create", &dir, e))?;
                let mode = mnt.mode.unwrap_or(0o755);
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                    .map_err(|e| BuildError::io("chmod", &dir, e))?;
                rustix::fs::chown(
                    &dir,
                    Some(rustix::fs::Uid::from_raw(mnt.uid.unwrap_or(0))),
                    Some(rustix::fs::Gid::from_raw(mnt.gid.unwrap_or(0))),
                )
                .map_err(|e| BuildError::io("chown", &dir, e.into()))?;
            }
            Ok(Some(json!({
                "destination": target, "type": "bind", "source": dir,
                "options": ["rbind", ro(mnt.read_only)]
            })))
        }
        MountType::Tmpfs => {
            let target = mnt
                .target_path()
                .ok_or_else(|| BuildError::step(step.label, "--mount type=tmpfs needs target="))?;
            let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
            if let Some(size) = mnt.size {
                options.push(format!("size={size}"));
            }
            Ok(Some(json!({
                "destination": target, "type": "tmpfs", "source": "tmpfs", "options": options
            })))
        }
        MountType::Secret => {
            let id = mnt
                .effective_id()
                .ok_or_else(|| BuildError::step(step.label, "--mount type=secret needs id="))?;
            let Some(src) = step.secrets.get(&id) else {
                if mnt.required {
                    return Err(BuildError::step(
                        step.label,
                        format!(
                            "secret {id:?} is required but was not given (--secret id={id},src=FILE)"
                        ),
                    ));
                }
                return Ok(None);
            };
            let data = fs::read(src).map_err(|e| {
                BuildError::step(step.label, format!("secret {id:?}: {}: {e}", src.display()))
            })?;
            if let Some(var) = &mnt.env {
                env.push(format!("{var}={}", String::from_utf8_lossy(&data)));
            }
            let Some(target) = mnt.target_path() else {
                return Ok(None);
            };
            let dir = ws.dir().join("secrets");
            fs::create_dir_all(&dir).map_err(|e| BuildError::io("create", &dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| BuildError::io("chmod", &dir, e))?;
            let file = dir.join(format!("s{i}"));
            write_private(&file, &data)?;
            fs::set_permissions(&file, fs::Permissions::from_mode(mnt.mode.unwrap_or(0o400)))
                .map_err(|e| BuildError::io("chmod", &file, e))?;
            rustix::fs::chown(
                &file,
                Some(rustix::fs::Uid::from_raw(mnt.uid.unwrap_or(ids.uid))),
                Some(rustix::fs::Gid::from_raw(mnt.gid.unwrap_or(ids.gid))),
            )
            .map_err(|e| BuildError::io("chown", &file, e.into()))?;
            Ok(Some(json!({
                "destination": target, "type": "bind", "source": file,
                "options": ["bind", "ro"]
            })))
        }
        MountType::Ssh => Err(BuildError::Unsupported {
            step: step.label.to_string(),
            reason: "--mount type=ssh is not supported".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontti_build::Heredoc;

    fn run(command: CommandForm, heredocs: Vec<Heredoc>) -> Run {
        Run {
            command,
            heredocs,
            mounts: Vec::new(),
            network: None,
            security: None,
        }
    }

    fn doc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
            strip_tabs: false,
            fd: None,
        }
    }

    #[test]
    fn argv_forms() {
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        assert_eq!(
            argv(
                &run(CommandForm::Exec(vec!["a".into(), "b".into()]), vec![]),
                &sh
            ),
            ["a", "b"]
        );
        assert_eq!(
            argv(&run(CommandForm::Shell("echo hi".into()), vec![]), &sh),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(
            argv(
                &run(
                    CommandForm::Shell("<<EOF".into()),
                    vec![doc("EOF", "echo a\necho b\n")]
                ),
                &sh
            ),
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        assert_eq!(
            argv(
                &run(
                    CommandForm::Shell("cat <<EOF > /x".into()),
                    vec![doc("EOF", "data\n")]
                ),
                &sh
            ),
            ["/bin/sh", "-c", "cat <<EOF > /x\ndata\nEOF"]
        );
    }
}
