//! After a reboot (or a crash of supervisors): records are brought in line
//! with reality and containers whose restart policy says so are started
//! again. `kontti container restore` runs this at boot
//! (`crates/engine/systemd/kontti-restore.service`).

use crate::container::Status;
use crate::error::Result;
use crate::lifecycle::Engine;
use crate::options::RestartPolicy;

/// What [`Engine::restore`] did with one container.
#[derive(Debug)]
pub struct Restored {
    /// The container id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `Ok(true)` started again, `Ok(false)` left stopped, `Err` why a start failed.
    pub outcome: std::result::Result<bool, String>,
}

impl Engine {
    /// Networks first (bridges, nft rules, DNS responders), then every
    /// container: one whose supervisor is gone is recorded as exited and
    /// torn down (mounts, pinned namespace, runtime state); then those with
    /// `--restart always`, or `unless-stopped` and not stopped by the user,
    /// are started. Running containers are left alone, so running it twice
    /// does nothing more.
    pub fn restore(&self) -> Result<Vec<Restored>> {
        if let Err(e) = crate::network::restore(self.root()) {
            tracing::warn!(error = %e, "network restore");
        }
        let mut out = Vec::new();
        for id in self.containers().ids()? {
            let _lock = match self.containers().lock(&id) {
                Ok(l) => l,
                Err(crate::EngineError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let mut rec = self.containers().load(&id)?;
            self.reap_locked(&mut rec)?;
            if rec.state.status == Status::Restarting && !self.cleanup_running(&id) {
                rec.state.status = Status::Exited;
                self.containers().save(&rec)?;
            }
            let wanted = match rec.options.restart {
                RestartPolicy::Always => true,
                RestartPolicy::UnlessStopped => !rec.state.stopped_by_user,
                _ => false,
            };
            let outcome = if wanted && rec.state.status == Status::Exited {
                rec.restart_count = 0;
                self.start_locked(&mut rec, false)
                    .map(|()| true)
                    .map_err(|e| e.to_string())
            } else {
                Ok(false)
            };
            out.push(Restored {
                id: rec.id.clone(),
                name: rec.name.clone(),
                outcome,
            });
        }
        Ok(out)
    }

    /// Whether an exit command for `id` is alive (in its back-off).
    fn cleanup_running(&self, id: &str) -> bool {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return false;
        };
        rd.flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("\0cleanup\0") && c.contains(id)
            })
        })
    }
}
