//! The build executor of `kontti build`: runs a Dockerfile parsed by
//! `kontti-build` into an OCI image in kontti's store.
//!
//! - Each stage starts from an image in the store (unpacked into overlay
//!   snapshots once), `scratch` or an earlier stage; independent stages
//!   build in parallel threads.
//! - A step that may change the filesystem (RUN, COPY, ADD, WORKDIR) gets a
//!   fresh active snapshot on the stage's layer stack, mounted
//!   ([`workspace`](crate::workspace)): RUN runs a container through the
//!   `kontti-runc` binary on it, COPY and ADD write into it directly. Its
//!   upper directory is the step's diff: a reproducible tar, compressed into
//!   the content store, and the snapshot is committed under the new chain
//!   id, so the layer is never unpacked again.
//! - Every step has a [`CacheKey`](kontti_build::CacheKey) chaining its
//!   parent's; the [`StepCache`] maps it to the layer and config, so a hit
//!   runs nothing.
//! - Everything written, and every layer snapshot the build starts from or
//!   commits, is held by one content-store lease until the result is named,
//!   so a concurrent `kontti image prune` or `rmi` removes none of it; a
//!   build killed mid-step is cleaned up by the next.
//!
//! It does not pull images (the caller pulls missing bases first; see
//! [`images_needed`]), push, or talk to any network: ADD of a URL goes
//! through the caller's [`UrlFetcher`].

mod cache;
mod chmod;
mod config;
mod copy;
mod error;
mod layer;
mod options;
mod run;
mod stage;
mod user;
mod workspace;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use kontti_build::{BaseImage, BuildContext, Dockerfile, Instruction, StageRef};
use kontti_core::{Digest, ImageRef};
use kontti_image::config::{ImageConfigFile, RootFs};
use kontti_image::snapshot::OverlaySnapshotter;
use kontti_image::{ContentStore, Descriptor, PlatformSpec, content_dir, media, snapshot};

pub use cache::{CacheRecord, StepCache};
pub use error::BuildError;
pub use layer::LayerBlob;
pub use options::{BuildOptions, LayerCompression, Progress, Quiet, UrlFetcher, find_runtime};

use stage::StageState;
use workspace::Machine;

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image id (config digest).
    pub id: Digest,
    /// The manifest.
    pub manifest: Descriptor,
    /// Steps whose result came from the cache.
    pub cached_steps: usize,
    /// Steps that ran.
    pub executed_steps: usize,
}

/// Step counters shared by the stage threads.
#[derive(Debug, Default)]
pub(crate) struct StepCounts {
    pub cached: AtomicUsize,
    pub run: AtomicUsize,
}

/// One build in progress: what the stage threads share.
pub(crate) struct Build<'a> {
    pub m: Machine,
    pub df: Dockerfile,
    pub context: BuildContext,
    pub cache: StepCache,
    pub options: &'a BuildOptions,
    /// RFC 3339 creation time of the result and its history.
    pub created: String,
    /// The target platform.
    pub platform: PlatformSpec,
}

fn builder_dir(root: &Path) -> std::path::PathBuf {
    root.join("builder")
}

fn read_dockerfile(options: &BuildOptions) -> Result<(String, String), BuildError> {
    let path = options.dockerfile_path();
    let text = fs::read_to_string(&path).map_err(|source| BuildError::Dockerfile {
        path: path.clone(),
        cause: source,
    })?;
    let name = path
        .file_name()
        .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned());
    Ok((text, name))
}

