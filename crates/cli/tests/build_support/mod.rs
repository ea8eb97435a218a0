//! Shared by the `build_*` tests: a state root with a busybox base image,
//! running the real `kontti build`, and reading what it produced.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kontti_image::unpack::{WhiteoutMode, apply_layer, decompressed};
use kontti_image::{ContentStore, Image, ImageConfigFile};

/// A test's own state root, with `busybox` imported.
pub struct Kontti {
    pub dir: tempfile::TempDir,
    /// The pids of every kontti process run (their step keys contain them).
    pub pids: std::cell::RefCell<Vec<u32>>,
}

pub fn runtime() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_kontti"));
    let runc = exe.with_file_name("kontti-runc");
    assert!(
        runc.is_file(),
        "{} is missing: build it first (cargo build -p kontti-runc)",
        runc.display()
    );
    runc
}

impl Kontti {
    pub fn new() -> Kontti {
        kontti_testutil::require_root();
        let k = Kontti {
            dir: tempfile::Builder::new()
                .prefix("kontti-build-")
                .tempdir()
                .unwrap(),
            pids: Default::default(),
        };
        let tar = k.dir.path().join("rootfs.tar");
        kontti_testutil::write_rootfs_tar(&tar).unwrap();
        k.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        k
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kontti"));
        c.arg("--root").arg(self.root());
        c.env("KONTTI_RUNC", runtime());
        c.env_remove("SOURCE_DATE_EPOCH");
        // Never the host's resolver in a test's RUN steps.
        c.env("KONTTI_BUILD_RESOLV_CONF", "none");
        c
    }

    pub fn run_cmd(&self, mut c: Command) -> Output {
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.pids.borrow_mut().push(child.id());
        child.wait_with_output().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        self.run_cmd(c)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kontti {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A context directory `name` with `files` (path, content).
    pub fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.dir.path().join(name);
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (p, content) in files {
            let path = ctx.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        ctx
    }

    /// `kontti build` with `extra` arguments; returns the output.
    pub fn build(&self, ctx: &Path, extra: &[&str]) -> Output {
        let mut c = self.cmd();
        c.arg("build").arg("--progress=plain").args(extra).arg(ctx);
        self.run_cmd(c)
    }

    /// A build that must succeed; returns (image id, stderr).
    pub fn build_ok(&self, ctx: &Path, extra: &[&str]) -> (String, String) {
        let out = self.build(ctx, extra);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kontti build failed: {err}");
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), err)
    }

    /// A build that must fail with `code`; returns its stderr.
    pub fn build_fails(&self, ctx: &Path, extra: &[&str], code: i32) -> String {
        let out = self.build(ctx, extra);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "unexpected exit: {err}");
        err
    }

    pub fn store(&self) -> ContentStore {
        ContentStore::open(self.root().join("content")).unwrap()
    }

    pub fn image(&self, name: &str) -> Image {
        let r = kontti_core::ImageRef::parse(name).unwrap();
        Image::open(&self.store(), &r).unwrap()
    }

    pub fn config(&self, name: &str) -> ImageConfigFile {
        self.image(name).config
    }

    /// The uncompressed tars of the image's layers.
    pub fn layer_tars(&self, name: &str) -> Vec<Vec<u8>> {
        let store = self.store();
        self.image(name)
            .layers()
            .iter()
            .map(|l| {
                let mut out = Vec::new();
                decompressed(store.open_blob(&l.digest).unwrap())
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
                out
            })
            .collect()
    }

    /// The entry names of layer `n` (from the top when negative).
    pub fn layer_entries(&self, name: &str, n: isize) -> Vec<String> {
        let tars = self.layer_tars(name);
        let i = if n < 0 {
            (tars.len() as isize + n) as usize
        } else {
            n as usize
        };
        tar::Archive::new(tars[i].as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect()
    }

    /// The image's filesystem, every layer applied, in a new directory.
    pub fn flatten(&self, name: &str) -> tempfile::TempDir {
        let dest = tempfile::tempdir().unwrap();
        let store = self.store();
        for l in self.image(name).layers() {
            apply_layer(
                store.open_blob(&l.digest).unwrap(),
                dest.path(),
                WhiteoutMode::Remove,
                None,
            )
            .unwrap();
        }
        dest
    }

    /// Asserts that the builds left nothing behind: no mount under the
    /// test's directory, no cgroup or runtime state of a step, no step
    /// directory.
    pub fn assert_clean(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&dir))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        for pid in self.pids.borrow().iter() {
            let snap = kontti_testutil::HostSnapshot::take(&format!("build-{pid}-"));
            assert!(snap.cgroups.is_empty(), "cgroups left: {:?}", snap.cgroups);
        }
        let runs = self.root().join("builder/runs");
        let left: Vec<_> = fs::read_dir(&runs)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "step directories left: {left:?}");
        let runc: Vec<_> = fs::read_dir(self.root().join("builder/runc"))
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(runc.is_empty(), "containers left: {runc:?}");
    }
}
