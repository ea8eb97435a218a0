//! Build compatibility: every case in `tests/build-compat/` (a Dockerfile and
//! its context, one directory per case; an optional `build-args` file holds
//! one `K=V` per line for `--build-arg`, an optional `target` file the stage
//! for `--target`) is built by `kontti build` and by Debian's `buildah bud
//! --format docker --layers`, from the same busybox base image, and the two
//! results must give the same image.
//!
//! Both images are exported as docker-archives (`kontti build -o
//! type=docker,dest=FILE`, checked to hold the image the build tagged;
//! `buildah push IMG docker-archive:FILE`): docker's config format keeps
//! `Healthcheck`, which the OCI config has no field for. The comparator
//! (`build-compat/compare.rs`) applies each side's layers in order
//! (whiteouts `.wh.NAME` and opaque `.wh..wh..opq` against the layers below,
//! hard links resolved to their target) into a tree of path → entry, and the
//! trees are compared on:
//! paths, file types, permission bits (with setuid, setgid, sticky), owners
//! (numeric uid and gid), file contents (sha256), symlink targets and device
//! numbers. The configs are compared on: `Cmd`, `Entrypoint`, `Env`,
//! `WorkingDir`, `User`, `ExposedPorts`, `Labels`, `Volumes`, `Healthcheck`,
//! `StopSignal`, and the image's `os` and `architecture`.
//!
//! Normalised before comparing, and nothing else:
//! * timestamps: file mtimes and the config's `created` are not compared;
//! * history (`created_by`, comments, `empty_layer`), the layer count and
//!   layer digests, `container`, `container_config`, `parent`, `Hostname`,
//!   `OnBuild` and the other config fields not listed above;
//! * labels that buildah adds itself: `io.buildah.version` (the test also
//!   passes `--identity-label=false`);
//! * an absent field, `null`, an empty list and an empty map are equal (buildah
//!   writes `"Entrypoint": []` and `"Volumes": {}` where docker omits them);
//! * `Env` is compared as a map of name → value when every name appears once
//!   on a side (docker's builders replace a variable in place, buildah moves
//!   it to the end; the order of distinct variables changes nothing in a
//!   container); a list with a repeated name is compared as it is;
//! * in `Healthcheck`, a duration or retry count of 0 is the same as absent
//!   (0 means "inherit the default");
//! * tar-only details: entry order, uname/gname, xattrs, and whether an entry
//!   was stored as a hard link or as a copy (both are compared by content);
//! * a directory a layer implies without an entry of its own counts as
//!   `0755 0:0`.
//!
//! buildah gets a state of its own in each test: `--root`, `--runroot` and
//! `--storage-driver vfs`, `CONTAINERS_CONF`, `CONTAINERS_REGISTRIES_CONF`
//! (no search registries), `CONTAINERS_STORAGE_CONF`, a signature policy,
//! `TMPDIR`; `--pull=never` and `--network none`. The base image reaches it
//! from `kontti save` through the `docker-archive:` transport, never a
//! registry. Its working containers are removed when the test ends, pass or
//! fail. Each test then asserts that no mount lies under its directory, no
//! process names it, and kontti build left no container.
//!
//! Where buildah 1.28 departs from docker, the corpus steers clear and says
//! so in the case's Dockerfile (shell-env: SHELL and shell-form CMD).
#![allow(clippy::disallowed_macros)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "build-compat/compare.rs"]
mod compare;

use compare::{diff_configs, diff_trees, normalise_config, read_docker_archive};

/// The cases, one per directory of `tests/build-compat/`
/// (`corpus_has_a_test_per_case` keeps this list and the directory in step).
const CASES: &[&str] = &[
    "add-archive",
    "build-args",
    "chown-parents",
    "dockerignore",
    "multi-stage",
    "owners-modes",
    "shell-env",
    "single-stage",
    "stage-inherit",
    "target-stage",
    "user-workdir",
    "whiteouts",
    "workdir-owner",
];

