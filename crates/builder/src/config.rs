//! How the instructions that add no layer change the image config (CMD,
//! ENTRYPOINT, ENV, LABEL, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL,
//! HEALTHCHECK, SHELL, ONBUILD, MAINTAINER). Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use kontti_build::{CommandForm, Healthcheck, Instruction, StepEnv, clean_path};
use kontti_image::config::Empty;
use kontti_image::{Healthcheck as ImageHealthcheck, ImageConfig};

/// The shell of shell-form commands when the image sets none.
pub(crate) fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

/// The config's shell, or the default.
pub(crate) fn shell_of(config: &ImageConfig) -> Vec<String> {
    config.shell.clone().unwrap_or_else(default_shell)
}

fn command(form: &CommandForm, shell: &[String]) -> Vec<String> {
    match form {
        CommandForm::Exec(args) => args.clone(),
        CommandForm::Shell(text) => {
            let mut v = shell.to_vec();
            v.push(text.clone());
            v
        }
    }
}

fn nanos(d: Option<Duration>) -> Option<i64> {
    d.filter(|d| !d.is_zero())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// WORKDIR `path` relative to the current working directory.
pub(crate) fn join_workdir(current: Option<&str>, path: &str) -> String {
    if path.starts_with('/') {
        clean_path(path)
    } else {
        clean_path(&format!("{}/{path}", current.unwrap_or("/")))
    }
}

/// The state of a stage's config that is not in [`ImageConfig`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigState {
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set_here: bool,
    /// MAINTAINER.
    pub author: Option<String>,
}

/// Applies an expanded metadata instruction to `config`; `env` is the
/// environment after it. Returns false for instructions that touch the
/// filesystem (RUN, COPY, ADD), which the executor handles.
pub(crate) fn apply(
    config: &mut ImageConfig,
    state: &mut ConfigState,
    instruction: &Instruction,
    env: &StepEnv,
    onbuild_text: Option<&str>,
) -> bool {
    let shell = shell_of(config);
    match instruction {
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => return false,
        Instruction::Cmd(form) => {
            config.cmd = Some(command(form, &shell));
            state.cmd_set_here = true;
        }
        Instruction::Entrypoint(form) => {
            config.entrypoint = Some(command(form, &shell));
            if !state.cmd_set_here {
                config.cmd = None;
            }
        }
        Instruction::Shell(list) => config.shell = Some(list.clone()),
        Instruction::Env(_) => {
            config.env = Some(env.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
        }
        Instruction::Arg(_) => {}
        Instruction::Workdir(path) => {
            config.working_dir = Some(join_workdir(config.working_dir.as_deref(), path));
        }
        Instruction::User(u) => config.user = Some(u.clone()),
        Instruction::Expose(ports) => {
            let map = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                let key = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                map.insert(key, Empty {});
            }
        }
        Instruction::Label(pairs) => {
            let map = config.labels.get_or_insert_with(BTreeMap::new);
            for kv in pairs {
                map.insert(kv.key.clone(), kv.value.clone());
            }
        }
        Instruction::Volume(list) => {
            let map = config.volumes.get_or_insert_with(BTreeMap::new);
            for v in list {
                map.insert(v.clone(), Empty {});
            }
        }
        Instruction::StopSignal(s) => config.stop_signal = Some(s.clone()),
        Instruction::Healthcheck(Healthcheck::None) => {
            config.healthcheck = Some(ImageHealthcheck {
                test: Some(vec!["NONE".into()]),
                ..ImageHealthcheck::default()
            });
        }
        Instruction::Healthcheck(Healthcheck::Cmd(h)) => {
            let test = match &h.command {
                CommandForm::Exec(args) => {
                    let mut v = vec!["CMD".to_string()];
                    v.extend(args.iter().cloned());
                    v
                }
                CommandForm::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
            };
            config.healthcheck = Some(ImageHealthcheck {
                test: Some(test),
                interval: nanos(h.interval),
                timeout: nanos(h.timeout),
                start_period: nanos(h.start_period),
                start_interval: nanos(h.start_interval),
                retries: h.retries.map(i64::from),
            });
        }
        Instruction::Onbuild(_) => {
            if let Some(text) = onbuild_text {
                config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(text.to_string());
            }
        }
        Instruction::Maintainer(name) => state.author = Some(name.clone()),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontti_build::{ParseOptions, parse};

    fn build(text: &str) -> ImageConfig {
        let df = parse(text, &ParseOptions::default()).unwrap();
        let mut config = ImageConfig::default();
        let mut state = ConfigState::default();
        let mut env = StepEnv::default();
        let empty = BTreeMap::new();
        let sources = kontti_build::ArgSources {
            build_args: &empty,
            meta_args: &empty,
        };
        for node in &df.stages[0].instructions {
            let ins = node.expanded_in(&env, '\\', "Dockerfile").unwrap();
            env.apply(&node.instruction, sources, '\\').unwrap();
            let text = match &node.instruction {
                Instruction::Onbuild(inner) => Some(inner.text.clone()),
                _ => None,
            };
            apply(&mut config, &mut state, &ins, &env, text.as_deref());
        }
        config
    }

    #[test]
    fn metadata_instructions() {
        let c = build(
            "FROM scratch\nENV A=1 B=$A\nCMD [\"x\"]\nENTRYPOINT run me\nWORKDIR /a\nWORKDIR b/../c\n\
             EXPOSE 80 53/udp\nLABEL k=v\nVOLUME /data\nSTOPSIGNAL SIGINT\nUSER 1:2\n\
             HEALTHCHECK --interval=5s --retries=2 CMD true\nONBUILD RUN echo hi\n",
        );
        // Docker expands with the values before the instruction.
        assert_eq!(c.env.unwrap(), ["A=1", "B="]);
        assert_eq!(c.cmd.unwrap(), ["x"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "run me"]);
        assert_eq!(c.working_dir.as_deref(), Some("/a/c"));
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels.unwrap()["k"], "v");
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.user.as_deref(), Some("1:2"));
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test.unwrap(), ["CMD-SHELL", "true"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(2));
        assert_eq!(c.on_build.unwrap(), ["RUN echo hi"]);
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd() {
        let mut config = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..ImageConfig::default()
        };
        let mut state = ConfigState::default();
        let env = StepEnv::default();
        apply(
            &mut config,
            &mut state,
            &Instruction::Entrypoint(CommandForm::Exec(vec!["e".into()])),
            &env,
            None,
        );
        assert_eq!(config.cmd, None);
    }
}
