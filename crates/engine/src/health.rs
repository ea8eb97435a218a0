//! Health checks: docker's HEALTHCHECK and `--health-*`. The container's
//! `kontti-supervisor` keeps the time: an interval after the container
//! started, and an interval after each check ended, it runs the one-shot
//! `kontti container health-check ID` ([`Engine::health_check`]), which
//! runs the check through `exec`, kills it (and what it started) past its
//! timeout, and keeps the result in `R/containers/<id>/health.json`, which
//! `ps` and `inspect` show, with a `health_status: STATUS` event on each
//! change. No process of its own lives between checks.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::container::{ContainerRecord, Status};
use crate::error::{EngineError, Result};
use crate::exec::ExecRequest;
use crate::lifecycle::Engine;
use crate::options::HealthConfig;

const FILE: &str = "health.json";
const DEFAULT_MS: u64 = 30_000;
/// The shortest interval and timeout.
const MIN_MS: u64 = 100;
const LOG_ENTRIES: usize = 5;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthLog {
    /// When it started, RFC 3339.
    #[serde(rename = "Start")]
    pub start: String,
    /// When it ended.
    #[serde(rename = "End")]
    pub end: String,
    /// Its exit code (-1: timed out or could not run).
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    /// Its output (truncated to 4 KiB).
    #[serde(rename = "Output")]
    pub output: String,
}

/// A container's health, as `inspect` shows it under `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    #[serde(rename = "Status")]
    pub status: String,
    /// Failed checks in a row.
    #[serde(rename = "FailingStreak")]
    pub failing_streak: u32,
    /// The last few checks.
    #[serde(rename = "Log")]
    pub log: Vec<HealthLog>,
}

/// The check to run for a container: the flags over the image's
/// HEALTHCHECK; `None` without a check or with `--no-healthcheck`.
pub fn effective(
    flags: Option<&HealthConfig>,
    no_healthcheck: bool,
    image: Option<&kontti_image::Healthcheck>,
) -> Option<HealthConfig> {
    if no_healthcheck {
        return None;
    }
    let ms = |ns: Option<i64>| ns.filter(|n| *n > 0).map(|n| (n / 1_000_000) as u64);
    let mut h = match image {
        Some(i) => HealthConfig {
            test: i.test.clone().unwrap_or_default(),
            interval_ms: ms(i.interval),
            timeout_ms: ms(i.timeout),
            retries: i.retries.filter(|r| *r > 0).map(|r| r as u32),
            start_period_ms: ms(i.start_period),
        },
        None => HealthConfig {
            test: Vec::new(),
            interval_ms: None,
            timeout_ms: None,
            retries: None,
            start_period_ms: None,
        },
    };
    if let Some(f) = flags {
        if !f.test.is_empty() {
            h.test = f.test.clone();
        }
        h.interval_ms = f.interval_ms.or(h.interval_ms);
        h.timeout_ms = f.timeout_ms.or(h.timeout_ms);
        h.retries = f.retries.or(h.retries);
        h.start_period_ms = f.start_period_ms.or(h.start_period_ms);
    }
    match h.test.first().map(String::as_str) {
        Some("CMD") if h.test.len() > 1 => Some(h),
        Some("CMD-SHELL") if h.test.len() == 2 => Some(h),
        _ => None,
    }
}

fn now() -> String {
    kontti_runtime::state::now_rfc3339()
}

/// Milliseconds since the epoch of an RFC 3339 time (its fraction kept).
fn millis_of(t: &str) -> Option<u64> {
    let secs = u64::try_from(kontti_image::time::parse_rfc3339(t)?).ok()?;
    let frac: String = t
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|f| f.chars().take_while(char::is_ascii_digit).take(3).collect())
        .unwrap_or_default();
    let ms = format!("{frac:0<3}").parse::<u64>().unwrap_or(0);
    Some(secs * 1000 + ms)
}

impl Engine {
    /// The health of a container with a check, if it has been started.
    pub fn health(&self, id: &str) -> Option<Health> {
        let p = self.containers().dir_of(id).join(FILE);
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    }