/// The base image's name on both sides (`FROM busybox` in the corpus).
const BASE: &str = "busybox";

/// `kontti build` runs RUN steps through the `kontti-runc` next to `kontti`.
fn require_runc() {
    let runc = Path::new(env!("CARGO_BIN_EXE_kontti")).with_file_name("kontti-runc");
    assert!(
        runc.is_file(),
        "{} is missing: build it first (cargo build -p kontti-runc)",
        runc.display()
    );
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build-compat")
}

// --- the builders -------------------------------------------------------------------

fn check(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Kontti {
    root: PathBuf,
}

impl Kontti {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kontti"));
        c.arg("--root").arg(&self.root);
        // RUN steps on the host network get no copy of the host's resolver
        c.env("KONTTI_BUILD_RESOLV_CONF", "none");
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        check(&format!("kontti {}", args.join(" ")), &out)
    }
}

/// buildah with a state of its own under `dir` (see the crate doc).
struct Buildah {
    dir: PathBuf,
}

impl Buildah {
    fn new(dir: &Path) -> Buildah {
        let b = Buildah {
            dir: dir.to_owned(),
        };
        fs::create_dir_all(b.dir.join("tmp")).unwrap();
        fs::write(
            b.dir.join("containers.conf"),
            "[engine]\nevents_logger = \"none\"\n",
        )
        .unwrap();
        fs::write(
            b.dir.join("registries.conf"),
            "unqualified-search-registries = []\nshort-name-mode = \"permissive\"\n",
        )
        .unwrap();
        fs::write(
            b.dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                b.dir.join("run").display(),
                b.dir.join("root").display()
            ),
        )
        .unwrap();
        fs::write(
            b.dir.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        b
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    }
    fn policy(&self) -> String {
        format!(
            "--signature-policy={}",
            self.dir.join("policy.json").display()
        )
    }
    fn ok(&self, args: &[&str]) -> String {
        let out =
            self.cmd().args(args).output().unwrap_or_else(|e| {
                panic!("running buildah: {e} (install Debian's buildah package)")
            });
        check(&format!("buildah {}", args.join(" ")), &out)
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all"]).output();
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
    }
}

/// Asserts that no mount lies under `dir` and no process names it (other
/// suites run beside this one, so the host as a whole is not compared).
fn assert_nothing_left(dir: &Path) {
    let dir = dir.to_string_lossy().into_owned();
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_owned)
        .collect();
    assert!(mounts.is_empty(), "mounts left under {dir}: {mounts:?}");
    let me = std::process::id().to_string();
    let procs: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != me.as_str())
        .filter_map(|e| {
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&dir).then_some(cmd)
        })
        .collect();
    assert!(procs.is_empty(), "processes left using {dir}: {procs:?}");
}

