//! `kontti logs`: a container's CRI log (with its rotated files), the last
//! lines, lines since a time, and following the log while the container runs.

use std::time::Duration;

use kontti_supervisor::crilog::{self, Follower, LogLine};
use kontti_supervisor::timestamp::Timestamp;

use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::lifecycle::Engine;

pub use kontti_supervisor::crilog::Stream;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep following while the container runs.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
}

/// Parses `--since`: RFC 3339, Unix seconds, or a duration ago (`10s`,
/// `5m`, `2h`).
pub fn parse_since(s: &str) -> Result<Timestamp> {
    if let Some(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(Timestamp((secs * 1e9) as i128));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i128 = n.parse().map_err(|_| {
        EngineError::invalid(
            "--since",
            s,
            "use RFC 3339, Unix seconds, or a duration like 10s, 5m, 2h",
        )
    })?;
    let unit_ns: i128 = match unit {
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(EngineError::invalid(
                "--since",
                s,
                "use RFC 3339, Unix seconds, or a duration like 10s, 5m, 2h",
            ));
        }
    };
    Ok(Timestamp(Timestamp::now().0 - n * unit_ns))
}

/// Calls `out` with each log entry of container `what`, oldest first; with
/// `follow`, keeps going until the container has stopped (or `out` fails).
pub fn logs(
    engine: &Engine,
    what: &str,
    opts: &LogOptions,
    mut out: impl FnMut(&LogLine) -> std::io::Result<()>,
) -> Result<()> {
    let id = engine.containers().resolve(what)?;
    let path = engine.log_path(&id);
    let mut follower = if opts.follow {
        Some(Follower::at_end(&path)?)
    } else {
        None
    };
    let history = crilog::read_lines(&path, opts.tail, opts.since)?;
    let emit = |l: &LogLine, out: &mut dyn FnMut(&LogLine) -> std::io::Result<()>| {
        out(l).map_err(|e| EngineError::io("write logs of", &path, e))
    };
    for l in &history {
        emit(l, &mut out)?;
    }
    let Some(follower) = follower.as_mut() else {
        return Ok(());
    };
    let mut first = true;
    loop {
        // the status first, then the last poll: nothing written before the
        // exit is missed
        let done = match engine.containers().load(&id) {
            Ok(rec) => {
                let rec = engine_view(engine, &id).unwrap_or(rec);
                !rec.state.status.is_live() && rec.state.status != Status::Restarting
            }
            Err(EngineError::NotFound(_)) => true,
            Err(e) => return Err(e),
        };
        let mut lines = follower.poll()?;
        if first && !lines.is_empty() {
            first = false;
            let k = overlap(&history, &lines);
            lines.drain(..k);
        }
        for l in &lines {
            if opts.since.is_some_and(|s| l.time < s) {
                continue;
            }
            emit(l, &mut out)?;
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn engine_view(engine: &Engine, id: &str) -> Option<crate::ContainerRecord> {
    engine.inspect(id).ok()
}

/// The largest k such that the last k entries of `history` are the first
/// k of `polled` (written after the follower started, read by both).
fn overlap(history: &[LogLine], polled: &[LogLine]) -> usize {
    let max = history.len().min(polled.len());
    (1..=max)
        .rev()
        .find(|&k| history[history.len() - k..] == polled[..k])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i128, s: &str) -> LogLine {
        LogLine {
            time: Timestamp(t),
            stream: Stream::Stdout,
            partial: false,
            text: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn overlap_drops_what_history_already_showed() {
        let h = vec![line(1, "a"), line(2, "b"), line(2, "c")];
        let p = vec![line(2, "b"), line(2, "c"), line(3, "d")];
        assert_eq!(overlap(&h, &p), 2);
        assert_eq!(overlap(&h, &[line(4, "x")]), 0);
    }

    #[test]
    fn since_forms() {
        assert!(parse_since("2026-01-01T00:00:00Z").is_ok());
        assert_eq!(parse_since("10").unwrap(), Timestamp(10_000_000_000));
        let t = parse_since("5m").unwrap();
        assert!(Timestamp::now().0 - t.0 >= 300_000_000_000);
        assert!(parse_since("yesterday").is_err());
    }
}
