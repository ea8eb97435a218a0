//! One stage: its starting point (an image, `scratch` or an earlier stage)
//! and the loop over its instructions, each step keyed for the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kontti_build::{
    ArgSources, BaseImage, CacheKey, CopySource, Dockerfile, Instruction, InstructionNode,
    MountType, ParseOptions, StageRef, StepEnv, StepInput, parse,
};
use kontti_core::{Digest, ImageRef};
use kontti_image::config::History;
use kontti_image::{Image, ImageConfig, PlatformSpec, rootfs};

use crate::cache::CacheRecord;
use crate::config::{self, ConfigState};
use crate::copy::{self, CopyStep, Source};
use crate::error::BuildError;
use crate::layer::LayerBlob;
use crate::run::{self, RunStep};
use crate::workspace::{Workspace, ensure_snapshot};
use crate::{Build, StepCounts};

/// A stage's result so far: what the next step builds on.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub config: ImageConfig,
    pub config_state: ConfigState,
    pub history: Vec<History>,
    pub layers: Vec<LayerBlob>,
    /// The chain id of the top layer (the snapshot to build on).
    pub top: Option<Digest>,
    pub env: StepEnv,
    pub key: CacheKey,
    pub platform: PlatformSpec,
}

/// An image from the store, by reference, for `platform`.
pub(crate) fn open_image(
    b: &Build<'_>,
    name: &str,
    platform: &PlatformSpec,
) -> Result<Image, BuildError> {
    let r = ImageRef::parse(name).map_err(|_| BuildError::UnknownImage(name.to_string()))?;
    match Image::open_for(&b.m.store, &r, platform) {
        Ok(i) => Ok(i),
        Err(kontti_image::ImageError::NotFound(_)) => {
            Err(BuildError::UnknownImage(name.to_string()))
        }
        Err(source) => Err(BuildError::Image {
            name: name.to_string(),
            cause: source,
        }),
    }
}

/// Unpacks `image` (as needed) and protects its content; returns the chain
/// id of its top layer.
pub(crate) fn prepare_image(b: &Build<'_>, image: &Image) -> Result<Option<Digest>, BuildError> {
    b.m.lease.protect(&image.target.digest)?;
    b.m.lease.protect(&image.manifest_descriptor.digest)?;
    // The build's lease holds every layer snapshot until the build ends.
    b.m.store.protect_image(&b.m.lease, image)?;
    let report = rootfs::unpack_image(&b.m.store, image, &b.m.snapshots)?;
    Ok(report.top.as_deref().and_then(|t| Digest::parse(t).ok()))
}

fn start(
    b: &Build<'_>,
    index: usize,
    done: &[Option<StageState>],
) -> Result<StageState, BuildError> {
    let stage = &b.df.stages[index];
    let platform = match &stage.platform {
        Some(p) => parse_platform(p),
        None => b.platform.clone(),
    };
    let key_platform = platform_text(&platform);
    match &stage.base {
        BaseImage::Scratch => Ok(StageState {
            config: ImageConfig::default(),
            config_state: ConfigState::default(),
            history: Vec::new(),
            layers: Vec::new(),
            top: None,
            env: StepEnv::default(),
            key: CacheKey::base("scratch", &key_platform),
            platform,
        }),
        BaseImage::Stage(j) => {
            let mut s = done.get(*j).and_then(Option::clone).ok_or_else(|| {
                BuildError::step(
                    &format!("stage {index}"),
                    format!("stage {j} was not built"),
                )
            })?;
            s.key = CacheKey::base(&s.key.to_string(), &key_platform);
            s.config_state = ConfigState::default();
            Ok(s)
        }
        BaseImage::Image(name) => {
            let image = open_image(b, name, &platform)?;
            let top = prepare_image(b, &image)?;
            let layers = image
                .layers()
                .iter()
                .zip(image.diff_ids())
                .map(|(d, id)| LayerBlob {
                    descriptor: d.clone(),
                    diff_id: id.clone(),
                })
                .collect();
            let config = image.config.config.clone().unwrap_or_default();
            let env = StepEnv::from_image_env(config.env.as_deref().unwrap_or(&[]));
            Ok(StageState {
                config,
                config_state: ConfigState::default(),
                history: image.config.history.clone(),
                layers,
                top,
                env,
                key: CacheKey::base(&image.manifest_descriptor.digest.to_string(), &key_platform),
                platform: PlatformSpec {
                    os: image.config.os.clone(),
                    architecture: image.config.architecture.clone(),
                    variant: image.config.variant.clone(),
                },
            })
        }
    }
}

