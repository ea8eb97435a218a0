//! Local image commands: `images` / `image ls`, `rmi`, `tag`, `image
//! inspect`, `save`, `load`, `import` and `image prune`. The work happens in
//! `kontti_image`; this module parses arguments and prints.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use kontti_core::{ErrorKind, ImageRef};
use kontti_image::archive::{self, ArchiveFormat, SaveItem};
use kontti_image::local::{self, Removed};
use kontti_image::{ContentStore, ImageConfig, content_dir, snapshot};
use serde_json::json;

use super::Context;

/// Image commands at the top level, as docker has them.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// List images.
    Images(ListArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Give an image another name: kontti tag SOURCE TARGET.
    Tag(TagArgs),
    /// Write images to a docker-archive or oci-archive.
    Save(SaveArgs),
    /// Load images from a docker-archive or oci-archive.
    Load(LoadArgs),
    /// Create an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageSub),
}

/// `kontti image ...`.
#[derive(Subcommand)]
pub enum ImageSub {
    /// List images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show details of images as JSON.
    Inspect(InspectArgs),
    /// Remove untagged images and unreferenced content and layers.
    Prune(PruneArgs),
    /// Remove images.
    Rm(RmiArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Write images to an archive.
    Save(SaveArgs),
    /// Load images from an archive.
    Load(LoadArgs),
    /// Create an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Mount an image's root filesystem (a writable snapshot) and print its path.
    Mount(MountArgs),
    /// Unmount a root filesystem mounted by `image mount` and remove its snapshot.
    Unmount(UnmountArgs),
}

/// `kontti image mount`.
#[derive(Args)]
pub struct MountArgs {
    /// Name of the snapshot and mount (default: derived from the image id).
    #[arg(long)]
    name: Option<String>,
    /// The image: NAME[:TAG], NAME@DIGEST or an id.
    image: String,
}

/// `kontti image unmount`.
#[derive(Args)]
pub struct UnmountArgs {
    /// The name `image mount` was given (or printed).
    name: String,
}

/// `images` arguments.
#[derive(Args)]
pub struct ListArgs {
    /// Only show image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format: `table`, `json`, or a template such as
    /// `{{.Repository}}:{{.Tag}}` (the subset `ps` takes).
    #[arg(long)]
    format: Option<String>,
    /// Show full image ids.
    #[arg(long)]
    no_trunc: bool,
}

/// `rmi` arguments.
#[derive(Args)]
pub struct RmiArgs {
    /// Remove an image by id even if it has several names, or its last name
    /// while a container uses it.
    #[arg(short, long)]
    force: bool,
    /// Images (names or ids).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `tag` arguments.
#[derive(Args)]
pub struct TagArgs {
    /// The image (name or id).
    source: String,
    /// The new name.
    target: String,
}

/// Archive formats of `save`.
#[derive(Clone, Copy, ValueEnum)]
pub enum SaveFormat {
    /// `manifest.json` + layer tars, as `docker save`.
    DockerArchive,
    /// A tar of an OCI image layout.
    OciArchive,
}

/// `save` arguments.
#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: SaveFormat,
    /// Images (names or ids).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `load` arguments.
#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print nothing.
    #[arg(short, long)]
    quiet: bool,
}

/// `import` arguments.
#[derive(Args)]
pub struct ImportArgs {
    /// The tarball (plain, gzip or zstd), or `-` for standard input.
    file: String,
    /// Name for the image: NAME[:TAG].
    name: Option<String>,
    /// Default command of the image (repeat for each argument).
    #[arg(long = "cmd", value_name = "ARG")]
    cmd: Vec<String>,
    /// Apply a Dockerfile instruction to the image's config (CMD,
    /// ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL);
    /// repeat for several.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
}

/// `image inspect` arguments.
#[derive(Args)]
pub struct InspectArgs {
    /// Images (names or ids).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `image prune` arguments.
#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt (kontti never prompts; accepted for docker compatibility).
    #[arg(short, long)]
    force: bool,
    /// Remove every image no container uses, not only untagged ones.
    #[arg(short, long)]
    all: bool,
}

fn store(ctx: &Context) -> anyhow::Result<ContentStore> {
    let dir = content_dir(&ctx.root);
    ContentStore::open(&dir)
        .with_context(|| format!("opening the content store in {}", dir.display()))
}

/// Runs an image command; returns the exit code.
pub fn run(ctx: &Context, cmd: ImageCommand) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Images(a) | ImageCommand::Image(ImageSub::Ls(a)) => list(ctx, a),
        ImageCommand::Rmi(a) | ImageCommand::Image(ImageSub::Rm(a)) => rmi(ctx, a),
        ImageCommand::Tag(a) | ImageCommand::Image(ImageSub::Tag(a)) => tag(ctx, a),
        ImageCommand::Save(a) | ImageCommand::Image(ImageSub::Save(a)) => save(ctx, a),
        ImageCommand::Load(a) | ImageCommand::Image(ImageSub::Load(a)) => load(ctx, a),
        ImageCommand::Import(a) | ImageCommand::Image(ImageSub::Import(a)) => import(ctx, a),
        ImageCommand::Image(ImageSub::Inspect(a)) => inspect(ctx, a),
        ImageCommand::Image(ImageSub::Prune(a)) => prune(ctx, a),
        ImageCommand::Image(ImageSub::Mount(a)) => mount(ctx, a),
        ImageCommand::Image(ImageSub::Unmount(a)) => unmount(ctx, a),
    }
}

