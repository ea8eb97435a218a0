//! Memory of an idle container's supervisor: `kontti-supervisor` beside
//! podman's `conmon`, each supervising a busybox `sleep` (no network), in
//! one run. Prints VmRSS with its anonymous and file-backed parts, and PSS.
//!
//! Build the release binary first, then run as root:
//! `cargo build --release -p kontti-supervisor --bins --examples &&
//!  target/release/examples/idle_rss`
#![allow(clippy::disallowed_macros)]

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kontti_supervisor::spawn::{self, SupervisorCommand};

const RUNS: usize = 3;
const IMAGE: &str = "localhost/kontti-rss-busybox:latest";

fn memory(pid: i32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
            .unwrap_or_default()
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let pss = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
        .unwrap_or_default();
    Ok(format!(
        "{} kB (anon {} kB, file {} kB, PSS {pss} kB)",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    ))
}

fn kontti(run: usize) -> Result<String> {
    let bundle = kontti_testutil::Bundle::new(&["sleep", "1000"])?;
    let root = tempfile::Builder::new().prefix("kontti-rss-").tempdir()?;
    let state = root.path().join("state");
    std::fs::create_dir(&state)?;
    let id = format!("kontti-rss-{}-{run}", std::process::id());
    let runtime_root = root.path().join("runtime");
    let log = state.join("container.log");
    let c = SupervisorCommand::new(&id, bundle.path(), &runtime_root, &state, &log);
    if !c.binary.is_file() {
        bail!(
            "{} is missing: build it with --release first",
            c.binary.display()
        );
    }
    let ready = c.spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    let m = memory(ready.supervisor_pid);
    kontti_runtime::ops::kill(&runtime_root, &id, libc::SIGKILL, false)?;
    while state.join("supervisor.pid").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Result<Podman> {
        let dir = tempfile::Builder::new()
            .prefix("kontti-rss-podman-")
            .tempdir()?;
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             netns = \"none\"\nlog_driver = \"k8s-file\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )?;
        let p = Podman { dir };
        let tar = p.dir.path().join("rootfs.tar");
        kontti_testutil::write_rootfs_tar(&tar)?;
        p.run(&["import", tar.to_str().context("path")?, IMAGE])?;
        Ok(p)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let d = self.dir.path();
        let out = Command::new("podman")
            .current_dir(d)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("HOME", d)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "vfs", "--tmpdir"])
            .arg(d.join("tmp"))
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "podman {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn conmon(&self) -> Result<String> {
        let args = [
            "run",
            "-d",
            "--pull",
            "never",
            "--network",
            "none",
            IMAGE,
            "sleep",
            "1000",
        ];
        let id = self.run(&args)?;
        std::thread::sleep(Duration::from_secs(1));
        let pid: i32 = self
            .run(&["inspect", "--format", "{{.State.ConmonPid}}", &id])?
            .parse()
            .context("conmon pid")?;
        let m = memory(pid);
        self.run(&["rm", "-f", "-t", "0", &id])?;
        m
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["system", "reset", "--force"]);
    }
}

fn main() -> Result<()> {
    kontti_testutil::require_root();
    println!("supervisor binary: {}", spawn::locate().display());
    let podman = Podman::new()?;
    for run in 0..RUNS {
        println!("run {run}: kontti-supervisor {}", kontti(run)?);
        println!("run {run}: conmon            {}", podman.conmon()?);
    }
    Ok(())
}
