//! Control groups for containers, on cgroup v1, hybrid and v2 hosts.
//!
//! A [`Cgroup`] is one container's cgroup: the same relative path in every
//! mounted hierarchy (each v1 controller hierarchy, `name=systemd`, and the
//! cgroup2 mount when there is one). It is created with the intermediate
//! directories a `cgroupsPath` needs, remembers which of those it created,
//! and on [`Cgroup::destroy`] removes exactly those, never a shared parent.
//!
//! [`Cgroup::apply`] maps `linux.resources` to file writes through one code
//! path for both versions (see `resources.rs`); only file names and value
//! encodings differ. Freezing uses the v1 freezer or v2 `cgroup.freeze`;
//! killing uses v2 `cgroup.kill` when the cgroup has a cgroup2 directory and
//! signals every member otherwise.
//!
//! Device rules are written to `devices.allow`/`devices.deny` on v1 and
//! compiled to an eBPF program attached to the cgroup on v2.
//!
//! What it does not do: systemd-managed cgroups (`slice:prefix:name` paths
//! are refused).

mod devices_bpf;
mod error;
mod layout;
mod resources;
mod stats;

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use error::CgroupError;
pub use layout::{Hierarchy, Layout, V1Mount};
pub use resources::default_device_rules;
pub use stats::CgroupStats;

use resources::{Setting, Step, UNIFIED, Version};

/// The parent of containers' cgroups when `cgroupsPath` is unset or relative.
pub const DEFAULT_PARENT: &str = "kontti";

/// How long freeze, kill and destroy wait for the kernel.
const WAIT: Duration = Duration::from_secs(5);

/// One hierarchy's directory of a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CgroupDir {
    /// Controllers of the hierarchy; empty for cgroup2.
    controllers: Vec<String>,
    /// The hierarchy's mount point.
    mount_point: PathBuf,
    /// How many trailing components of the path this cgroup created (and so
    /// removes on destroy).
    created: usize,
}

impl CgroupDir {
    fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// A container's cgroup. Serializable, so that the runtime can keep it in
/// its state file and operate on it from a later process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    /// Path below each hierarchy's mount point (relative).
    path: PathBuf,
    dirs: Vec<CgroupDir>,
}

/// Turns an OCI `cgroupsPath` into a path relative to a hierarchy's root.
fn resolve_path(cgroups_path: Option<&str>, container_id: &str) -> Result<PathBuf, CgroupError> {
    let bad = |path: &str, reason| CgroupError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let rel = match cgroups_path {
        None | Some("") => {
            if container_id.is_empty()
                || container_id.contains('/')
                || container_id.starts_with('.')
            {
                return Err(bad(
                    container_id,
                    "the container id is not a single path component",
                ));
            }
            Path::new(DEFAULT_PARENT).join(container_id)
        }
        Some(p) if p.contains(':') => {
            return Err(bad(
                p,
                "systemd cgroup paths (slice:prefix:name) are not supported; use a cgroupfs path",
            ));
        }
        Some(p) => match p.strip_prefix('/') {
            Some(abs) => PathBuf::from(abs),
            None => Path::new(DEFAULT_PARENT).join(p),
        },
    };
    let shown = cgroups_path.unwrap_or(container_id);
    let dotted = rel
        .to_string_lossy()
        .split('/')
        .any(|c| c == "." || c == "..");
    if dotted || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(bad(shown, "it must not contain '.' or '..' components"));
    }
    if rel.as_os_str().is_empty() {
        return Err(bad(shown, "it names the root cgroup"));
    }
    Ok(rel)
}

