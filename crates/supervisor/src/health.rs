//! The health-check timer: while the container runs, the supervisor starts
//! the engine's one-shot check command (`kontti container health-check ID`)
//! an interval after the previous check ended, never two at once. The
//! command runs the check, kills it past its timeout, and records the
//! result; the supervisor only keeps time and reaps it, so a container
//! with a health check costs no process of its own between checks.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// When to run the check command next, and the one running.
#[derive(Debug)]
pub struct HealthTimer {
    program: PathBuf,
    args: Vec<String>,
    interval: Duration,
    next: Instant,
    running: Option<i32>,
}

impl HealthTimer {
    /// A timer whose first check is one interval from now.
    pub fn new(program: PathBuf, args: Vec<String>, interval: Duration) -> HealthTimer {
        HealthTimer {
            program,
            args,
            interval,
            next: Instant::now() + interval,
            running: None,
        }
    }

    /// The `poll` timeout until the next check, in milliseconds; -1 (no
    /// timeout) while a check runs: its end (SIGCHLD) sets the next one.
    pub fn poll_timeout(&self) -> i32 {
        if self.running.is_some() {
            return -1;
        }
        let left = self.next.saturating_duration_since(Instant::now());
        // rounded up: a wake-up just before the deadline would spin
        let ms = left.as_micros().div_ceil(1000);
        i32::try_from(ms).unwrap_or(i32::MAX)
    }

    /// Starts the check command if it is due and none runs.
    pub fn fire_if_due(&mut self) {
        if self.running.is_some() || Instant::now() < self.next {
            return;
        }
        let spawned = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            // reaped by the supervisor's loop (`reaped`), not through Child
            Ok(child) => self.running = i32::try_from(child.id()).ok(),
            Err(e) => {
                tracing::warn!("health check {}: {e}", self.program.display());
                self.next = Instant::now() + self.interval;
            }
        }
    }

    /// Tells the timer that child `pid` was reaped; true when it was the
    /// check command, whose end starts the next interval.
    pub fn reaped(&mut self, pid: i32) -> bool {
        if self.running != Some(pid) {
            return false;
        }
        self.running = None;
        self.next = Instant::now() + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_run_one_at_a_time_an_interval_apart() {
        let mut t = HealthTimer::new(
            PathBuf::from("/bin/true"),
            Vec::new(),
            Duration::from_millis(50),
        );
        assert!((1..=50).contains(&t.poll_timeout()));
        t.fire_if_due();
        assert!(t.running.is_none(), "fired before its time");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.poll_timeout(), 0);
        t.fire_if_due();
        let pid = t.running.expect("not started");
        assert_eq!(t.poll_timeout(), -1);
        t.fire_if_due();
        assert_eq!(t.running, Some(pid), "a second check started");
        let reaped = loop {
            if let Some((p, _)) = kontti_runtime::sys::process::try_wait_any().unwrap() {
                break p;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(reaped, pid);
        assert!(!t.reaped(pid + 1));
        assert!(t.reaped(pid));
        assert!(t.poll_timeout() > 0);
    }
}
