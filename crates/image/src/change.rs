//! `--change` of `kontti import`: Dockerfile instructions that edit an image
//! config (`CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`, `LABEL`, `USER`, `VOLUME`,
//! `WORKDIR`, `STOPSIGNAL`), as `docker import --change` takes them. Each
//! change is parsed by kontti-build's Dockerfile parser; values are expanded
//! with the config's environment, as Docker does.

use std::collections::BTreeMap;

use kontti_build::{
    CommandForm, ExpandError, Instruction, ParseOptions, StepEnv, clean_path, expand_word,
};
use kontti_core::ErrorKind;

use crate::config::{Empty, ImageConfig};

/// The instructions `--change` accepts.
pub const ALLOWED: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "USER",
    "VOLUME",
    "WORKDIR",
    "STOPSIGNAL",
];

/// A `--change` that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Not one valid instruction.
    #[error("invalid --change {change:?}: {reason}")]
    Invalid {
        /// The change as given.
        change: String,
        /// What is wrong.
        reason: String,
    },
    /// A valid instruction that does not edit a config.
    #[error("--change {change:?}: {keyword} cannot be applied to an image config (allowed: {})", ALLOWED.join(", "))]
    NotAllowed {
        /// The change as given.
        change: String,
        /// Its instruction.
        keyword: String,
    },
}

impl ChangeError {
    /// The kind of failure: always bad input.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

const ESCAPE: char = '\\';

/// Applies `changes` to `config`, in order.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<(), ChangeError> {
    let mut cmd_set = false;
    for change in changes {
        let instruction = parse_one(change)?;
        apply(config, &instruction, &mut cmd_set).map_err(|e| ChangeError::Invalid {
            change: change.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn parse_one(change: &str) -> Result<Instruction, ChangeError> {
    let invalid = |reason: String| ChangeError::Invalid {
        change: change.to_owned(),
        reason,
    };
    if change.trim().is_empty() {
        return Err(invalid("empty".into()));
    }
    if change.contains(['\n', '\r']) {
        return Err(invalid("one instruction per --change".into()));
    }
    let options = ParseOptions {
        file_name: "--change".into(),
        ..ParseOptions::default()
    };
    let file =
        kontti_build::parse(&format!("FROM scratch\n{change}\n"), &options).map_err(|e| match e
            .position
        {
            // Column in the change itself; its line is the second.
            Some(p) => invalid(format!("column {}: {}", p.column, e.error)),
            None => invalid(e.error.to_string()),
        })?;
    let mut nodes = file
        .stages
        .into_iter()
        .next()
        .map(|s| s.instructions)
        .unwrap_or_default();
    if nodes.len() != 1 {
        return Err(invalid("not one instruction".into()));
    }
    let instruction = nodes.remove(0).instruction;
    if !ALLOWED.contains(&instruction.keyword()) {
        return Err(ChangeError::NotAllowed {
            change: change.to_owned(),
            keyword: instruction.keyword().to_owned(),
        });
    }
    Ok(instruction)
}

fn command(form: &CommandForm) -> Vec<String> {
    match form {
        CommandForm::Exec(args) => args.clone(),
        CommandForm::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.clone()],
    }
}

fn apply(
    config: &mut ImageConfig,
    instruction: &Instruction,
    cmd_set: &mut bool,
) -> Result<(), ExpandError> {
    let mut env = StepEnv::from_image_env(config.env.as_deref().unwrap_or_default());
    let expand = |w: &str, env: &StepEnv| expand_word(w, ESCAPE, env);
    match instruction {
        Instruction::Cmd(form) => {
            config.cmd = Some(command(form));
            *cmd_set = true;
        }
        Instruction::Entrypoint(form) => {
            config.entrypoint = Some(command(form));
            if !*cmd_set {
                config.cmd = None;
            }
        }
        Instruction::Env(_) => {
            let none = BTreeMap::new();
            let sources = kontti_build::ArgSources {
                build_args: &none,
                meta_args: &none,
            };
            env.apply(instruction, sources, ESCAPE)?;
            config.env = Some(env.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
        }
        Instruction::Expose(ports) => {
            let map = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                let p = expand(p, &env)?;
                let key = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                map.insert(key, Empty {});
            }
        }
        Instruction::Label(pairs) => {
            let mut labels = config.labels.take().unwrap_or_default();
            for kv in pairs {
                labels.insert(expand(&kv.key, &env)?, expand(&kv.value, &env)?);
            }
            config.labels = Some(labels);
        }
        Instruction::User(u) => config.user = Some(expand(u, &env)?),
        Instruction::Volume(list) => {
            let mut map = config.volumes.take().unwrap_or_default();
            for v in list {
                map.insert(expand(v, &env)?, Empty {});
            }
            config.volumes = Some(map);
        }
        Instruction::Workdir(path) => {
            let path = expand(path, &env)?;
            let current = config.working_dir.as_deref().unwrap_or("/");
            config.working_dir = Some(if path.starts_with('/') {
                clean_path(&path)
            } else {
                clean_path(&format!("{current}/{path}"))
            });
        }
        Instruction::StopSignal(s) => config.stop_signal = Some(expand(s, &env)?),
        // parse_one refused the others.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
