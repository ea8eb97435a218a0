//! How containers are shown: docker's status text, `ps --filter`, and the
//! `inspect` document.

use serde_json::{Value, json};

use crate::container::{ContainerRecord, Status};
use crate::error::{EngineError, Result};

fn secs(rfc3339: Option<&str>) -> Option<i64> {
    rfc3339.and_then(kontti_image::time::parse_rfc3339)
}

fn duration_text(d: i64) -> String {
    match d {
        i64::MIN..=0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        2..=59 => format!("{d} seconds"),
        60..=119 => "About a minute".to_owned(),
        120..=3599 => format!("{} minutes", d / 60),
        3600..=7199 => "About an hour".to_owned(),
        7200..=172_799 => format!("{} hours", d / 3600),
        _ => format!("{} days", d / 86_400),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// docker's STATUS column: `Up 5 seconds`, `Exited (0) 3 seconds ago`, ...
pub fn status_text(rec: &ContainerRecord) -> String {
    let s = &rec.state;
    let since = |t: Option<&str>| duration_text(secs(t).map_or(0, |t| now() - t));
    match s.status {
        Status::Created => "Created".to_owned(),
        Status::Running => format!("Up {}", since(s.started_at.as_deref())),
        Status::Paused => format!("Up {} (Paused)", since(s.started_at.as_deref())),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            since(s.finished_at.as_deref())
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            since(s.finished_at.as_deref())
        ),
        Status::Removing => "Removal In Progress".to_owned(),
    }
}

/// `status_text` with the health, as `ps` shows it: `Up 5 seconds (healthy)`.
pub fn status_with_health(rec: &ContainerRecord, health: Option<&crate::health::Health>) -> String {
    let s = status_text(rec);
    match health {
        Some(h) if rec.state.status == Status::Running => {
            let shown = if h.status == "starting" {
                "health: starting"
            } else {
                h.status.as_str()
            };
            format!("{s} ({shown})")
        }
        _ => s,
    }
}

/// The command as `ps` shows it.
pub fn command_text(rec: &ContainerRecord) -> String {
    rec.args.join(" ")
}

/// `-p` publications as `ps` and `port` show them: `0.0.0.0:8080->80/tcp`.
pub fn ports_text(rec: &ContainerRecord) -> Vec<String> {
    rec.options
        .publish
        .iter()
        .filter_map(|p| p.parse::<kontti_net::PortMapping>().ok())
        .map(|m| {
            let ip = m
                .host_ip
                .map_or_else(|| "0.0.0.0".to_owned(), |i| i.to_string());
            let proto = format!("{:?}", m.protocol).to_ascii_lowercase();
            format!("{ip}:{}->{}/{proto}", m.host_port, m.container_port)
        })
        .collect()
}

/// A `ps --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `id=PREFIX`.
    Id(String),
    /// `name=PART`.
    Name(String),
    /// `status=created|running|paused|restarting|exited|removing`.
    Status(Status),
    /// `label=KEY` or `label=KEY=VALUE`.
    Label(String, Option<String>),
    /// `ancestor=IMAGE` (as named at creation, or the image id prefix).
    Ancestor(String),
    /// `exited=CODE`.
    Exited(i32),
}

impl std::str::FromStr for Filter {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Filter> {
        let bad = |r: &str| EngineError::invalid("--filter", s, r.to_owned());
        let (k, v) = s.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
        Ok(match k {
            "id" => Filter::Id(v.to_owned()),
            "name" => Filter::Name(v.to_owned()),
            "status" => Filter::Status(match v {
                "created" => Status::Created,
                "running" => Status::Running,
                "paused" => Status::Paused,
                "restarting" => Status::Restarting,
                "exited" => Status::Exited,
                "removing" => Status::Removing,
                _ => {
                    return Err(bad(
                        "status is created, running, paused, restarting, exited or removing",
                    ));
                }
            }),
            "label" => match v.split_once('=') {
                Some((a, b)) => Filter::Label(a.to_owned(), Some(b.to_owned())),
                None => Filter::Label(v.to_owned(), None),
            },
            "ancestor" => Filter::Ancestor(v.to_owned()),
            "exited" => Filter::Exited(v.parse().map_err(|_| bad("exited takes an exit code"))?),
            _ => {
                return Err(bad(
                    "unknown filter (id, name, status, label, ancestor, exited)",
                ));
            }
        })
    }
}