/// Builds case `name` with both builders and compares the results.
fn compat(name: &str) {
    kontti_testutil::require_root();
    require_runc();
    let case = corpus_dir().join(name);
    let dockerfile = case.join("Dockerfile");
    let mut build_args: Vec<String> = fs::read_to_string(case.join("build-args"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("--build-arg={}", l.trim()))
        .collect();
    // A `target` file names the stage to build (`--target`).
    if let Ok(target) = fs::read_to_string(case.join("target")) {
        build_args.push(format!("--target={}", target.trim()));
    }
    let tag = format!("compat/{name}:latest");
    let work = tempfile::Builder::new()
        .prefix("kontti-build-compat-")
        .tempdir()
        .unwrap();
    let w = work.path();
    let kontti = Kontti {
        root: w.join("kontti"),
    };

    // The base, made once by kontti and given to buildah as a docker-archive.
    let rootfs = w.join("rootfs.tar");
    kontti_testutil::write_rootfs_tar(&rootfs).unwrap();
    kontti.ok(&["import", "--cmd", "sh", rootfs.to_str().unwrap(), BASE]);
    let base_archive = w.join("base.tar");
    kontti.ok(&["save", "-o", base_archive.to_str().unwrap(), BASE]);
    let buildah = Buildah::new(&w.join("buildah"));
    buildah.ok(&[
        "pull",
        "-q",
        &buildah.policy(),
        &format!("docker-archive:{}", base_archive.display()),
    ]);

    let kontti_out = w.join("kontti-image.tar");
    let mut args = vec!["build".to_owned(), "-t".to_owned(), tag.clone()];
    args.extend(build_args.iter().cloned());
    args.extend([
        "-o".to_owned(),
        format!("type=docker,dest={}", kontti_out.display()),
        "-f".to_owned(),
        dockerfile.display().to_string(),
        case.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kontti.ok(&args);
    // The export is the tagged image.
    let id = kontti.ok(&["image", "inspect", &tag]);
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id[0]["Id"].as_str().unwrap().to_owned();

    let buildah_out = w.join("buildah-image.tar");
    let policy = buildah.policy();
    let mut args = vec![
        "bud",
        "--format=docker",
        "--layers",
        "--pull=never",
        "--network=none",
        "--identity-label=false",
        "--force-rm",
        "-q",
        &policy,
        "-t",
        &tag,
    ];
    args.extend(build_args.iter().map(String::as_str));
    let f = dockerfile.display().to_string();
    let ctx = case.display().to_string();
    args.extend(["-f", &f, &ctx]);
    buildah.ok(&args);
    buildah.ok(&[
        "push",
        "-q",
        &policy,
        &tag,
        &format!("docker-archive:{}:{tag}", buildah_out.display()),
    ]);
    let leftover = buildah.ok(&["containers", "-a", "-q"]);
    assert_eq!(leftover.trim(), "", "buildah left working containers");

    let k = read_docker_archive(&kontti_out).unwrap();
    assert_eq!(
        format!("sha256:{}", k.config_digest),
        id,
        "kontti build -o exported another image than the one it tagged"
    );
    let b = read_docker_archive(&buildah_out).unwrap();
    let mut diff = diff_configs(&normalise_config(&k.config), &normalise_config(&b.config));
    diff.extend(diff_trees(&k.tree, &b.tree));
    drop(buildah);
    let runc: Vec<_> = fs::read_dir(kontti.root.join("builder/runc"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(runc.is_empty(), "kontti build left containers: {runc:?}");
    assert_nothing_left(w);
    assert!(
        diff.is_empty(),
        "case {name}: kontti build and buildah bud differ ({} differences):\n{}",
        diff.len(),
        diff.join("\n")
    );
}

macro_rules! compat_cases {
    ($($test:ident => $dir:literal,)*) => {
        $(
            #[test]
            fn $test() {
                compat($dir);
            }
        )*
        #[test]
        fn corpus_has_a_test_per_case() {
            let mut dirs: Vec<String> = fs::read_dir(corpus_dir())
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            dirs.sort();
            let tested = [$($dir),*];
            assert_eq!(dirs, CASES, "tests/build-compat/ and CASES differ");
            assert_eq!(tested, CASES, "each case needs its test");
        }
    };
}

compat_cases! {
    buildah_add_archive => "add-archive",
    buildah_build_args => "build-args",
    // The missing parents of a COPY --chown destination belong to the
    // --chown owner (buildah and BuildKit agree; kontti did not until 693ae95).
    buildah_chown_parents => "chown-parents",
    buildah_dockerignore => "dockerignore",
    buildah_multi_stage => "multi-stage",
    buildah_owners_modes => "owners-modes",
    buildah_shell_env => "shell-env",
    buildah_single_stage => "single-stage",
    buildah_stage_inherit => "stage-inherit",
    buildah_target_stage => "target-stage",
    buildah_user_workdir => "user-workdir",
    buildah_whiteouts => "whiteouts",
    buildah_workdir_owner => "workdir-owner",
}
