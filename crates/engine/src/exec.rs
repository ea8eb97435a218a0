//! `kontti exec`: one more process in a running container, run by its own
//! `kontti-supervisor exec`, which serves the process's stdio on a socket
//! with the attach protocol and writes its exit code to a file.

use std::path::PathBuf;

use kontti_supervisor::exit::ExitRecord;
use kontti_supervisor::spawn::ExecCommand;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::lifecycle::Engine;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub args: Vec<String>,
    /// Give it a terminal.
    pub tty: bool,
    /// Forward the client's stdin.
    pub stdin: bool,
    /// `-u`: user (default: the container's).
    pub user: Option<String>,
    /// `-w`: working directory (default: the container's).
    pub workdir: Option<String>,
    /// `-e`: `KEY=value` entries over the container's environment.
    pub env: Vec<String>,
}

/// A started exec: connect to `socket` to start the process and see its
/// output; its exit code lands in `exit_file`.
#[derive(Debug)]
pub struct ExecSession {
    /// The attach socket of the process.
    pub socket: PathBuf,
    /// Where its exit record is written.
    pub exit_file: PathBuf,
    /// The exec's directory (process.json, exit.json).
    pub dir: PathBuf,
    /// The exec supervisor's pid, which leads the process group of the
    /// process and its children (0 when unknown).
    pub supervisor_pid: i32,
}

impl ExecSession {
    /// The exit code, once the process has exited.
    pub fn exit_code(&self) -> Option<i32> {
        ExitRecord::read(&self.exit_file).ok().map(|e| e.exit_code)
    }

    /// Removes the exec's files.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Engine {
    /// Prepares and spawns an exec supervisor for `req` in running container
    /// `what`.
    pub fn exec(&self, what: &str, req: &ExecRequest) -> Result<ExecSession> {
        if req.args.is_empty() {
            return Err(EngineError::invalid("exec", "", "a command is required"));
        }
        let rec = self.inspect(what)?;
        if rec.state.status != crate::Status::Running {
            return Err(EngineError::WrongState {
                id: rec.name,
                status: rec.state.status.to_string(),
                reason: "exec needs a running container",
            });
        }
        let id = rec.id.clone();
        let dir = self.containers().dir_of(&id);
        let config_path = dir.join("bundle").join("config.json");
        let config: Value = std::fs::read(&config_path)
            .map_err(|e| EngineError::io("read", &config_path, e))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| EngineError::Corrupt {
                    path: config_path.clone(),
                    reason: e.to_string(),
                })
            })?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(req.args);
        process["terminal"] = Value::Bool(req.tty);
        if let Some(u) = &req.user {
            let user = crate::user::resolve(&dir.join("bundle").join("rootfs"), u)?;
            process["user"] = serde_json::json!({"uid": user.uid, "gid": user.gid});
            if !user.additional_gids.is_empty() {
                process["user"]["additionalGids"] = serde_json::json!(user.additional_gids);
            }
        }
        if let Some(w) = &req.workdir {
            if !w.starts_with('/') {
                return Err(EngineError::invalid(
                    "--workdir",
                    w,
                    "the working directory must be an absolute path",
                ));
            }
            process["cwd"] = Value::String(w.clone());
        }
        if !req.env.is_empty() {
            let mut env: Vec<String> = process["env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            for e in &req.env {
                let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
                env.push(e.clone());
            }
            process["env"] = serde_json::json!(env);
        }
        let exec_id = &crate::container::new_id()?[..12];
        let exec_dir = dir.join("exec").join(exec_id);
        std::fs::create_dir_all(&exec_dir).map_err(|e| EngineError::io("create", &exec_dir, e))?;
        let process_file = exec_dir.join("process.json");
        let bytes = serde_json::to_vec(&process).map_err(|e| EngineError::Corrupt {
            path: process_file.clone(),
            reason: e.to_string(),
        })?;
        let mut session = ExecSession {
            socket: self.short_dir_of(&id)?.join(format!("exec-{exec_id}.sock")),
            exit_file: exec_dir.join("exit.json"),
            dir: exec_dir,
            supervisor_pid: 0,
        };
        let r = std::fs::write(&process_file, bytes)
            .map_err(|e| EngineError::io("write", &process_file, e))
            .and_then(|()| {
                let mut cmd = ExecCommand::new(
                    &id,
                    &self.runtime_root(),
                    &process_file,
                    &session.socket,
                    &session.exit_file,
                );
                if let Some(b) = self.supervisor_binary() {
                    cmd.binary = b.to_owned();
                }
                cmd.tty = req.tty;
                cmd.stdin = req.stdin;
                cmd.spawn()
                    .map_err(|e| EngineError::Supervisor(e.to_string()))
            });
        match r {
            Ok(ready) => {
                session.supervisor_pid = ready.supervisor_pid;
                Ok(session)
            }
            Err(e) => {
                session.remove();
                Err(e)
            }
        }
    }
}
