//! Stopping, killing, removing and other operations on existing
//! containers.

use std::time::{Duration, Instant};

use crate::container::{self, ContainerRecord, Status};
use crate::error::{EngineError, Result};
use crate::lifecycle::{DEFAULT_STOP_TIMEOUT, EXIT_FILE, Engine};
use crate::volume::Volumes;

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

impl Engine {
    /// Sends `signal` to the container's init.
    pub fn kill(&self, what: &str, signal: i32) -> Result<()> {
        let id = self.containers().resolve(what)?;
        let rec = self.view(self.containers().load(&id)?);
        if !rec.state.status.is_live() {
            return Err(EngineError::WrongState {
                id: rec.name,
                status: rec.state.status.to_string(),
                reason: "it is not running",
            });
        }
        kontti_runtime::ops::kill(&self.runtime_root(), &id, signal, false)?;
        crate::events::record(self.root(), &rec, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    fn wait_exit_file(&self, id: &str, timeout: Duration) -> bool {
        let path = self.dir(id).join(EXIT_FILE);
        let deadline = Instant::now() + timeout;
        loop {
            // the exit command may have consumed exit.json already
            let exited = path.exists()
                || match self.containers().load(id) {
                    Ok(rec) => !rec.state.status.is_live(),
                    Err(_) => true,
                };
            if exited {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep_ms(20);
        }
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout`.
    /// A container that is not running is left as it is.
    pub fn stop(&self, what: &str, timeout: Option<Duration>) -> Result<ContainerRecord> {
        let id = self.containers().resolve(what)?;
        let (signal, timeout) = {
            let _lock = self.containers().lock(&id)?;
            let mut rec = self.containers().load(&id)?;
            self.reap_locked(&mut rec)?;
            if rec.state.status == Status::Restarting {
                rec.state.status = Status::Exited;
                rec.state.stopped_by_user = true;
                self.containers().save(&rec)?;
                return Ok(rec);
            }
            if !rec.state.status.is_live() {
                return Ok(rec);
            }
            rec.state.stopped_by_user = true;
            self.containers().save(&rec)?;
            if rec.state.status == Status::Paused {
                let _ = kontti_runtime::ops::resume(&self.runtime_root(), &id);
            }
            let t = timeout
                .or(rec
                    .options
                    .stop_timeout
                    .map(|s| Duration::from_secs(s.into())))
                .unwrap_or(DEFAULT_STOP_TIMEOUT);
            (rec.stop_signal, t)
        };
        let runtime = self.runtime_root();
        if let Err(e) = kontti_runtime::ops::kill(&runtime, &id, signal, false) {
            tracing::debug!(error = %e, "stop signal");
        }
        if !self.wait_exit_file(&id, timeout) {
            tracing::info!(container = %&id[..12], "stop timeout: SIGKILL");
            if let Err(e) = kontti_runtime::ops::kill(&runtime, &id, libc::SIGKILL, true) {
                tracing::debug!(error = %e, "SIGKILL");
            }
            self.wait_exit_file(&id, Duration::from_secs(10));
        }
        let _lock = self.containers().lock(&id)?;
        let mut rec = self.containers().load(&id)?;
        self.reap_locked(&mut rec)?;
        crate::events::record(self.root(), &rec, "stop", &[]);
        Ok(rec)
    }

    /// `restart`: stop, then start.
    pub fn restart(&self, what: &str, timeout: Option<Duration>) -> Result<ContainerRecord> {
        self.stop(what, timeout)?;
        self.start(what, false)
    }

    /// Waits until the container is not running; returns its exit code.
    pub fn wait(&self, what: &str) -> Result<i32> {
        let id = self.containers().resolve(what)?;
        let mut last = 0;
        loop {
            match self.containers().load(&id) {
                Ok(rec) => {
                    let rec = self.view(rec);
                    last = rec.state.exit_code;
                    if matches!(rec.state.status, Status::Exited | Status::Created) {
                        return Ok(last);
                    }
                }
                Err(EngineError::NotFound(_)) => return Ok(last),
                Err(e) => return Err(e),
            }
            sleep_ms(50);
        }
    }

    /// Removes a container; a running one only with `force` (killed).
    /// With `volumes`, its anonymous volumes go too.
    pub fn remove(&self, what: &str, force: bool, volumes: bool) -> Result<String> {
        let id = self.containers().resolve(what)?;
        let _span = tracing::info_span!("remove", container = %&id[..12]).entered();
        let killed = {
            let _lock = self.containers().lock(&id)?;
            let mut rec = self.containers().load(&id)?;
            self.reap_locked(&mut rec)?;
            let live = rec.state.status.is_live();
            if live {
                if !force {
                    return Err(EngineError::WrongState {
                        id: rec.name.clone(),
                        status: rec.state.status.to_string(),
                        reason: "stop the container before removing it, or use --force",
                    });
                }
                rec.state.stopped_by_user = true;
                self.containers().save(&rec)?;
                let runtime = self.runtime_root();
                if rec.state.status == Status::Paused {
                    let _ = kontti_runtime::ops::resume(&runtime, &id);
                }
                if let Err(e) = kontti_runtime::ops::kill(&runtime, &id, libc::SIGKILL, true) {
                    tracing::debug!(error = %e, "SIGKILL");
                }
            }
            live
        };
        if killed {
            self.wait_exit_file(&id, Duration::from_secs(10));
        }
        let _names = self.containers().lock_names()?;
        let _lock = self.containers().lock(&id)?;
        let mut rec = self.containers().load(&id)?;
        self.reap_locked(&mut rec)?;
        if rec.state.status.is_live() {
            return Err(EngineError::WrongState {
                id: rec.name.clone(),
                status: rec.state.status.to_string(),
                reason: "it did not exit after SIGKILL",
            });
        }
        rec.state.status = Status::Removing;
        self.containers().save(&rec)?;
        self.tear_down(&mut rec);
        match kontti_runtime::ops::delete(&self.runtime_root(), &id, true) {
            Ok(()) | Err(kontti_runtime::RuntimeError::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, "runtime delete"),
        }
        if let Some(parent) = &rec.options.cgroup_parent {
            prune_cgroup_parent(parent);
        }
        let sn = self.snapshotter()?;
        match sn.remove(&rec.snapshot) {
            Ok(()) | Err(kontti_image::snapshot::SnapshotError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.remove_short_dir(&id);
        // renamed away first: a process about to take the container's lock
        // (its exit command) then finds nothing instead of recreating the
        // lock file inside a directory being deleted
        let dir = self.dir(&id);
        let trash = self.containers().dir_of(&format!(".removing-{id}"));
        std::fs::rename(&dir, &trash).map_err(|e| EngineError::io("remove", &dir, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| EngineError::io("remove", &trash, e))?;
        let vols = Volumes::open(&self.root);
        for v in &rec.volumes {
            if let Err(e) = vols.release(v, &id) {
                tracing::warn!(volume = %v, error = %e, "release");
            }
        }
        if volumes {
            for v in &rec.anonymous_volumes {
                if let Err(e) = vols.remove(v, false) {
                    tracing::warn!(volume = %v, error = %e, "remove anonymous volume");
                }
            }
        }
        crate::events::record(self.root(), &rec, "destroy", &[]);
        tracing::info!("removed");
        Ok(id)
    }

    /// Freezes a running container.
    pub fn pause(&self, what: &str) -> Result<()> {
        self.set_paused(what, true)
    }

    /// Thaws a paused container.
    pub fn unpause(&self, what: &str) -> Result<()> {
        self.set_paused(what, false)
    }

    fn set_paused(&self, what: &str, pause: bool) -> Result<()> {
        let id = self.containers().resolve(what)?;
        let _lock = self.containers().lock(&id)?;
        let mut rec = self.containers().load(&id)?;
        self.reap_locked(&mut rec)?;
        let (want, then) = if pause {
            (Status::Running, Status::Paused)
        } else {
            (Status::Paused, Status::Running)
        };
        if rec.state.status != want {
            return Err(EngineError::WrongState {
                id: rec.name.clone(),
                status: rec.state.status.to_string(),
                reason: if pause {
                    "only a running container can be paused"
                } else {
                    "it is not paused"
                },
            });
        }
        if pause {
            kontti_runtime::ops::pause(&self.runtime_root(), &id)?;
        } else {
            kontti_runtime::ops::resume(&self.runtime_root(), &id)?;
        }
        rec.state.status = then;
        self.containers().save(&rec)?;
        crate::events::record(
            self.root(),
            &rec,
            if pause { "pause" } else { "unpause" },
            &[],
        );
        Ok(())
    }

    /// Renames a container.
    pub fn rename(&self, what: &str, new_name: &str) -> Result<()> {
        if !container::valid_name(new_name) {
            return Err(EngineError::BadName(new_name.to_owned()));
        }
        let _names = self.containers().lock_names()?;
        let id = self.containers().resolve(what)?;
        if let Some(other) = self.containers().by_name(new_name)?
            && other != id
        {
            return Err(EngineError::NameInUse {
                name: new_name.to_owned(),
                id: other[..12].to_owned(),
            });
        }
        let _lock = self.containers().lock(&id)?;
        let mut rec = self.containers().load(&id)?;
        let old = std::mem::replace(&mut rec.name, new_name.to_owned());
        self.containers().save(&rec)?;
        crate::events::record(self.root(), &rec, "rename", &[("oldName", old)]);
        Ok(())
    }

    /// The host pids of a running container's processes.
    pub fn top(&self, what: &str) -> Result<Vec<i32>> {
        let id = self.containers().resolve(what)?;
        let rec = self.view(self.containers().load(&id)?);
        if !rec.state.status.is_live() {
            return Err(EngineError::WrongState {
                id: rec.name,
                status: rec.state.status.to_string(),
                reason: "it is not running",
            });
        }
        Ok(kontti_runtime::ops::pids(&self.runtime_root(), &id)?)
    }

    /// `container prune`: removes every stopped container; returns their ids.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for rec in self.list()? {
            if matches!(rec.state.status, Status::Exited | Status::Created) {
                match self.remove(&rec.id, false, false) {
                    Ok(id) => removed.push(id),
                    Err(EngineError::WrongState { .. } | EngineError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    /// Resource use of a running container's cgroup.
    pub fn stats(&self, what: &str) -> Result<kontti_runtime::cgroups::CgroupStats> {
        let id = self.containers().resolve(what)?;
        let rec = self.view(self.containers().load(&id)?);
        if !rec.state.status.is_live() {
            return Err(EngineError::WrongState {
                id: rec.name,
                status: rec.state.status.to_string(),
                reason: "it is not running",
            });
        }
        let info = kontti_runtime::ops::state(&self.runtime_root(), &id)?;
        let cg = info.record.cgroup.ok_or_else(|| {
            EngineError::Unsupported(format!("container {} has no cgroup", rec.name))
        })?;
        cg.stats()
            .map_err(|e| EngineError::Runtime(kontti_runtime::RuntimeError::from(e)))
    }
}

/// Removes the `--cgroup-parent` directories once no container uses them:
/// the runtime removes a parent only with the container that created it,
/// which may not be the last one in it. Best effort: a parent in use
/// (`EBUSY`, `ENOTEMPTY`) stays, and only relative parents (below
/// `kontti/`) are touched.
fn prune_cgroup_parent(parent: &str) {
    // only below kontti's own parent: an absolute parent belongs to whoever made it
    let rel = parent.trim_end_matches('/');
    if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c == ".") {
        return;
    }
    let base = std::path::Path::new("/sys/fs/cgroup");
    let prefix = std::path::PathBuf::from(kontti_runtime::cgroups::DEFAULT_PARENT);
    let mut roots = vec![base.to_owned()];
    if let Ok(rd) = std::fs::read_dir(base) {
        roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for root in roots {
        // deepest first: a/b/c, a/b, a
        let comps: Vec<&str> = rel.split('/').collect();
        for n in (1..=comps.len()).rev() {
            let dir = root.join(&prefix).join(comps[..n].join("/"));
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
}
