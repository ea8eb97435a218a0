//! `--log`, `--log-format`, `--debug`: tracing to a file or stderr, and the
//! final error as a runc-style JSON line (`{"level":"error","msg":...}`),
//! which conmon reads back from the log file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use tracing::Level;

use crate::cli::Global;

/// Where the final error goes besides stderr.
pub struct Log {
    file: Option<Mutex<File>>,
    json: bool,
}

impl Log {
    /// Records the command's error.
    pub fn error(&self, msg: &str) {
        let Some(f) = &self.file else { return };
        let Ok(mut f) = f.lock() else { return };
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": kontti_runtime::state::now_rfc3339()}).to_string()
        } else {
            format!(
                "time=\"{}\" level=error msg={msg:?}",
                kontti_runtime::state::now_rfc3339()
            )
        };
        let _ = writeln!(f, "{line}");
    }
}

/// Sets up tracing per the global flags.
pub fn init(g: &Global) -> Log {
    let level = if g.debug { Level::DEBUG } else { Level::WARN };
    let json = g.log_format.as_deref() == Some("json");
    let open = |p: &std::path::Path| OpenOptions::new().create(true).append(true).open(p).ok();
    let file = g.log.as_deref().and_then(open);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match (g.log.as_deref().and_then(open), json) {
        (Some(f), true) => {
            let _ = builder.json().with_writer(Mutex::new(f)).try_init();
        }
        (Some(f), false) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(Mutex::new(f))
                .try_init();
        }
        (None, _) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
        }
    }
    Log {
        file: file.map(Mutex::new),
        json,
    }
}