/// docker's human sizes: decimal units, three significant digits.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + units[i]
    }
}

/// The fields of an `images --format` template, with their headers.
const LS_FIELDS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Size", "SIZE"),
    ("Digest", "DIGEST"),
    ("Containers", "CONTAINERS"),
];

fn list(ctx: &Context, a: ListArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let images = local::list(&store)?;
    let mut rows = Vec::new();
    for s in &images {
        let id = if a.no_trunc {
            s.id().to_string()
        } else {
            s.id().short().to_owned()
        };
        let created = s.image.config.created.clone().unwrap_or_default();
        let since = kontti_image::time::parse_rfc3339(&created)
            .map_or_else(|| "N/A".to_owned(), kontti_image::time::ago);
        let size = s.image.unpacked_size(&store);
        let names: Vec<(String, String)> = if s.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            s.names
                .iter()
                .map(|n| (n.familiar_name(), n.tag().unwrap_or("<none>").to_owned()))
                .collect()
        };
        for (repo, t) in names {
            rows.push((
                repo,
                t,
                id.clone(),
                created.clone(),
                since.clone(),
                size,
                s.image.target.digest.to_string(),
            ));
        }
    }
    rows.sort();
    let mut out = io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(r.2.clone()) {
                writeln!(out, "{}", r.2)?;
            }
        }
        return Ok(0);
    }
    let format = a.format.as_deref();
    if format == Some("json") {
        for (repo, t, id, created, since, size, digest) in rows {
            let v = json!({
                "Repository": repo, "Tag": t, "ID": id, "CreatedAt": created,
                "CreatedSince": since, "Size": human_size(size), "VirtualSize": size,
                "Digest": digest, "Containers": "N/A",
            });
            writeln!(out, "{v}")?;
        }
        return Ok(0);
    }
    if let Some(f) = format.filter(|f| !super::format::is_default(Some(f))) {
        let template = super::format::Template::parse(f, LS_FIELDS)?;
        let rows: Vec<super::format::Row> = rows
            .into_iter()
            .map(|(repo, t, id, created, since, size, digest)| {
                super::format::Row::from([
                    ("Repository", repo),
                    ("Tag", t),
                    ("ID", id),
                    ("CreatedAt", created),
                    ("CreatedSince", since),
                    ("Size", human_size(size)),
                    ("Digest", digest),
                    ("Containers", "N/A".to_owned()),
                ])
            })
            .collect();
        template.print(&mut out, LS_FIELDS, &rows)?;
        return Ok(0);
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(10);
    writeln!(
        out,
        "{:<w$}   {:<10}   {:<12}   {:<22}   SIZE",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
    )?;
    for (repo, t, id, _, since, size, _) in rows {
        writeln!(
            out,
            "{repo:<w$}   {t:<10}   {id:<12}   {since:<22}   {}",
            human_size(size)
        )?;
    }
    Ok(0)
}

fn rmi(ctx: &Context, a: RmiArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let mut failed = None;
    let used = images_in_use(ctx)?;
    for name in &a.images {
        if !a.force
            && let Some(msg) = removal_conflict(&store, name, &used)
        {
            eprintln!("kontti: {msg}");
            failed = Some(ErrorKind::Conflict);
            continue;
        }
        match local::remove(&store, name, a.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removed::Untagged(r) => println!("Untagged: {}", r.familiar()),
                        Removed::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("kontti: {e}");
                failed = Some(e.kind());
            }
        }
    }
    // Layers no image uses any more.
    if let Ok(sn) = snapshot::open_default(&ctx.root)
        && let Err(e) = local::prune_snapshots(&store, sn.as_ref())
    {
        tracing::warn!(error = %e, "cannot remove unused layers");
    }
    Ok(failed.map_or(0, ErrorKind::exit_code))
}