    fn save_health(&self, id: &str, h: &Health) -> Result<()> {
        let dir = self.containers().dir_of(id);
        let (p, tmp) = (dir.join(FILE), dir.join(".health.json.tmp"));
        let bytes = serde_json::to_vec(h).map_err(|e| EngineError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &p))
            .map_err(|e| EngineError::io("write", &p, e))
    }

    /// The supervisor's health timer for a container about to start: the
    /// one-shot check command (`kontti ... container health-check ID`) and
    /// the interval in milliseconds. Writes the `starting` state. `None`
    /// without a check or without the engine's command.
    pub(crate) fn health_timer(
        &self,
        rec: &ContainerRecord,
    ) -> Option<(PathBuf, Vec<String>, u64)> {
        let (Some(cfg), Some((program, args))) = (&rec.options.health, &self.exit_command) else {
            return None;
        };
        let h = Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        };
        if let Err(e) = self.save_health(&rec.id, &h) {
            tracing::warn!(error = %e, "health state");
            return None;
        }
        // the exit command's arguments end with "cleanup"
        let mut a: Vec<String> = args.clone();
        a.truncate(a.len().saturating_sub(1));
        a.extend(["health-check".into(), rec.id.clone()]);
        let interval = cfg.interval_ms.unwrap_or(DEFAULT_MS).max(MIN_MS);
        Some((program.clone(), a, interval))
    }

    /// Runs one health check of a running container and records the
    /// result (the container's supervisor runs this every interval, one at
    /// a time). Nothing happens while it is paused or not running.
    pub fn health_check(&self, id: &str) -> Result<()> {
        let rec = self.inspect(id)?;
        let _span = tracing::info_span!("health", container = %rec.short_id()).entered();
        let Some(cfg) = rec.options.health.clone() else {
            return Ok(());
        };
        if rec.state.status != Status::Running {
            return Ok(());
        }
        let run = rec.state.started_at.clone();
        let timeout = Duration::from_millis(cfg.timeout_ms.unwrap_or(DEFAULT_MS).max(MIN_MS));
        let retries = cfg.retries.unwrap_or(3).max(1);
        let grace_ms = cfg.start_period_ms.unwrap_or(0);
        let args: Vec<String> = match cfg.test[0].as_str() {
            "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), cfg.test[1].clone()],
            _ => cfg.test[1..].to_vec(),
        };
        let start = now();
        let (code, output) = self.check_once(&rec.id, &args, timeout);
        let in_start_period = match (run.as_deref().and_then(millis_of), millis_of(&start)) {
            (Some(began), Some(at)) => at.saturating_sub(began) < grace_ms,
            _ => false,
        };
        // under the container's lock: a restart or removal meanwhile wins
        let _lock = match self.containers().lock(&rec.id) {
            Ok(l) => l,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let now_rec = match self.containers().load(&rec.id) {
            Ok(r) => self.view(r),
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if now_rec.state.started_at != run || !now_rec.state.status.is_live() {
            return Ok(());
        }
        let mut h = self.health(&rec.id).unwrap_or(Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        });
        let before = h.status.clone();
        if code == 0 {
            h.failing_streak = 0;
            h.status = "healthy".into();
        } else if !in_start_period || h.status != "starting" {
            h.failing_streak += 1;
            if h.failing_streak >= retries {
                h.status = "unhealthy".into();
            }
        }
        h.log.push(HealthLog {
            start,
            end: now(),
            exit_code: code,
            output,
        });
        if h.log.len() > LOG_ENTRIES {
            h.log.remove(0);
        }
        self.save_health(&rec.id, &h)?;
        if h.status != before {
            crate::events::record(
                self.root(),
                &now_rec,
                &format!("health_status: {}", h.status),
                &[],
            );
        }
        Ok(())
    }

    /// Runs one check; (exit code, output). -1 when it timed out or could
    /// not run.
    fn check_once(&self, id: &str, args: &[String], timeout: Duration) -> (i32, String) {
        let req = ExecRequest {
            args: args.to_vec(),
            ..ExecRequest::default()
        };
        let session = match self.exec(id, &req) {
            Ok(s) => s,
            Err(e) => return (-1, e.to_string()),
        };
        let client = match crate::attach::connect(&session.socket) {
            Ok(c) => c,
            Err(e) => {
                session.remove();
                return (-1, e.to_string());
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let code = crate::attach::pump(client, None, &mut out, &mut err);
            out.extend_from_slice(&err);
            let _ = tx.send((code, out));
        });
        let r = match rx.recv_timeout(timeout) {
            Ok((Ok(Some(code)), mut out)) => {
                out.truncate(4096);
                (code, String::from_utf8_lossy(&out).into_owned())
            }
            Ok((r, _)) => (
                -1,
                format!("health check ended without an exit code: {r:?}"),
            ),
            Err(_) => {
                // the check and whatever it started in the container go;
                // its supervisor then reaps them and ends
                kill_check(session.supervisor_pid);
                let _ = rx.recv_timeout(Duration::from_secs(2));
                (
                    -1,
                    format!("Health check exceeded timeout ({})", go_duration(timeout)),
                )
            }
        };
        let _ = std::io::stderr().flush();
        session.remove();
        r
    }
}