fn write_file(path: &Path, value: &str) -> Result<(), io::Error> {
    // Never O_CREAT: a missing interface file means a missing controller.
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    write_file(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Cgroup {
    /// Creates the cgroup of `container_id` on this host. `cgroups_path`
    /// comes from the config: absolute means from each hierarchy's root,
    /// relative means under [`DEFAULT_PARENT`], `None` means
    /// `kontti/<container_id>`. Detects v1, hybrid or v2 from mountinfo.
    pub fn create(cgroups_path: Option<&str>, container_id: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::create_with(&Layout::detect()?, cgroups_path, container_id)
    }

    /// Like [`Cgroup::create`] against hierarchies laid out under `root`
    /// (see [`Layout::under_root`]): a fake tree in tests, or one hierarchy
    /// such as `/sys/fs/cgroup/unified` on its own.
    pub fn create_in(
        root: &Path,
        mode: Hierarchy,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Cgroup, CgroupError> {
        Cgroup::create_with(&Layout::under_root(root, mode)?, cgroups_path, container_id)
    }

    /// Like [`Cgroup::create`] with a given layout.
    pub fn create_with(
        layout: &Layout,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Cgroup, CgroupError> {
        let path = resolve_path(cgroups_path, container_id)?;
        let mut dirs: Vec<CgroupDir> = layout
            .v1
            .iter()
            .map(|m| CgroupDir {
                controllers: m.controllers.clone(),
                mount_point: m.mount_point.clone(),
                created: 0,
            })
            .collect();
        if let Some(u) = &layout.unified {
            dirs.push(CgroupDir {
                controllers: Vec::new(),
                mount_point: u.clone(),
                created: 0,
            });
        }
        let mut cg = Cgroup {
            hierarchy: layout.mode,
            path,
            dirs,
        };
        for i in 0..cg.dirs.len() {
            if let Err(e) = cg.make_dir(i) {
                // Leave nothing half-done.
                if let Err(cleanup) = cg.remove_dirs() {
                    tracing::warn!(error = %cleanup, "cleaning up a half-created cgroup");
                }
                return Err(e);
            }
        }
        tracing::debug!(path = %cg.path.display(), mode = ?cg.hierarchy, "created cgroup");
        Ok(cg)
    }

    /// Creates the path in hierarchy `i`, counting created components.
    fn make_dir(&mut self, i: usize) -> Result<(), CgroupError> {
        let components: Vec<_> = self.path.components().collect();
        let dir = &mut self.dirs[i];
        let mut cur = dir.mount_point.clone();
        for (depth, c) in components.iter().enumerate() {
            let parent = cur.clone();
            cur.push(c);
            match fs::create_dir(&cur) {
                Ok(()) => {
                    // Count from the first created component down to the leaf.
                    if dir.created == 0 {
                        dir.created = components.len() - depth;
                    }
                    if dir.has("cpuset") {
                        copy_cpuset(&parent, &cur)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if dir.has("cpuset") {
                        copy_cpuset(&parent, &cur)?;
                    }
                }
                Err(source) => return Err(CgroupError::Create { path: cur, source }),
            }
        }
        // On a hybrid host the unified hierarchy is used only for process
        // tracking (freeze, kill): enabling controllers there changes host
        // state other runtimes depend on (crun refuses a hybrid host whose
        // cgroup2 root delegates controllers).
        if dir.is_v2() && self.hierarchy == Hierarchy::V2 {
            enable_controllers(&dir.mount_point, &components);
        }
        Ok(())
    }

    /// The version of the host this cgroup lives on.
    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// The path below each hierarchy's root, e.g. `kontti/ctr1`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directories of this cgroup, one per hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.dirs.iter().map(|d| d.mount_point.join(&self.path))
    }

    fn v2_dir(&self) -> Option<PathBuf> {
        self.dirs
            .iter()
            .find(|d| d.is_v2())
            .map(|d| d.mount_point.join(&self.path))
    }

    fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        if self.hierarchy == Hierarchy::V2 {
            return self.v2_dir();
        }
        self.dirs
            .iter()
            .find(|d| d.has(controller))
            .map(|d| d.mount_point.join(&self.path))
    }

    /// The directory whose `cgroup.procs` lists the members.
    fn procs_dir(&self) -> Option<PathBuf> {
        if self.hierarchy == Hierarchy::V2 {
            return self.v2_dir();
        }
        ["pids", "freezer", "memory", "name=systemd"]
            .iter()
            .find_map(|c| self.controller_dir(c))
            .or_else(|| self.dirs().next())
    }

    /// Applies `resources` (create time or `update`).
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let version = match self.hierarchy {
            Hierarchy::V2 => Version::V2,
            Hierarchy::V1 | Hierarchy::Hybrid => Version::V1,
        };
        for step in resources::plan(resources, version)? {
            match step {
                Step::Write(s) => self.write_setting(&s)?,
                Step::DeviceProgram(rules) => {
                    let dir = self
                        .v2_dir()
                        .ok_or_else(|| CgroupError::ControllerMissing {
                            controller: "cgroup2".to_owned(),
                            field: "devices".to_owned(),
                        })?;
                    devices_bpf::attach(&dir, &rules)?;
                }
                Step::MemoryPair { limit, swap } => {
                    // Raising: memsw first; lowering: limit first.
                    if self.write_setting(&limit).is_err() {
                        self.write_setting(&swap)?;
                        self.write_setting(&limit)?;
                    } else {
                        self.write_setting(&swap)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn write_setting(&self, s: &Setting) -> Result<(), CgroupError> {
        let dir = if s.controller == UNIFIED {
            match self.v2_dir() {
                Some(d) if self.hierarchy == Hierarchy::V2 || d.join(&s.file).exists() => Some(d),
                _ => {
                    return Err(CgroupError::Unsupported {
                        field: format!("unified[{:?}]", s.file),
                        version: "v1",
                        reason: "the file is not available in the cgroup2 hierarchy of this host"
                            .to_owned(),
                    });
                }
            }
        } else {
            self.controller_dir(s.controller)
        };
        let missing = || CgroupError::ControllerMissing {
            controller: s.controller.to_owned(),
            field: s.field.to_owned(),
        };
        let Some(dir) = dir else {
            if s.best_effort {
                tracing::warn!(
                    controller = s.controller,
                    field = s.field,
                    "controller not mounted; setting ignored"
                );
                return Ok(());
            }
            return Err(missing());
        };
        let mut path = dir.join(&s.file);
        let mut value = s.value.as_str();
        if let Some((alt_file, alt_value)) = &s.alt
            && !path.exists()
            && dir.join(alt_file).exists()
        {
            path = dir.join(alt_file);
            value = alt_value;
        }
        match write_file(&path, value) {
            Ok(()) => {
                tracing::debug!(file = %path.display(), value, "cgroup write");
                Ok(())
            }
            Err(e) if s.best_effort => {
                tracing::warn!(file = %path.display(), value, error = %e, "best-effort cgroup setting failed");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir.is_dir() => Err(missing()),
            Err(source) => Err(CgroupError::Write {
                path,
                value: value.to_owned(),
                source,
            }),
        }
    }

    /// Moves process `pid` (and its threads) into the cgroup, in every
    /// hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(dir) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let text = read(&dir.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Freezes every process of the cgroup and waits until they are frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    /// Thaws a frozen cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        if self.hierarchy != Hierarchy::V2
            && let Some(dir) = self.controller_dir("freezer")
        {
            let state = if frozen { "FROZEN" } else { "THAWED" };
            let file = dir.join("freezer.state");
            write(&file, state)?;
            return wait_for(&file, "freezer state", |s| s.trim() == state).inspect_err(|_| {
                if frozen {
                    let _ = write_file(&file, "THAWED");
                }
            });
        }
        let dir = self
            .v2_dir()
            .ok_or_else(|| CgroupError::ControllerMissing {
                controller: "freezer".to_owned(),
                field: "(pause)".to_owned(),
            })?;
        write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        wait_for(&dir.join("cgroup.events"), "cgroup.events frozen", |s| {
            s.lines().any(|l| l.trim() == want)
        })
        .inspect_err(|_| {
            if frozen {
                let _ = write_file(&dir.join("cgroup.freeze"), "0");
            }
        })
    }

    /// Whether the cgroup is frozen (v1 freezer state or v2 cgroup.events).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        if self.hierarchy != Hierarchy::V2
            && let Some(dir) = self.controller_dir("freezer")
        {
            return Ok(read(&dir.join("freezer.state"))?.trim() == "FROZEN");
        }
        match self.v2_dir() {
            Some(dir) => Ok(read(&dir.join("cgroup.events"))?
                .lines()
                .any(|l| l.trim() == "frozen 1")),
            None => Ok(false),
        }
    }

    /// Sends `signal` to every process of the cgroup. For SIGKILL, uses v2
    /// `cgroup.kill` when available, and otherwise signals the members
    /// repeatedly until the cgroup is empty (so that a forking process
    /// cannot escape); other signals are sent once to each member.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        if signal == libc::SIGKILL
            && let Some(dir) = self.v2_dir()
            && dir.join("cgroup.kill").exists()
        {
            write(&dir.join("cgroup.kill"), "1")?;
            return self.wait_empty();
        }
        let sig =
            rustix::process::Signal::from_named_raw(signal).ok_or_else(|| CgroupError::Signal {
                pid: 0,
                signal,
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        let deadline = Instant::now() + WAIT;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in &pids {
                let Some(p) = rustix::process::Pid::from_raw(*pid) else {
                    continue;
                };
                match rustix::process::kill_process(p, sig) {
                    Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                    Err(e) => {
                        return Err(CgroupError::Signal {
                            pid: *pid,
                            signal,
                            source: e.into(),
                        });
                    }
                }
            }
            if signal != libc::SIGKILL {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Timeout {
                    what: "the cgroup to empty after SIGKILL",
                    path: self.procs_dir().unwrap_or_default(),
                });
            }
            sleep(Duration::from_millis(2));
        }
    }

    fn wait_empty(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + WAIT;
        let mut pause = Duration::from_micros(200);
        while !self.pids()?.is_empty() {
            if Instant::now() > deadline {
                return Err(CgroupError::Timeout {
                    what: "the cgroup to empty",
                    path: self.procs_dir().unwrap_or_default(),
                });
            }
            sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Removes the cgroup's directories in every hierarchy, and the parents
    /// it created, once its processes are gone (waits briefly for them).
    /// A parent that another cgroup still uses stays. Removing a cgroup that
    /// is already gone is not an error.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        if self
            .procs_dir()
            .is_some_and(|d| d.join("cgroup.procs").exists())
        {
            self.wait_empty()?;
        }
        self.remove_dirs()
    }

    fn remove_dirs(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for dir in &self.dirs {
            let mut cur = dir.mount_point.join(&self.path);
            // The leaf always belongs to this container, even if it existed.
            let count = dir.created.max(1);
            for level in 0..count {
                // Only the leaf is retried: a parent with children is busy for good.
                let removed = if level == 0 {
                    rmdir_retry(&cur)
                } else {
                    fs::remove_dir(&cur)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) if level > 0 => {
                        // A parent still in use by someone else.
                        tracing::debug!(path = %cur.display(), error = %e, "parent cgroup kept");
                        break;
                    }
                    Err(source) => {
                        first_err.get_or_insert(CgroupError::Remove {
                            path: cur.clone(),
                            source,
                        });
                        break;
                    }
                }
                if !cur.pop() {
                    break;
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Resource usage for `update`/`events --stats`.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        stats::collect(self)
    }
}

/// rmdir, retrying EBUSY for a moment: the kernel may still be tearing down
/// the last task.
fn rmdir_retry(path: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match fs::remove_dir(path) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// A new v1 cpuset cgroup has empty cpus and mems, and takes no tasks
/// until they are set; copy them from the parent.
fn copy_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        // (A fake tree may lack the file; the kernel always creates it.)
        let Ok(current) = fs::read_to_string(&own) else {
            continue;
        };
        if !current.trim().is_empty() {
            continue;
        }
        let from = read(&parent.join(file))?;
        if !from.trim().is_empty() {
            write(&own, from.trim())?;
        }
    }
    Ok(())
}

/// Enables in each ancestor of a v2 cgroup the controllers it offers, so
/// that the leaf gets their interface files. Failures are logged: a parent
/// with processes of its own cannot delegate (the "no internal processes"
/// rule), and the settings that need the controller then fail clearly.
fn enable_controllers(mount_point: &Path, components: &[Component<'_>]) {
    let mut cur = mount_point.to_owned();
    for c in components
        .iter()
        .take(components.len().saturating_sub(1))
        .map(Some)
        .chain([None])
    {
        // `None` ends the walk after the leaf's parent.
        let available = fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let enabled = fs::read_to_string(cur.join("cgroup.subtree_control")).unwrap_or_default();
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        let wanted: Vec<String> = available
            .split_whitespace()
            .filter(|c| !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        let control = cur.join("cgroup.subtree_control");
        // All at once; if the kernel refuses one, enable what it accepts.
        if !wanted.is_empty() && write_file(&control, &wanted.join(" ")).is_err() {
            for w in &wanted {
                if let Err(e) = write_file(&control, w) {
                    tracing::debug!(dir = %cur.display(), controller = %w, error = %e, "cannot enable controller");
                }
            }
        }
        match c {
            Some(c) => cur.push(c),
            None => break,
        }
    }
}

/// Polls `file` until `ok` holds for its content.
fn wait_for(file: &Path, what: &'static str, ok: impl Fn(&str) -> bool) -> Result<(), CgroupError> {
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_micros(100);
    loop {
        if ok(&read(file)?) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Timeout {
                what,
                path: file.parent().map(Path::to_owned).unwrap_or_default(),
            });
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_host;
