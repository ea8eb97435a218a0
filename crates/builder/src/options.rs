//! What a build is asked to do, and how it reports progress.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kontti_core::ImageRef;

/// How layer blobs are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// gzip (`tar+gzip`), the default: every registry and runtime reads it.
    #[default]
    Gzip,
    /// zstd (`tar+zstd`).
    Zstd,
    /// No compression (`tar`).
    None,
}

/// Downloads `url` into the file at the given path (ADD of a URL). The
/// builder itself does no network I/O; the caller supplies this.
pub type UrlFetcher = Arc<dyn Fn(&str, &std::path::Path) -> Result<(), String> + Send + Sync>;

/// Where progress goes. The builder calls these from several threads when
/// stages build in parallel.
pub trait Progress: Send + Sync {
    /// A step starts: `stage` is the stage's name or index, `step` as
    /// `[n/total] INSTRUCTION text`; `cached` when its result comes from the
    /// cache.
    fn step(&self, stage: &str, step: &str, cached: bool);
    /// A line of output of a RUN step.
    fn output(&self, stage: &str, line: &[u8]);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: &str, _: &str, _: bool) {}
    fn output(&self, _: &str, _: &[u8]) {}
}

/// One build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (`<context>/Dockerfile` when `None`).
    pub dockerfile: Option<PathBuf>,
    /// Names for the result.
    pub tags: Vec<ImageRef>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (the last when `None`).
    pub target: Option<String>,
    /// `--no-cache`: run every step (results still fill the cache).
    pub no_cache: bool,
    /// `--label`: labels added to the result.
    pub labels: BTreeMap<String, String>,
    /// `--platform`: the platform of the result (`os/arch[/variant]`).
    pub platform: Option<String>,
    /// `--secret id=ID,src=PATH`: secrets RUN steps may mount.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Layer compression.
    pub compression: LayerCompression,
    /// `SOURCE_DATE_EPOCH`: clamps layer timestamps and sets `created`.
    pub source_date_epoch: Option<i64>,
    /// The `kontti-runc` binary RUN steps use.
    pub runtime: PathBuf,
    /// Downloads for ADD of a URL; without one such an ADD fails clearly.
    pub fetch: Option<UrlFetcher>,
    /// A resolv.conf bind-mounted (read-only) into RUN steps on the host's
    /// network; `None`: RUN steps get none (no name resolution).
    pub resolv_conf: Option<PathBuf>,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("context", &self.context)
            .field("dockerfile", &self.dockerfile)
            .field("tags", &self.tags)
            .field("target", &self.target)
            .field("no_cache", &self.no_cache)
            .field("platform", &self.platform)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BuildOptions {
    /// Options for building `context` with defaults: no tags, gzip, the
    /// runtime found by [`find_runtime`], no progress output.
    pub fn new(context: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            context: context.into(),
            dockerfile: None,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            labels: BTreeMap::new(),
            platform: None,
            secrets: BTreeMap::new(),
            compression: LayerCompression::Gzip,
            source_date_epoch: None,
            runtime: find_runtime(),
            fetch: None,
            resolv_conf: None,
            progress: Arc::new(Quiet),
        }
    }

    /// The Dockerfile's path.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }
}

/// The `kontti-runc` binary: `$KONTTI_RUNC`, else next to the current
/// executable (or its parent directory, for test binaries in `deps/`), else
/// `kontti-runc` on `PATH`.
pub fn find_runtime() -> PathBuf {
    if let Some(p) = std::env::var_os("KONTTI_RUNC") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("kontti-runc");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("kontti-runc")
}