pub(crate) fn parse_platform(p: &str) -> PlatformSpec {
    let mut parts = p.splitn(3, '/');
    PlatformSpec {
        os: parts.next().unwrap_or("linux").to_string(),
        architecture: parts.next().unwrap_or_default().to_string(),
        variant: parts.next().map(str::to_string),
    }
}

pub(crate) fn platform_text(p: &PlatformSpec) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The ONBUILD triggers of the base, parsed.
fn triggers(b: &Build<'_>, state: &mut StageState) -> Result<Vec<InstructionNode>, BuildError> {
    let Some(list) = state.config.on_build.take() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for t in list {
        let opts = ParseOptions {
            file_name: "ONBUILD".into(),
            build_args: b.options.build_args.clone(),
            ..ParseOptions::default()
        };
        let df = parse(&format!("FROM scratch\n{t}\n"), &opts)?;
        if let Some(s) = df.stages.into_iter().next() {
            out.extend(s.instructions);
        }
    }
    Ok(out)
}

fn label(b: &Build<'_>, node: &InstructionNode) -> String {
    let text: String = node.text.chars().take(80).collect();
    format!("{}:{}: {text}", b.df.file_name, node.span.start.line)
}

/// What a `--from` value names, resolved to a tree top and a cache input.
enum From {
    Stage(usize),
    Image(Box<Image>),
}

fn resolve_from(b: &Build<'_>, value: &str, platform: &PlatformSpec) -> Result<From, BuildError> {
    match b.df.stage_ref(value) {
        Ok(StageRef::Stage(j)) => Ok(From::Stage(j)),
        Ok(StageRef::Image(name)) => Ok(From::Image(Box::new(open_image(b, &name, platform)?))),
        Err(e) => Err(BuildError::step(value, e.to_string())),
    }
}

fn from_top(
    b: &Build<'_>,
    from: &From,
    done: &[Option<StageState>],
) -> Result<Option<Digest>, BuildError> {
    match from {
        From::Stage(j) => Ok(done
            .get(*j)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.top.clone())),
        From::Image(image) => prepare_image(b, image),
    }
}

fn from_input(from: &From, done: &[Option<StageState>]) -> Option<StepInputOwned> {
    match from {
        From::Stage(j) => done
            .get(*j)
            .and_then(|s| s.as_ref())
            .map(|s| StepInputOwned::Stage(s.key)),
        From::Image(i) => Some(StepInputOwned::Image(
            i.manifest_descriptor.digest.to_string(),
        )),
    }
}

enum StepInputOwned {
    Context(kontti_build::ContentDigest),
    Stage(CacheKey),
    Image(String),
}