/// The images a build needs in the store: the bases of the stages it
/// builds and the images `COPY --from` and `RUN --mount from=` name. The
/// caller pulls those that are missing before calling [`build`].
pub fn images_needed(options: &BuildOptions) -> Result<Vec<String>, BuildError> {
    let (text, name) = read_dockerfile(options)?;
    let df = stage::parse_dockerfile(
        &text,
        &name,
        &options.build_args,
        options.platform.as_deref(),
    )?;
    let plan = df.plan(options.target.as_deref())?;
    let mut out = BTreeSet::new();
    for i in plan.stages() {
        let s = &df.stages[i];
        if let BaseImage::Image(n) = &s.base {
            out.insert(n.clone());
        }
        for node in &s.instructions {
            let froms: Vec<&String> = match &node.instruction {
                Instruction::Copy(c) => c.from.iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                if f.contains('$') {
                    continue;
                }
                if let Ok(StageRef::Image(n)) = df.stage_ref(f) {
                    out.insert(n);
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Cleans up after builds that were killed mid-step (their containers,
/// mounts and snapshots). [`build`] does it first; returns how many.
pub fn recover(state_root: &Path, runtime: &Path) -> Result<usize, BuildError> {
    let m = machine(state_root, runtime, LayerCompression::Gzip, None)?;
    workspace::recover(&m)
}

fn machine(
    root: &Path,
    runtime: &Path,
    compression: LayerCompression,
    epoch: Option<i64>,
) -> Result<Machine, BuildError> {
    let store = ContentStore::open(content_dir(root))?;
    let snapshots = OverlaySnapshotter::open(snapshot::snapshots_dir(root, "overlay"))?;
    let lease = store.lease("build")?;
    let dir = builder_dir(root);
    let runs = dir.join("runs");
    let runc_root = dir.join("runc");
    let cache_mounts = dir.join("cache-mounts");
    for d in [&runs, &runc_root, &cache_mounts] {
        fs::create_dir_all(d).map_err(|e| BuildError::io("create directory", d, e))?;
    }
    Ok(Machine {
        store,
        snapshots,
        lease,
        runs,
        runc_root,
        cache_mounts,
        runtime: runtime.to_path_buf(),
        compression,
        epoch,
    })
}

/// Builds the image `options` describe in the state root `root`, names it
/// with every tag, and returns it. Nothing is named when a step fails.
pub fn build(root: &Path, options: &BuildOptions) -> Result<BuildOutput, BuildError> {
    if !snapshot::overlay_supported() {
        return Err(BuildError::Unsupported {
            step: "build".into(),
            reason: "builds need overlayfs, which this kernel does not offer".into(),
        });
    }
    let (text, name) = read_dockerfile(options)?;
    let df = stage::parse_dockerfile(
        &text,
        &name,
        &options.build_args,
        options.platform.as_deref(),
    )?;
    let plan = df.plan(options.target.as_deref())?;
    let dockerfile_rel = options
        .dockerfile_path()
        .strip_prefix(&options.context)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "Dockerfile".into());
    let context =
        BuildContext::open(&options.context, &dockerfile_rel).map_err(BuildError::ContextRoot)?;
    let m = machine(
        root,
        &options.runtime,
        options.compression,
        options.source_date_epoch,
    )?;
    let recovered = workspace::recover(&m)?;
    if recovered > 0 {
        tracing::info!(recovered, "cleaned up after interrupted builds");
    }
    let created = match options.source_date_epoch {
        Some(e) => kontti_image::time::format_rfc3339(e),
        None => kontti_image::time::now_rfc3339(),
    };
    let platform = match &options.platform {
        Some(p) => stage::parse_platform(p),
        None => PlatformSpec::host(),
    };
    let b = Build {
        m,
        df,
        context,
        cache: StepCache::open(builder_dir(root).join("cache"))?,
        options,
        created,
        platform,
    };
    let counts = StepCounts::default();
    let mut done: Vec<Option<StageState>> = vec![None; b.df.stages.len()];
    for group in &plan.groups {
        let results: Vec<(usize, Result<StageState, BuildError>)> = if group.len() == 1 {
            group
                .iter()
                .map(|&i| (i, stage::build_stage(&b, i, &done, &counts)))
                .collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|&i| {
                        let (b, done, counts) = (&b, &done, &counts);
                        (i, s.spawn(move || stage::build_stage(b, i, done, counts)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, h)| {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(BuildError::step(
                                &format!("stage {i}"),
                                "the stage's thread panicked",
                            ))
                        });
                        (i, r)
                    })
                    .collect()
            })
        };
        for (i, r) in results {
            done[i] = Some(r?);
        }
    }
    let Some(result) = done.get_mut(plan.target).and_then(Option::take) else {
        return Err(BuildError::step("build", "the target stage was not built"));
    };
    let out = write_image(&b, result)?;
    let executed = counts.run.load(Ordering::Relaxed);
    let cached = counts.cached.load(Ordering::Relaxed);
    Ok(BuildOutput {
        cached_steps: cached,
        executed_steps: executed,
        ..out
    })
}

/// Writes the config and manifest of the target stage and names it.
fn write_image(b: &Build<'_>, mut state: StageState) -> Result<BuildOutput, BuildError> {
    let mut config = state.config;
    if !b.options.labels.is_empty() {
        let labels = config.labels.get_or_insert_with(Default::default);
        labels.extend(b.options.labels.clone());
    }
    // An unchanged rebuild keeps the creation time, hence the image id.
    let image_key = state.key.step(
        &Instruction::Label(
            b.options
                .labels
                .iter()
                .map(|(k, v)| kontti_build::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        ),
        &kontti_build::StepEnv::default(),
        &[],
    );
    let created = match (b.options.source_date_epoch, b.cache.created(&image_key)) {
        (None, Some(c)) if !b.options.no_cache => c,
        _ => b.created.clone(),
    };
    for h in &mut state.history {
        if h.created.as_deref() == Some(b.created.as_str()) {
            h.created = Some(created.clone());
        }
    }
    b.cache.put_created(&image_key, &created)?;
    let file = ImageConfigFile {
        created: Some(created),
        author: state.config_state.author.clone(),
        architecture: state.platform.architecture.clone(),
        os: state.platform.os.clone(),
        variant: state.platform.variant.clone(),
        config: Some(config),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: state.layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        history: state.history,
    };
    let store = &b.m.store;
    let lease = &b.m.lease;
    let config_json = serde_json::to_vec(&file)
        .map_err(|e| BuildError::io("serialise", "image config", std::io::Error::other(e)))?;
    let config_digest = store.put(lease, &config_json, None)?;
    let manifest = media::Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(
            media::OCI_CONFIG,
            config_digest.clone(),
            config_json.len() as u64,
        ),
        layers: state.layers.iter().map(|l| l.descriptor.clone()).collect(),
        subject: None,
        annotations: Default::default(),
    };
    let manifest_json = serde_json::to_vec(&manifest)
        .map_err(|e| BuildError::io("serialise", "manifest", std::io::Error::other(e)))?;
    let manifest_digest = store.put(lease, &manifest_json, None)?;
    let target = Descriptor::new(
        media::OCI_MANIFEST,
        manifest_digest,
        manifest_json.len() as u64,
    );
    if b.options.tags.is_empty() {
        store.add_untagged(&target)?;
    }
    for t in &b.options.tags {
        store.set_ref(t, &target)?;
    }
    Ok(BuildOutput {
        id: config_digest,
        manifest: target,
        cached_steps: 0,
        executed_steps: 0,
    })
}

/// Parses `NAME[:TAG]` for `-t`.
pub fn parse_tag(s: &str) -> Result<ImageRef, kontti_core::ReferenceError> {
    ImageRef::parse(s)
}
