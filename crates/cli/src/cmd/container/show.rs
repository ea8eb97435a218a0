//! `ps` and `logs`: what the engine knows about containers, printed
//! docker's way.

use std::collections::BTreeMap;
use std::io::Write;

use kontti_engine::ps::{self, Filter};
use kontti_engine::{EngineError, Status};

use super::{EventsArgs, LogsArgs, PsArgs, StatsArgs, engine};
use crate::cmd::Context;

/// `ps --format` fields: name in templates, header.
const PS_FIELDS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
];

pub(super) fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<i32> {
    let e = engine(ctx)?;
    let filters: Vec<Filter> = a
        .filter
        .iter()
        .map(|f| f.parse())
        .collect::<Result<_, _>>()?;
    let mut recs: Vec<_> = e
        .list()?
        .into_iter()
        .filter(|r| {
            a.all
                || !filters.is_empty()
                || r.state.status.is_live()
                || r.state.status == Status::Restarting
        })
        .filter(|r| filters.iter().all(|f| f.matches(r)))
        .collect();
    recs.sort_by(|x, y| y.created.cmp(&x.created));
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &recs {
            writeln!(out, "{}", if a.no_trunc { &r.id } else { r.short_id() })?;
        }
        return Ok(0);
    }
    let trunc = |s: String, n: usize| {
        if a.no_trunc || s.chars().count() <= n {
            s
        } else {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        }
    };
    let row = |r: &kontti_engine::ContainerRecord| -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (
                "ID",
                if a.no_trunc {
                    r.id.clone()
                } else {
                    r.short_id().to_owned()
                },
            ),
            ("Image", r.image.clone()),
            ("Command", trunc(format!("\"{}\"", ps::command_text(r)), 20)),
            ("CreatedAt", r.created.clone()),
            (
                "RunningFor",
                kontti_image::time::parse_rfc3339(&r.created)
                    .map_or_else(String::new, kontti_image::time::ago),
            ),
            (
                "Status",
                ps::status_with_health(r, e.health(&r.id).as_ref()),
            ),
            ("State", r.state.status.to_string()),
            ("Ports", ps::ports_text(r).join(", ")),
            ("Names", r.name.clone()),
            (
                "Labels",
                r.options
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ])
    };
    let template = match a.format.as_deref() {
        f if crate::cmd::format::is_default(f) => None,
        Some(f) => Some(crate::cmd::format::Template::parse(f, PS_FIELDS)?),
        None => None,
    };
    match template {
        Some(t) => {
            let rows: Vec<_> = recs.iter().map(row).collect();
            t.print(&mut out, PS_FIELDS, &rows)?;
        }
        None => {
            let rows: Vec<_> = recs.iter().map(row).collect();
            let cols = [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let heads = [
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ];
            let widths: Vec<usize> = cols
                .iter()
                .zip(heads)
                .map(|(c, h)| {
                    rows.iter()
                        .map(|r| r[c].chars().count())
                        .max()
                        .unwrap_or(0)
                        .max(h.len())
                })
                .collect();
            let line = |cells: Vec<&str>| {
                let mut s = String::new();
                for (i, c) in cells.iter().enumerate() {
                    if i + 1 == cells.len() {
                        s.push_str(c);
                    } else {
                        s.push_str(&format!("{c:<w$}   ", w = widths[i]));
                    }
                }
                s
            };
            writeln!(out, "{}", line(heads.to_vec()))?;
            for r in &rows {
                writeln!(
                    out,
                    "{}",
                    line(cols.iter().map(|c| r[c].as_str()).collect())
                )?;
            }
        }
    }
    Ok(0)
}

pub(super) fn logs(ctx: &Context, a: LogsArgs) -> anyhow::Result<i32> {
    use kontti_engine::logs::{self, LogOptions};
    let e = engine(ctx)?;
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            EngineError::invalid_value("--tail", n, "expected a number of lines or all")
        })?),
    };
    let since = a.since.as_deref().map(logs::parse_since).transpose()?;
    let opts = LogOptions {
        follow: a.follow,
        tail,
        since,
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    logs::logs(&e, &a.container, &opts, |l| {
        let w: &mut dyn Write = match l.stream {
            logs::Stream::Stdout => &mut stdout,
            logs::Stream::Stderr => &mut stderr,
        };
        if a.timestamps {
            write!(w, "{} ", l.time)?;
        }
        w.write_all(&l.text)?;
        if !l.partial {
            w.write_all(b"\n")?;
        }
        w.flush()
    })?;
    Ok(0)
}