/// Builds stage `index` on top of the finished stages in `done`.
pub(crate) fn build_stage(
    b: &Build<'_>,
    index: usize,
    done: &[Option<StageState>],
    counts: &StepCounts,
) -> Result<StageState, BuildError> {
    let stage = &b.df.stages[index];
    let stage_name = stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{index}"));
    let _span = tracing::info_span!("stage", stage = stage_name).entered();
    let mut state = start(b, index, done)?;
    let mut nodes = triggers(b, &mut state)?;
    nodes.extend(stage.instructions.iter().cloned());
    let escape = b.df.directives.escape;
    let sources = ArgSources {
        build_args: &b.df.build_args,
        meta_args: &b.df.meta_args,
    };
    let total = nodes.len() + 1;
    b.options.progress.step(
        &stage_name,
        &format!("[1/{total}] FROM {}", base_text(b, index)),
        false,
    );
    for (n, node) in nodes.iter().enumerate() {
        let step_label = label(b, node);
        let expanded = node.expanded_in(&state.env, escape, &b.df.file_name)?;
        state
            .env
            .apply(&node.instruction, sources, escape)
            .map_err(|e| BuildError::step(&step_label, e.to_string()))?;
        let progress_text = format!(
            "[{}/{total}] {}",
            n + 2,
            node.text.chars().take(100).collect::<String>()
        );
        let onbuild_text = match &node.instruction {
            Instruction::Onbuild(inner) => Some(inner.text.clone()),
            _ => None,
        };
        // Inputs of the key: what the step reads besides its parent.
        let mut owned: Vec<StepInputOwned> = Vec::new();
        let mut froms: BTreeMap<String, From> = BTreeMap::new();
        match &expanded {
            Instruction::Copy(c) | Instruction::Add(c) => match &c.from {
                Some(f) => {
                    let from = resolve_from(b, f, &state.platform)?;
                    owned.extend(from_input(&from, done));
                    froms.insert(f.clone(), from);
                }
                None => {
                    let paths: Vec<&str> = c
                        .sources
                        .iter()
                        .filter_map(|s| match s {
                            CopySource::Path(p)
                                if !p.starts_with("http://") && !p.starts_with("https://") =>
                            {
                                Some(p.as_str())
                            }
                            _ => None,
                        })
                        .collect();
                    if !paths.is_empty() {
                        let excludes: Vec<&str> = c.exclude.iter().map(String::as_str).collect();
                        let d = b.context.digest_excluding(&paths, &excludes).map_err(|e| {
                            BuildError::Context {
                                step: step_label.clone(),
                                cause: e,
                            }
                        })?;
                        owned.push(StepInputOwned::Context(d));
                    }
                }
            },
            Instruction::Run(r) => {
                for m in &r.mounts {
                    match (&m.from, m.kind) {
                        (Some(f), MountType::Bind | MountType::Cache) => {
                            let from = resolve_from(b, f, &state.platform)?;
                            owned.extend(from_input(&from, done));
                            froms.insert(f.clone(), from);
                        }
                        (None, MountType::Bind) => {
                            let src = m.source.clone().unwrap_or_else(|| ".".into());
                            let d = b.context.digest(&[src.as_str()]).map_err(|e| {
                                BuildError::Context {
                                    step: step_label.clone(),
                                    cause: e,
                                }
                            })?;
                            owned.push(StepInputOwned::Context(d));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        let inputs: Vec<StepInput<'_>> = owned
            .iter()
            .map(|i| match i {
                StepInputOwned::Context(d) => StepInput::Context(*d),
                StepInputOwned::Stage(k) => StepInput::Stage(*k),
                StepInputOwned::Image(s) => StepInput::Image(s.as_str()),
            })
            .collect();
        state.key = state.key.step(&expanded, &state.env, &inputs);
        let created_by = history_text(&expanded, &node.text);
        let mut cfg = state.config.clone();
        let touches_fs = matches!(
            expanded,
            Instruction::Run(_)
                | Instruction::Copy(_)
                | Instruction::Add(_)
                | Instruction::Workdir(_)
        );
        config::apply(
            &mut cfg,
            &mut state.config_state,
            &expanded,
            &state.env,
            onbuild_text.as_deref(),
        );
        if !touches_fs {
            b.options.progress.step(&stage_name, &progress_text, false);
            state.config = cfg;
            state.history.push(History {
                created: Some(b.created.clone()),
                created_by: Some(created_by),
                empty_layer: Some(true),
                ..History::default()
            });
            continue;
        }
        // A step that may change the filesystem: from the cache or for real.
        let cached = if b.options.no_cache {
            None
        } else {
            b.cache.get(&state.key)
        };
        let cached = match cached {
            Some(rec) => match &rec.layer {
                Some(l)
                    if !b
                        .m
                        .store
                        .protect_if_present(&b.m.lease, &l.descriptor.digest)? =>
                {
                    None
                }
                _ => Some(rec),
            },
            None => None,
        };
        let record = match cached {
            Some(rec) => {
                b.options
                    .progress
                    .step(&stage_name, &format!("{progress_text} (cached)"), true);
                counts
                    .cached
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(layer) = &rec.layer {
                    state.top = Some(ensure_snapshot(&b.m, state.top.as_ref(), layer)?);
                }
                rec
            }
            None => {
                b.options.progress.step(&stage_name, &progress_text, false);
                counts
                    .run
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let layer = execute(
                    b,
                    &mut state,
                    &cfg,
                    &expanded,
                    &step_label,
                    &stage_name,
                    &froms,
                    done,
                )?;
                let rec = CacheRecord {
                    layer,
                    config: cfg.clone(),
                };
                b.cache.put(&state.key, &rec)?;
                rec
            }
        };
        state.config = cfg;
        let empty = record.layer.is_none();
        if let Some(layer) = record.layer {
            state.layers.push(layer);
        }
        state.history.push(History {
            created: Some(b.created.clone()),
            created_by: Some(created_by),
            empty_layer: empty.then_some(true),
            ..History::default()
        });
    }
    Ok(state)
}

fn base_text(b: &Build<'_>, index: usize) -> String {
    match &b.df.stages[index].base {
        BaseImage::Scratch => "scratch".into(),
        BaseImage::Image(n) => n.clone(),
        BaseImage::Stage(j) => b.df.stages[*j]
            .name
            .clone()
            .unwrap_or_else(|| j.to_string()),
    }
}

fn history_text(ins: &Instruction, text: &str) -> String {
    match ins {
        Instruction::Run(_) => format!(
            "RUN {}",
            text.split_once(char::is_whitespace)
                .map_or("", |(_, r)| r.trim())
        ),
        _ => text.to_string(),
    }
}

/// Runs a filesystem step in a fresh workspace; returns its layer (none
/// when a WORKDIR changed nothing) and moves the stage's top.
#[allow(clippy::too_many_arguments)]
fn execute(
    b: &Build<'_>,
    state: &mut StageState,
    cfg: &ImageConfig,
    ins: &Instruction,
    step_label: &str,
    stage_name: &str,
    froms: &BTreeMap<String, From>,
    done: &[Option<StageState>],
) -> Result<Option<LayerBlob>, BuildError> {
    let mut ws = Workspace::open(&b.m, state.top.as_ref())?;
    let mut trees: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (name, from) in froms {
        let top = from_top(b, from, done)?;
        trees.insert(name.clone(), ws.view(top.as_ref())?);
    }
    let workdir = state
        .config
        .working_dir
        .clone()
        .unwrap_or_else(|| "/".into());
    let keep_empty = match ins {
        Instruction::Run(r) => {
            let env = state.env.run_environment(&b.df.build_args);
            let shell = config::shell_of(&state.config);
            run::run(
                &b.m,
                &mut ws,
                &RunStep {
                    label: step_label,
                    stage: stage_name,
                    run: r,
                    shell: &shell,
                    env,
                    user: state.config.user.as_deref(),
                    workdir: &workdir,
                    context: &b.context,
                    secrets: &b.options.secrets,
                    resolv_conf: b.options.resolv_conf.as_deref(),
                    from_trees: &trees,
                    progress: &b.options.progress,
                },
            )?;
            true
        }
        Instruction::Copy(c) | Instruction::Add(c) => {
            let source = match &c.from {
                Some(f) => Source::Tree(
                    trees
                        .get(f)
                        .map(PathBuf::as_path)
                        .unwrap_or(Path::new("/nonexistent")),
                ),
                None => Source::Context(&b.context),
            };
            let scratch = ws.dir().to_path_buf();
            copy::copy(
                ws.rootfs(),
                &CopyStep {
                    label: step_label,
                    copy: c,
                    is_add: matches!(ins, Instruction::Add(_)),
                    workdir: &workdir,
                    source,
                    fetch: b.options.fetch.as_ref(),
                    scratch: &scratch,
                },
            )?;
            true
        }
        Instruction::Workdir(_) => {
            let dir = cfg.working_dir.clone().unwrap_or_else(|| "/".into());
            let root = kontti_image::fsroot::Root::open(ws.rootfs())
                .map_err(|e| BuildError::io("open", ws.rootfs(), e))?;
            let rel = Path::new(dir.trim_start_matches('/'));
            // Created directories belong to the USER in effect, as buildah
            // and BuildKit make them.
            match state.config.user.as_deref().filter(|u| !u.is_empty()) {
                Some(user) => {
                    let ids = crate::user::resolve(ws.rootfs(), user)
                        .map_err(|e| BuildError::step(step_label, e))?;
                    crate::copy::create_parents(&root, rel, ids.uid, ids.gid)
                        .map_err(|e| BuildError::step(step_label, e.to_string()))?;
                }
                None => {
                    root.dir(rel, true)
                        .map_err(|e| BuildError::step(step_label, e.to_string()))?;
                }
            }
            false
        }
        _ => false,
    };
    let result = ws.finish(state.top.as_ref(), keep_empty)?;
    Ok(result.map(|(layer, chain)| {
        state.top = Some(chain);
        layer
    }))
}

/// Parses the Dockerfile the options name.
pub(crate) fn parse_dockerfile(
    text: &str,
    file_name: &str,
    build_args: &BTreeMap<String, String>,
    platform: Option<&str>,
) -> Result<Dockerfile, BuildError> {
    let opts = ParseOptions {
        file_name: file_name.to_string(),
        build_args: build_args.clone(),
        build_platform: None,
        target_platform: platform.map(str::to_string),
    };
    Ok(parse(text, &opts)?)
}
