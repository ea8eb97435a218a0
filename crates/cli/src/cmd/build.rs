//! `kontti build`: pulls the base images a Dockerfile needs when they are
//! missing (or with `--pull`), then runs `kontti_builder::build`, exports
//! (`-o`) and pushes (`--push`) the result.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use kontti_builder::{BuildError, BuildOptions, LayerCompression, Progress};
use kontti_core::ImageRef;
use kontti_image::archive::{self, ArchiveFormat, SaveItem};
use kontti_image::{ContentStore, Image, PlatformSpec, content_dir};
use kontti_registry::client::progress::NoProgress;
use kontti_registry::client::{Client, ClientOptions, CredentialStore, Platform, RegistriesConfig};

use super::Context;

/// Build commands.
#[derive(Subcommand)]
pub enum BuildCommand {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
}

/// `--progress`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProgressMode {
    /// Plain (the only rich mode there is).
    Auto,
    /// Every step and all RUN output.
    Plain,
    /// Nothing but errors and the image id.
    Quiet,
}

/// `--compression`.
#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    /// gzip (the default).
    Gzip,
    /// zstd.
    Zstd,
    /// No compression.
    None,
}

/// `kontti build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Name the image NAME[:TAG] (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build-time variable (repeatable); K alone takes it from the environment.
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,
    /// Build this stage (and what it needs) only.
    #[arg(long)]
    target: Option<String>,
    /// Run every step, ignoring the cache.
    #[arg(long)]
    no_cache: bool,
    /// Pull base images even when they are present.
    #[arg(long)]
    pull: bool,
    /// Add a label to the image (repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// The image's platform (OS/ARCH[/VARIANT]).
    #[arg(long)]
    platform: Option<String>,
    /// Export: type=oci|docker,dest=FILE.
    #[arg(short = 'o', long = "output", value_name = "type=oci|docker,dest=FILE")]
    output: Option<String>,
    /// Push every tag after the build.
    #[arg(long)]
    push: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Same as --progress=quiet.
    #[arg(short, long)]
    quiet: bool,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE (repeatable).
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    secrets: Vec<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Reach this registry (HOST[:PORT]) over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// The build context directory.
    context: PathBuf,
}

/// Prints steps and RUN output to stderr.
struct Stderr {
    quiet: bool,
    lock: Mutex<()>,
}

impl Progress for Stderr {
    fn step(&self, stage: &str, step: &str, _cached: bool) {
        if self.quiet {
            return;
        }
        let _g = self.lock.lock();
        eprintln!("[{stage}] {step}");
    }
    fn output(&self, _stage: &str, line: &[u8]) {
        if self.quiet {
            return;
        }
        let _g = self.lock.lock();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line);
        let _ = err.write_all(b"\n");
    }
}

/// Bad command-line input: an invalid-input error (exit code 5).
fn invalid(what: &str, reason: String) -> anyhow::Error {
    BuildError::Step {
        step: what.to_string(),
        reason,
    }
    .into()
}

fn key_value(what: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(invalid(what, format!("{s:?}: expected KEY=VALUE"))),
    }
}

fn fields(what: &str, s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    s.split(',').map(|f| key_value(what, f)).collect()
}

fn client(insecure: &[String]) -> anyhow::Result<Client> {
    let registries = RegistriesConfig::load(std::path::Path::new("/etc/kontti/registries.json"))?;
    Ok(Client::new(ClientOptions {
        registries,
        insecure: insecure.to_vec(),
        credentials: CredentialStore::from_env(),
        ..ClientOptions::default()
    })?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// ADD of a URL: a plain GET into the file.
fn fetcher() -> kontti_builder::UrlFetcher {
    Arc::new(|url: &str, dest: &std::path::Path| {
        let rt = runtime().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let resp = reqwest::get(url).await.map_err(|e| e.to_string())?;
            let resp = resp.error_for_status().map_err(|e| e.to_string())?;
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            std::fs::write(dest, &body).map_err(|e| e.to_string())
        })
    })
}