/// Kills a timed-out check: its exec supervisor leads a process group
/// (it called `setsid`) that the check process and the children it starts
/// in the container belong to. Every member but the supervisor is killed,
/// so that the supervisor, their subreaper, reaps them and ends as after
/// any exit (killed with them, it would leave them to the host's init).
/// Only a group whose leader is still that supervisor is touched.
fn kill_check(supervisor_pid: i32) {
    if supervisor_pid <= 0 || process_group_of(supervisor_pid) != Some(supervisor_pid) {
        return;
    }
    let is_supervisor = std::fs::read(format!("/proc/{supervisor_pid}/cmdline"))
        .is_ok_and(|c| c.windows(17).any(|w| w == b"kontti-supervisor"));
    if !is_supervisor {
        return;
    }
    // a member may fork while we look: look again until none is left
    for _ in 0..50 {
        let members = group_members(supervisor_pid);
        if members.is_empty() {
            return;
        }
        for m in members {
            if let Some(pid) = rustix::process::Pid::from_raw(m)
                && let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::KILL)
                && e != rustix::io::Errno::SRCH
            {
                tracing::warn!(error = %e, pid = m, "kill a timed-out health check");
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(
        pgid = supervisor_pid,
        "a timed-out health check keeps forking"
    );
}

/// The live processes of group `pgid` other than its leader.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| *p != pgid && process_group_of(*p) == Some(pgid))
        .collect()
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // a zombie is dead already (its group id stays until it is reaped)
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

/// A duration as Go prints it (`1s`, `1.5s`, `500ms`, `2m0s`), as docker's
/// health messages show it.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (m, rest) = (ms / 60_000, ms % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let s = format!("{}.{:03}", rest / 1000, rest % 1000);
        format!("{}s", s.trim_end_matches('0'))
    };
    match (m / 60, m % 60) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_image_and_none_disables() {
        let image = kontti_image::Healthcheck {
            test: Some(vec!["CMD".into(), "true".into()]),
            interval: Some(5_000_000_000),
            retries: Some(4),
            ..Default::default()
        };
        let h = effective(None, false, Some(&image)).unwrap();
        assert_eq!((h.interval_ms, h.retries), (Some(5000), Some(4)));
        let flags = HealthConfig {
            test: vec!["CMD-SHELL".into(), "exit 0".into()],
            interval_ms: Some(100),
            timeout_ms: None,
            retries: None,
            start_period_ms: None,
        };
        let h = effective(Some(&flags), false, Some(&image)).unwrap();
        assert_eq!(
            (h.test[0].as_str(), h.interval_ms, h.retries),
            ("CMD-SHELL", Some(100), Some(4))
        );
        assert!(effective(Some(&flags), true, Some(&image)).is_none());
        let none = kontti_image::Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(effective(None, false, Some(&none)).is_none());
        assert_eq!(
            crate::options::parse_duration_ms("x", "1.5s").unwrap(),
            1500
        );
        assert_eq!(
            crate::options::parse_duration_ms("x", "200ms").unwrap(),
            200
        );
        assert!(crate::options::parse_duration_ms("x", "soon").is_err());
    }

    #[test]
    fn start_times_keep_their_milliseconds() {
        assert_eq!(millis_of("1970-01-01T00:00:01.250000000Z"), Some(1250));
        assert_eq!(millis_of("1970-01-01T00:00:02Z"), Some(2000));
        assert_eq!(millis_of("1970-01-01T00:00:02.5Z"), Some(2500));
        assert_eq!(millis_of("soon"), None);
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(500)), "500ms");
        assert_eq!(go_duration(ms(120_000)), "2m0s");
        assert_eq!(go_duration(ms(3_725_250)), "1h2m5.25s");
        assert!(process_group_of(std::process::id() as i32).is_some());
    }
}