impl Filter {
    /// Whether `rec` passes.
    pub fn matches(&self, rec: &ContainerRecord) -> bool {
        match self {
            Filter::Id(p) => rec.id.starts_with(p.as_str()),
            Filter::Name(p) => rec.name.contains(p.as_str()),
            Filter::Status(s) => rec.state.status == *s,
            Filter::Label(k, v) => match (rec.options.labels.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            },
            Filter::Ancestor(i) => {
                rec.image == *i
                    || rec
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(i.trim_start_matches("sha256:"))
            }
            Filter::Exited(c) => rec.state.status == Status::Exited && rec.state.exit_code == *c,
        }
    }
}

/// docker's `inspect` document for a container.
pub fn inspect_json(rec: &ContainerRecord, root: &std::path::Path) -> Value {
    let s = &rec.state;
    let o = &rec.options;
    let dir = root.join("containers").join(&rec.id);
    let mut doc = json!({
        "Id": rec.id,
        "Name": format!("/{}", rec.name),
        "Created": rec.created,
        "Path": rec.args.first().cloned().unwrap_or_default(),
        "Args": rec.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": s.status.as_str(),
            "Running": s.status.is_live(),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": false,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": s.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": s.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": rec.image_id,
        "ImageName": rec.image,
        "LogPath": dir.join("container.log"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "ResolvConfPath": dir.join("resolv.conf"),
        "RestartCount": rec.restart_count,
        "HostConfig": {
            "Memory": o.memory.unwrap_or(0),
            "NanoCpus": o.nano_cpus.unwrap_or(0),
            "PidsLimit": o.pids_limit,
            "ReadonlyRootfs": o.read_only,
            "Privileged": o.privileged,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "NetworkMode": o.network.clone().unwrap_or_else(|| "bridge".into()),
            "RestartPolicy": {
                "Name": o.restart.name(),
                "MaximumRetryCount": match o.restart { crate::RestartPolicy::OnFailure { max } => max, _ => 0 },
            },
            "AutoRemove": o.auto_remove,
            "Init": o.init,
            "ShmSize": o.shm_size.unwrap_or(64 << 20),
            "PortBindings": ports_text(rec),
            "Binds": o.volumes.iter().filter(|v| v.is_bind()).map(|v| format!("{}:{}{}", v.source.clone().unwrap_or_default(), v.destination, if v.readonly { ":ro" } else { "" })).collect::<Vec<_>>(),
            "Tmpfs": o.tmpfs.iter().map(|t| t.destination.clone()).collect::<Vec<_>>(),
        },
        "Config": {
            "Hostname": o.hostname.clone().unwrap_or_else(|| rec.id[..12].to_owned()),
            "User": o.user.clone().unwrap_or_default(),
            "Tty": o.tty,
            "OpenStdin": o.stdin,
            "Env": o.env,
            "Cmd": o.command,
            "Entrypoint": o.entrypoint,
            "WorkingDir": o.workdir.clone().unwrap_or_default(),
            "Labels": o.labels,
            "Image": rec.image,
            "StopSignal": rec.stop_signal,
        },
        "Volumes": rec.volumes,
    });
    // as docker's: under State, and only for a container with a health check
    if let Some(health) = std::fs::read(dir.join("health.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        doc["State"]["Health"] = health;
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_filters() {
        assert_eq!(duration_text(5), "5 seconds");
        assert_eq!(duration_text(90), "About a minute");
        assert_eq!(duration_text(7300), "2 hours");
        assert!(matches!(
            "status=running".parse::<Filter>().unwrap(),
            Filter::Status(Status::Running)
        ));
        assert!("status=bogus".parse::<Filter>().is_err());
        assert!("nokey".parse::<Filter>().is_err());
        assert_eq!(
            "label=a=b".parse::<Filter>().unwrap(),
            Filter::Label("a".into(), Some("b".into()))
        );
    }
}