/// Runs `kontti build`.
pub fn run(ctx: &Context, cmd: BuildCommand) -> anyhow::Result<i32> {
    let BuildCommand::Build(a) = cmd;
    let quiet = a.quiet || a.progress == ProgressMode::Quiet;
    let mut options = BuildOptions::new(&a.context);
    if !a.context.is_dir() {
        return Err(invalid(
            "build context",
            format!("{}: not a directory", a.context.display()),
        ));
    }
    // `-f -`: the Dockerfile comes from standard input.
    let _stdin_dockerfile = match a.file.as_deref() {
        Some(p) if p == std::path::Path::new("-") => {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut text)
                .context("reading the Dockerfile from standard input")?;
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let path = dir.path().join("Dockerfile");
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            options.dockerfile = Some(path);
            Some(dir)
        }
        _ => {
            options.dockerfile = a.file.clone();
            None
        }
    };
    for t in &a.tags {
        options
            .tags
            .push(ImageRef::parse(t).map_err(|e| invalid("-t", format!("{t:?}: {e}")))?);
    }
    for arg in &a.build_args {
        match arg.split_once('=') {
            Some((k, v)) => options.build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(arg) {
                Ok(v) => options.build_args.insert(arg.clone(), v),
                Err(_) => continue,
            },
        };
    }
    for l in &a.labels {
        let (k, v) = key_value("--label", l)?;
        options.labels.insert(k, v);
    }
    for s in &a.secrets {
        let f = fields("--secret", s)?;
        let id = f
            .get("id")
            .ok_or_else(|| invalid("--secret", format!("{s:?}: id= is missing")))?;
        let src = f
            .get("src")
            .or_else(|| f.get("source"))
            .ok_or_else(|| invalid("--secret", format!("{s:?}: src= is missing")))?;
        options.secrets.insert(id.clone(), PathBuf::from(src));
    }
    options.target = a.target.clone();
    options.no_cache = a.no_cache;
    options.platform = a.platform.clone();
    options.compression = match a.compression {
        CompressionArg::Gzip => LayerCompression::Gzip,
        CompressionArg::Zstd => LayerCompression::Zstd,
        CompressionArg::None => LayerCompression::None,
    };
    options.source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse()
                .map_err(|_| invalid("SOURCE_DATE_EPOCH", format!("{v:?} is not a number")))?,
        ),
        _ => None,
    };
    options.fetch = Some(fetcher());
    // RUN steps on the host's network resolve names with the host's
    // resolv.conf; KONTTI_BUILD_RESOLV_CONF names another file, or `none`.
    options.resolv_conf = match std::env::var_os("KONTTI_BUILD_RESOLV_CONF") {
        Some(v) if v == "none" || v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from("/etc/resolv.conf")).filter(|p| p.is_file()),
    };
    options.progress = Arc::new(Stderr {
        quiet,
        lock: Mutex::new(()),
    });
    let export = match &a.output {
        Some(o) => {
            let f = fields("-o", o)?;
            let format = match f.get("type").map(String::as_str) {
                Some("oci") => ArchiveFormat::OciArchive,
                Some("docker") => ArchiveFormat::DockerArchive,
                other => {
                    return Err(invalid(
                        "-o",
                        format!("{o:?}: type must be oci or docker, not {other:?}"),
                    ));
                }
            };
            let dest = f
                .get("dest")
                .ok_or_else(|| invalid("-o", format!("{o:?}: dest= is missing")))?;
            Some((format, PathBuf::from(dest)))
        }
        None => None,
    };
    pull_bases(ctx, &options, &a, quiet)?;
    let out = kontti_builder::build(&ctx.root, &options)?;
    tracing::debug!(
        cached = out.cached_steps,
        executed = out.executed_steps,
        "build done"
    );
    if let Some((format, dest)) = export {
        let store = ContentStore::open(content_dir(&ctx.root))?;
        let platform = options
            .platform
            .as_deref()
            .map_or_else(PlatformSpec::host, platform_spec);
        let image = Image::from_descriptor(&store, out.manifest.clone(), &platform)?;
        let file =
            std::fs::File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        archive::save(
            &store,
            &[SaveItem {
                image,
                names: options.tags.clone(),
            }],
            format,
            file,
        )?;
    }
    if a.push {
        let client = client(&a.insecure)?;
        let content = content_dir(&ctx.root);
        for t in &options.tags {
            let d = runtime()?.block_on(kontti_registry::local::push(
                &client,
                &content,
                t,
                Arc::new(NoProgress),
            ))?;
            if !quiet {
                eprintln!("pushed {t}: {d}");
            }
        }
    }
    println!("{}", out.id);
    Ok(0)
}

fn platform_spec(p: &str) -> PlatformSpec {
    let mut parts = p.splitn(3, '/');
    PlatformSpec {
        os: parts.next().unwrap_or("linux").to_string(),
        architecture: parts.next().unwrap_or_default().to_string(),
        variant: parts.next().map(str::to_string),
    }
}

/// Pulls the images the build needs that are missing (all with `--pull`).
fn pull_bases(
    ctx: &Context,
    options: &BuildOptions,
    a: &BuildArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    let needed = kontti_builder::images_needed(options)?;
    if needed.is_empty() {
        return Ok(());
    }
    let store = ContentStore::open(content_dir(&ctx.root))?;
    let spec = options
        .platform
        .as_deref()
        .map_or_else(PlatformSpec::host, platform_spec);
    let mut missing = Vec::new();
    for name in needed {
        let Ok(r) = ImageRef::parse(&name) else {
            return Err(BuildError::UnknownImage(name).into());
        };
        if a.pull || Image::open_for(&store, &r, &spec).is_err() {
            missing.push((name, r));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let client = client(&a.insecure)?;
    let platform = match &options.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let content = content_dir(&ctx.root);
    let rt = runtime()?;
    for (name, r) in missing {
        if !quiet {
            eprintln!("pulling {name}");
        }
        let pulled = rt
            .block_on(kontti_registry::local::pull(
                &client,
                &content,
                &r,
                &platform,
                Arc::new(NoProgress),
            ))
            .map_err(|e| BuildError::PullFailed {
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        kontti_registry::local::unpack(&ctx.root, &pulled)?;
    }
    Ok(())
}

/// The exit code of a build error.
pub fn exit_code(e: &anyhow::Error) -> Option<i32> {
    e.chain()
        .find_map(|c| c.downcast_ref::<BuildError>())
        .map(|e| e.kind().exit_code())
}
