//! A tmux server of a test's own (its socket in the test's directory) that
//! drives commands on a real terminal: keys in, the screen out.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server on its own socket; killed on drop.
pub struct Tmux {
    pub socket: PathBuf,
}

impl Tmux {
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }
    pub fn run(&self, args: &[&str]) {
        let st = self.cmd().args(args).status().expect("tmux is installed");
        assert!(st.success(), "tmux {args:?} failed");
    }
    /// A new session `t` running `command` in an 80x24 window.
    pub fn session(&self, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
    }
    pub fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "t"];
        a.extend_from_slice(keys);
        self.run(&a);
    }
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Waits until the screen has `n` lines equal to `line`.
    pub fn wait_lines(&self, line: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if s.lines().filter(|l| l.trim_end() == line).count() >= n {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {n}x {line:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

pub fn wait_file(p: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with('\n')
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
