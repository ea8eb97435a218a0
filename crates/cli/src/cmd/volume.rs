//! `kontti volume create|ls|inspect|rm|prune`, with docker's output shapes.
//! The work happens in `kontti_engine::volume`; this module parses
//! arguments and prints.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use clap::{Args, Subcommand};
use kontti_engine::volume::{self, Volume, VolumeError, VolumeFilter, Volumes};
use serde_json::json;

use super::Context;
use super::format::{Row, Template};

/// `kontti volume ...`.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeSub),
}

/// The volume subcommands.
#[derive(Subcommand)]
pub enum VolumeSub {
    /// Create a volume (a random name when none is given) and print its name.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show details of volumes as JSON.
    Inspect(InspectArgs),
    /// Remove volumes (never one a container uses).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with -a, all unused volumes).
    Prune(PruneArgs),
}

/// `kontti volume create`.
#[derive(Args)]
pub struct CreateArgs {
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", short = 'l')]
    labels: Vec<String>,
    /// The volume driver: only `local`.
    #[arg(long, short = 'd', default_value = "local")]
    driver: String,
    /// The name.
    name: Option<String>,
}

/// `kontti volume ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Print names only.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Filter: dangling=true|false, label=KEY[=VALUE], name=PART, driver=local.
    #[arg(long = "filter", short = 'f')]
    filters: Vec<String>,
    /// Go-template subset ({{.Name}}, {{.Driver}}, {{.Scope}},
    /// {{.Mountpoint}}, {{.Labels}}, {{json .}}, table ...) or `json`.
    #[arg(long)]
    format: Option<String>,
}

/// `volume ls --format` fields: name in templates, header.
const LS_FIELDS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

/// `kontti volume inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The volumes.
    #[arg(required = true)]
    names: Vec<String>,
}

/// `kontti volume rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Do not fail on volumes that do not exist (volumes in use are still
    /// refused).
    #[arg(long, short = 'f')]
    force: bool,
    /// The volumes.
    #[arg(required = true)]
    names: Vec<String>,
}

/// `kontti volume prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not only anonymous ones.
    #[arg(long, short = 'a')]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'f')]
    force: bool,
}

/// Runs a volume command.
pub fn run(ctx: &Context, cmd: VolumeCommand) -> anyhow::Result<i32> {
    let vols = Volumes::open(&ctx.root);
    let VolumeCommand::Volume(sub) = cmd;
    match sub {
        VolumeSub::Create(a) => create(&vols, a),
        VolumeSub::Ls(a) => ls(&vols, a),
        VolumeSub::Inspect(a) => inspect(&vols, a),
        VolumeSub::Rm(a) => rm(&vols, a),
        VolumeSub::Prune(a) => prune(&vols, a),
    }
}

fn create(vols: &Volumes, a: CreateArgs) -> anyhow::Result<i32> {
    volume::check_driver(&a.driver)?;
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = volume::parse_label(l)?;
        labels.insert(k, v);
    }
    let v = vols.create(a.name.as_deref(), labels)?;
    println!("{}", v.name);
    Ok(0)
}

/// Prints rows as docker's tabwriter does: columns at least 10 wide, 3
/// spaces between.
fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            let w = rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
            (w + 3).max(10)
        })
        .collect();
    let mut out = io::stdout().lock();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn ls(vols: &Volumes, a: LsArgs) -> anyhow::Result<i32> {
    let filters = a
        .filters
        .iter()
        .map(|f| f.parse::<VolumeFilter>())
        .collect::<Result<Vec<_>, _>>()?;
    let template = match a.format.as_deref() {
        f if super::format::is_default(f) => None,
        Some(f) => Some(Template::parse(f, LS_FIELDS)?),
        None => None,
    };
    let list: Vec<Volume> = vols
        .list()?
        .into_iter()
        .filter(|v| filters.iter().all(|f| f.matches(v)))
        .collect();
    if a.quiet {
        for v in list {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    if let Some(t) = template {
        let rows: Vec<Row> = list
            .iter()
            .map(|v| {
                Row::from([
                    ("Name", v.name.clone()),
                    ("Driver", "local".to_owned()),
                    ("Scope", "local".to_owned()),
                    ("Mountpoint", v.mountpoint.display().to_string()),
                    (
                        "Labels",
                        v.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    ("CreatedAt", v.created.clone()),
                ])
            })
            .collect();
        t.print(&mut io::stdout().lock(), LS_FIELDS, &rows)?;
        return Ok(0);
    }
    let mut rows = vec![vec!["DRIVER".to_owned(), "VOLUME NAME".to_owned()]];
    rows.extend(list.into_iter().map(|v| vec!["local".to_owned(), v.name]));
    print_table(&rows);
    Ok(0)
}

fn to_json(v: &Volume) -> serde_json::Value {
    json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

/// Prints JSON indented by four spaces, as docker does. (Pretty JSON
/// never has a raw newline inside a string, so doubling each line's
/// two-space indentation is exact.)
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = io::stdout().lock();
    for line in text.lines() {
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        writeln!(out, "{}{body}", " ".repeat(indent * 2))?;
    }
    Ok(())
}

/// Prints `err` as main does and returns its exit code.
fn report(err: &VolumeError) -> i32 {
    eprintln!("kontti: {err}");
    err.kind().exit_code()
}

fn inspect(vols: &Volumes, a: InspectArgs) -> anyhow::Result<i32> {
    let mut found = Vec::new();
    let mut code = 0;
    for name in &a.names {
        match vols.get(name) {
            Ok(v) => found.push(to_json(&v)),
            Err(e) => {
                let c = report(&e);
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    print_json(&serde_json::Value::Array(found))?;
    Ok(code)
}

fn rm(vols: &Volumes, a: RmArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &a.names {
        match vols.remove(name, a.force) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                let c = report(&e);
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    Ok(code)
}

/// docker's human sizes: decimal units, at most four significant digits.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let decimals = if i == 0 {
        0
    } else if v < 10.0 {
        3
    } else if v < 100.0 {
        2
    } else {
        1
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", units[i])
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question} [y/N] ");
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn prune(vols: &Volumes, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force {
        let what = if a.all {
            "all local volumes"
        } else {
            "anonymous local volumes"
        };
        let q = format!(
            "WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue?"
        );
        if !confirm(&q)? {
            return Ok(0);
        }
    }
    let pruned = vols.prune(a.all)?;
    if !pruned.removed.is_empty() {
        println!("Deleted Volumes:");
        for n in &pruned.removed {
            println!("{n}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(pruned.reclaimed_bytes)
    );
    Ok(0)
}

/// The exit code for a volume command's error, from its kind.
pub fn exit_code(e: &anyhow::Error) -> Option<i32> {
    e.downcast_ref::<VolumeError>()
        .map(|v| v.kind().exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1536), "1.536kB");
        assert_eq!(human_size(12_345_678), "12.35MB");
        assert_eq!(human_size(999_999), "1000kB");
    }
}
