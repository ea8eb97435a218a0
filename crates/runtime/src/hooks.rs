//! OCI hooks: each runs with the container's state JSON on stdin, its own
//! `args` (args[0] is argv[0]) and `env`, and an optional timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::RuntimeError;

/// Runs `hooks` of `phase` in order; the first failure stops the rest.
pub fn run(
    phase: &'static str,
    hooks: Option<&Vec<Hook>>,
    state: &[u8],
) -> Result<(), RuntimeError> {
    for h in hooks.into_iter().flatten() {
        run_one(phase, h, state)?;
    }
    Ok(())
}

fn run_one(phase: &'static str, h: &Hook, state: &[u8]) -> Result<(), RuntimeError> {
    let fail = |detail: String| RuntimeError::Hook {
        phase,
        path: h.path().clone(),
        detail,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a hook that does not read its stdin is fine
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        if deadline.is_none() {
            break child.wait().map_err(|e| fail(e.to_string()))?;
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                h.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    Ok(())
}