fn tag(ctx: &Context, a: TagArgs) -> anyhow::Result<i32> {
    let target = ImageRef::parse(&a.target)?;
    local::tag(&store(ctx)?, &a.source, &target)?;
    Ok(0)
}

fn inspect(ctx: &Context, a: InspectArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let mut out = Vec::new();
    for name in &a.images {
        let f = local::find(&store, name)?;
        let img = &f.image;
        let repo_digests: Vec<String> = f
            .names
            .iter()
            .map(|n| format!("{}@{}", n.familiar_name(), img.target.digest))
            .collect();
        out.push(json!({
            "Id": img.id(),
            "RepoTags": f.names.iter().filter(|n| n.tag().is_some()).map(ImageRef::familiar).collect::<Vec<_>>(),
            "RepoDigests": repo_digests,
            "Created": img.config.created,
            "Author": img.config.author,
            "Architecture": img.config.architecture,
            "Os": img.config.os,
            "Variant": img.config.variant,
            "Config": img.config.config,
            "RootFS": {"Type": img.config.rootfs.kind, "Layers": img.diff_ids()},
            "Size": img.unpacked_size(&store),
            "Manifest": {
                "Digest": img.manifest_descriptor.digest,
                "MediaType": img.manifest_descriptor.media_type,
                "Layers": img.layers(),
            },
            "Target": img.target.digest,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn save(ctx: &Context, a: SaveArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let mut items = Vec::new();
    for name in &a.images {
        let f = local::find(&store, name)?;
        let names = match &f.by_name {
            Some(r) if r.tag().is_some() => vec![r.clone()],
            _ => Vec::new(),
        };
        items.push(SaveItem {
            image: f.image,
            names,
        });
    }
    let format = match a.format {
        SaveFormat::DockerArchive => ArchiveFormat::DockerArchive,
        SaveFormat::OciArchive => ArchiveFormat::OciArchive,
    };
    match &a.output {
        Some(path) => {
            // Write next to the destination, rename when complete: no
            // half-written archive under the requested name.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            archive::save(&store, &items, format, io::BufWriter::new(tmp.as_file()))?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!(
                    "refusing to write an archive to a terminal: use -o FILE or redirect standard output"
                );
            }
            archive::save(
                &store,
                &items,
                format,
                io::BufWriter::new(io::stdout().lock()),
            )?;
        }
    }
    Ok(0)
}

fn load(ctx: &Context, a: LoadArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let file = match &a.input {
        Some(p) => File::open(p).with_context(|| format!("opening {}", p.display()))?,
        None => {
            if io::stdin().is_terminal() {
                bail!("no archive on standard input: use -i FILE or redirect standard input");
            }
            // Archives are read by seeking: spool standard input first.
            let mut tmp = tempfile::tempfile_in(store.root().join("ingest"))?;
            io::copy(&mut io::stdin().lock(), &mut tmp).context("reading standard input")?;
            tmp
        }
    };
    let report = archive::load(&store, file)?;
    if !a.quiet {
        for n in &report.names {
            println!("Loaded image: {}", n.familiar());
        }
        for d in &report.untagged {
            println!("Loaded image ID: {d}");
        }
    }
    Ok(0)
}

fn import(ctx: &Context, a: ImportArgs) -> anyhow::Result<i32> {
    let name = a.name.as_deref().map(ImageRef::parse).transpose()?;
    let store = store(ctx)?;
    let mut changes = ImageConfig {
        cmd: (!a.cmd.is_empty()).then(|| a.cmd.clone()),
        env: Some(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ]),
        ..ImageConfig::default()
    };
    // Before reading the tarball: a bad change stores nothing.
    kontti_image::change::apply_changes(&mut changes, &a.change)?;
    let image = if a.file == "-" {
        kontti_image::import::import_rootfs(
            &store,
            io::stdin().lock(),
            "-",
            name.as_ref(),
            changes,
        )?
    } else {
        let f = File::open(&a.file).with_context(|| format!("opening {}", a.file))?;
        kontti_image::import::import_rootfs(&store, f, &a.file, name.as_ref(), changes)?
    };
    println!("{}", image.id());
    Ok(0)
}

fn prune(ctx: &Context, a: PruneArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let sn = snapshot::open_default(&ctx.root)?;
    let mut unused = Vec::new();
    if a.all {
        let used = images_in_use(ctx)?;
        for img in local::list(&store)? {
            if !used.contains(img.id()) {
                store.remove_target(&img.image.target.digest)?;
                unused.push(img.image.target.digest.clone());
            }
        }
    }
    let mut report = local::prune(&store, Some(sn.as_ref()), false)?;
    report.images.extend(unused);
    if !report.images.is_empty() {
        println!("Deleted Images:");
        for d in &report.images {
            println!("deleted: {d}");
        }
    }
    println!(
        "Total reclaimed space: {} ({} blobs, {} abandoned downloads, {} layers)",
        human_size(report.content.freed_bytes),
        report.content.removed.len(),
        report.content.removed_ingests,
        report.snapshots.len()
    );
    Ok(0)
}

/// The image ids of every container, whatever its state.
fn images_in_use(ctx: &Context) -> anyhow::Result<std::collections::BTreeSet<kontti_core::Digest>> {
    let engine = super::container::engine(ctx)?;
    Ok(engine
        .list()?
        .into_iter()
        .filter_map(|c| kontti_core::Digest::parse(&c.image_id).ok())
        .collect())
}

/// Why `rmi NAME` (without `-f`) must not remove the image: it would delete
/// an image a container uses (docker's "must force" conflict). Removing one
/// of several names only untags, which is always allowed.
fn removal_conflict(
    store: &ContentStore,
    name: &str,
    used: &std::collections::BTreeSet<kontti_core::Digest>,
) -> Option<String> {
    let found = local::find(store, name).ok()?;
    let untag_only =
        found.by_name.as_ref().is_some_and(|r| r.tag().is_some()) && found.names.len() > 1;
    if untag_only || !used.contains(found.image.id()) {
        return None;
    }
    Some(format!(
        "unable to remove {name:?} (must force): image {} is used by a container",
        found.image.id().short()
    ))
}

/// Where `image mount` mounts snapshot `name` under the state root.
fn mount_point(ctx: &Context, name: &str) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !valid {
        return Err(kontti_image::snapshot::SnapshotError::BadKey(name.to_owned()).into());
    }
    Ok(ctx.root.join("mounts").join(name))
}

fn mount(ctx: &Context, a: MountArgs) -> anyhow::Result<i32> {
    let store = store(ctx)?;
    let found = local::find(&store, &a.image)?;
    let name = match a.name {
        Some(n) => n,
        None => format!("mount-{}", &found.image.id().hex()[..12]),
    };
    let target = mount_point(ctx, &name)?;
    let sn = snapshot::open_default(&ctx.root)?;
    let key = format!("image-mount-{name}");
    let mounts = kontti_image::rootfs::prepare_rootfs(&store, &found.image, sn.as_ref(), &key)?;
    let mounted = std::fs::create_dir_all(&target)
        .and_then(|()| snapshot::mount::mount_all(&mounts, &target));
    if let Err(e) = mounted {
        let _ = std::fs::remove_dir(&target);
        let _ = sn.remove(&key);
        return Err(e).with_context(|| format!("mounting {}", target.display()));
    }
    println!("{}", target.display());
    Ok(0)
}

fn unmount(ctx: &Context, a: UnmountArgs) -> anyhow::Result<i32> {
    let target = mount_point(ctx, &a.name)?;
    let sn = snapshot::open_default(&ctx.root)?;
    let key = format!("image-mount-{}", a.name);
    let mounts = sn
        .mounts(&key)
        .with_context(|| format!("no image is mounted as {}", a.name))?;
    snapshot::mount::unmount_all(&target, mounts.len())
        .with_context(|| format!("unmounting {}", target.display()))?;
    std::fs::remove_dir(&target).with_context(|| format!("removing {}", target.display()))?;
    sn.remove(&key)?;
    Ok(0)
}

/// The [`ErrorKind`] of an error from the image libraries, if it is one.
pub fn error_kind(e: &anyhow::Error) -> Option<ErrorKind> {
    e.chain().find_map(|c| {
        if let Some(x) = c.downcast_ref::<kontti_image::StoreError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<kontti_image::ImageError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<archive::ArchiveError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<kontti_image::change::ChangeError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<kontti_image::import::ImportError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<kontti_image::MediaError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<snapshot::SnapshotError>() {
            Some(x.kind())
        } else if let Some(x) = c.downcast_ref::<kontti_image::rootfs::RootfsError>() {
            Some(x.kind())
        } else if c.downcast_ref::<kontti_core::ReferenceError>().is_some()
            || c.downcast_ref::<kontti_core::DigestError>().is_some()
        {
            Some(ErrorKind::Invalid)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(1_000_000), "1MB");
    }
}