fn mib(b: Option<u64>) -> String {
    b.map_or_else(
        || "--".to_owned(),
        |b| format!("{:.1}MiB", b as f64 / 1048576.0),
    )
}

pub(super) fn stats(ctx: &Context, a: StatsArgs) -> anyhow::Result<i32> {
    let e = engine(ctx)?;
    let ids: Vec<String> = if a.containers.is_empty() {
        e.list()?
            .into_iter()
            .filter(|r| r.state.status.is_live())
            .map(|r| r.id)
            .collect()
    } else {
        a.containers
            .iter()
            .map(|c| e.containers().resolve(c))
            .collect::<Result<_, _>>()?
    };
    let interval = std::time::Duration::from_millis(if a.no_stream { 500 } else { 1000 });
    let sample = |ids: &[String]| -> anyhow::Result<Vec<(u64, kontti_engine::CgroupStats)>> {
        ids.iter().map(|id| Ok((now_ns(), e.stats(id)?))).collect()
    };
    let mut before = sample(&ids)?;
    loop {
        std::thread::sleep(interval);
        let after = sample(&ids)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:<14} {:<20} {:>7} {:>22} {:>6}",
            "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"
        )?;
        for (id, ((t0, s0), (t1, s1))) in ids.iter().zip(before.iter().zip(&after)) {
            let name = e.inspect(id).map(|r| r.name).unwrap_or_default();
            let cpu = match (s0.cpu_usage_ns, s1.cpu_usage_ns) {
                (Some(a), Some(b)) if t1 > t0 => format!(
                    "{:.2}%",
                    b.saturating_sub(a) as f64 * 100.0 / (t1 - t0) as f64
                ),
                _ => "--".to_owned(),
            };
            let mem = format!("{} / {}", mib(s1.memory_usage), mib(s1.memory_limit));
            let pids = s1
                .pids_current
                .map_or_else(|| "--".to_owned(), |p| p.to_string());
            writeln!(
                out,
                "{:<14} {:<20} {:>7} {:>22} {:>6}",
                &id[..12],
                name,
                cpu,
                mem,
                pids
            )?;
        }
        if a.no_stream {
            return Ok(0);
        }
        before = after;
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(super) fn events(ctx: &Context, a: EventsArgs) -> anyhow::Result<i32> {
    use kontti_engine::events::{self, Event, EventFollower};
    use kontti_engine::logs::parse_since;
    let e = engine(ctx)?;
    let since = a
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .map(|t| t.0);
    let until = a
        .until
        .as_deref()
        .map(parse_since)
        .transpose()?
        .map(|t| t.0);
    let mut wanted: Vec<(String, String)> = Vec::new();
    for f in &a.filter {
        match f.split_once('=') {
            Some((k @ ("container" | "event"), v)) => wanted.push((k.to_owned(), v.to_owned())),
            _ => {
                return Err(EngineError::invalid_value(
                    "--filter",
                    f,
                    "use container=NAME|ID or event=ACTION",
                )
                .into());
            }
        }
    }
    let matches = |ev: &Event| {
        wanted.iter().all(|(k, v)| match k.as_str() {
            "container" => ev.id.starts_with(v.as_str()) || ev.attributes.get("name") == Some(v),
            // `health_status` matches `health_status: healthy` as docker's
            _ => {
                ev.action == *v
                    || ev
                        .action
                        .split_once(':')
                        .is_some_and(|(a, _)| a == v.as_str())
            }
        })
    };
    let json = a.format.as_deref() == Some("json");
    let print = |ev: &Event| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_string(ev)?)?;
        } else {
            let attrs: Vec<String> = ev
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let t = kontti_supervisor::Timestamp(ev.time_nano);
            writeln!(
                out,
                "{t} {} {} {} ({})",
                ev.kind,
                ev.action,
                ev.id,
                attrs.join(", ")
            )?;
        }
        out.flush()?;
        Ok(())
    };
    let mut follower = EventFollower::at_end(e.root());
    if since.is_some() {
        for ev in events::read(e.root(), since, until)?
            .iter()
            .filter(|ev| matches(ev))
        {
            print(ev)?;
        }
    }
    let now = || kontti_supervisor::Timestamp::now().0;
    if until.is_some_and(|u| u <= now()) {
        return Ok(0);
    }
    loop {
        for ev in follower.poll()? {
            if until.is_some_and(|u| ev.time_nano > u) {
                return Ok(0);
            }
            if matches(&ev) {
                print(&ev)?;
            }
        }
        if until.is_some_and(|u| u <= now()) {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
