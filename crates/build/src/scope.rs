//! The variables in effect at each step: ARG and ENV scoping as Docker
//! defines it, predefined proxy args and the automatic platform args.

use std::collections::BTreeMap;

use crate::ast::{ArgDecl, Instruction};
use crate::expand::{ExpandError, Variables, expand_word};

/// Build args every Dockerfile may use without declaring them. Their values
/// reach RUN steps but, unless declared with ARG, never the cache key.
pub const PREDEFINED_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform args BuildKit defines in the global scope (usable in FROM
/// lines, and in a stage after `ARG NAME`), for a build platform and a target
/// platform such as `linux/amd64` or `linux/arm/v7`.
pub fn automatic_args(build_platform: &str, target_platform: &str) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, platform) in [("BUILD", build_platform), ("TARGET", target_platform)] {
        let mut parts = platform.splitn(3, '/');
        let os = parts.next().unwrap_or_default();
        let arch = parts.next().unwrap_or_default();
        let variant = parts.next().unwrap_or_default();
        args.insert(format!("{prefix}PLATFORM"), platform.to_string());
        args.insert(format!("{prefix}OS"), os.to_string());
        args.insert(format!("{prefix}ARCH"), arch.to_string());
        args.insert(format!("{prefix}VARIANT"), variant.to_string());
    }
    args
}

/// The platform of the machine the build runs on, as `os/arch`.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

/// What ARG declarations read their values from.
#[derive(Debug, Clone, Copy)]
pub struct ArgSources<'a> {
    /// `--build-arg` values.
    pub build_args: &'a BTreeMap<String, String>,
    /// Global (before the first FROM) and automatic args, after overrides.
    pub meta_args: &'a BTreeMap<String, String>,
}

/// The variables in effect at one step of a stage: the stage's environment
/// (from the base image's config, then ENV) and the ARGs declared so far.
/// ENV wins over ARG of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepEnv {
    /// The environment, in order (as an image config's `Env`).
    pub env: Vec<(String, String)>,
    /// The ARGs declared in the stage and their values.
    pub args: BTreeMap<String, String>,
    /// Where each name of `env` sits, so that setting and looking up a
    /// variable does not scan the whole environment (a Dockerfile with
    /// thousands of ENV pairs would be quadratic). Rebuilt when `env` was
    /// changed from outside.
    index: BTreeMap<String, usize>,
}

impl StepEnv {
    /// Starts a stage from its base image's `Env` (`KEY=value` strings).
    pub fn from_image_env<S: AsRef<str>>(env: &[S]) -> Self {
        let mut out = StepEnv::default();
        for e in env {
            let (k, v) = e.as_ref().split_once('=').unwrap_or((e.as_ref(), ""));
            out.set_env(k.to_string(), v.to_string());
        }
        out
    }

    fn set_env(&mut self, key: String, value: String) {
        if !self.index_is_current() {
            self.index = self
                .env
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
        }
        match self.position(&key) {
            Some(i) => self.env[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.env.len());
                self.env.push((key, value));
            }
        }
    }

    /// Whether the index covers `env` as it is (the field is public).
    fn index_is_current(&self) -> bool {
        self.index.len() == self.env.len()
    }

    /// Where `key` sits in `env`.
    fn position(&self, key: &str) -> Option<usize> {
        if self.index_is_current() {
            self.index
                .get(key)
                .copied()
                .filter(|&i| self.env.get(i).is_some_and(|(k, _)| k == key))
        } else {
            self.env.iter().position(|(k, _)| k == key)
        }
    }

    /// Applies ENV and ARG instructions (other instructions leave the
    /// variables as they are). Values are expanded with the variables in
    /// effect before the instruction, as Docker does.
    pub fn apply(
        &mut self,
        instruction: &Instruction,
        sources: ArgSources<'_>,
        escape: char,
    ) -> Result<(), ExpandError> {
        match instruction {
            Instruction::Env(pairs) => {
                let mut values = Vec::with_capacity(pairs.len());
                for kv in pairs {
                    values.push((
                        expand_word(&kv.key, escape, self)?,
                        expand_word(&kv.value, escape, self)?,
                    ));
                }
                for (k, v) in values {
                    self.set_env(k, v);
                }
            }
            Instruction::Arg(decls) => {
                for decl in decls {
                    if let Some(v) = self.arg_value(decl, sources, escape)? {
                        self.args.insert(decl.name.clone(), v);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn arg_value(
        &self,
        decl: &ArgDecl,
        sources: ArgSources<'_>,
        escape: char,
    ) -> Result<Option<String>, ExpandError> {
        if let Some(v) = sources.build_args.get(&decl.name) {
            return Ok(Some(v.clone()));
        }
        match &decl.default {
            Some(d) => Ok(Some(expand_word(d, escape, self)?)),
            None => Ok(sources.meta_args.get(&decl.name).cloned()),
        }
    }

    /// The environment a RUN step sees: ENV, then declared ARGs that ENV
    /// does not override, then predefined proxy args given as build args.
    pub fn run_environment(&self, build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut out = self.env.clone();
        for (k, v) in &self.args {
            if self.position(k).is_none() {
                out.push((k.clone(), v.clone()));
            }
        }
        for name in PREDEFINED_ARGS {
            if let Some(v) = build_args.get(name)
                && self.position(name).is_none()
                && !self.args.contains_key(name)
            {
                out.push((name.to_string(), v.clone()));
            }
        }
        out
    }
}

impl Variables for StepEnv {
    fn var(&self, name: &str) -> Option<&str> {
        self.position(name)
            .map(|i| self.env[i].1.as_str())
            .or_else(|| self.args.get(name).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::KeyValue;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn arg(name: &str, default: Option<&str>) -> Instruction {
        Instruction::Arg(vec![ArgDecl {
            name: name.into(),
            default: default.map(str::to_string),
        }])
    }

    #[test]
    fn arg_precedence() {
        let build = map(&[("A", "from-cli")]);
        let meta = map(&[("G", "global"), ("A", "global-a")]);
        let src = ArgSources {
            build_args: &build,
            meta_args: &meta,
        };
        let mut env = StepEnv::default();
        env.apply(&arg("A", Some("default")), src, '\\')
            .expect("apply");
        env.apply(&arg("G", None), src, '\\').expect("apply");
        env.apply(&arg("H", Some("${G}-h")), src, '\\')
            .expect("apply");
        env.apply(&arg("UNSET", None), src, '\\').expect("apply");
        assert_eq!(env.var("A"), Some("from-cli"));
        assert_eq!(env.var("G"), Some("global"));
        assert_eq!(env.var("H"), Some("global-h"));
        assert_eq!(env.var("UNSET"), None);
    }

    #[test]
    fn env_wins_and_expands_with_previous_values() {
        let empty = BTreeMap::new();
        let src = ArgSources {
            build_args: &empty,
            meta_args: &empty,
        };
        let mut env = StepEnv::from_image_env(&["PATH=/bin", "X=old"]);
        let set = Instruction::Env(vec![
            KeyValue {
                key: "X".into(),
                value: "new".into(),
            },
            KeyValue {
                key: "Y".into(),
                value: "$X:$PATH".into(),
            },
        ]);
        env.apply(&set, src, '\\').expect("apply");
        assert_eq!(env.var("Y"), Some("old:/bin"));
        env.apply(&arg("X", Some("arg")), src, '\\').expect("apply");
        assert_eq!(env.var("X"), Some("new"));
    }

    #[test]
    fn many_env_pairs_keep_order_and_the_last_value() {
        let empty = BTreeMap::new();
        let src = ArgSources {
            build_args: &empty,
            meta_args: &empty,
        };
        let mut env = StepEnv::from_image_env(&["PATH=/bin"]);
        let pairs: Vec<KeyValue> = (0..20_000)
            .map(|i| KeyValue {
                key: format!("V{}", i % 10_000),
                value: format!("{i}"),
            })
            .collect();
        env.apply(&Instruction::Env(pairs), src, '\\')
            .expect("apply");
        assert_eq!(env.env.len(), 10_001);
        assert_eq!(env.env[1], ("V0".to_string(), "10000".to_string()));
        assert_eq!(env.var("V9999"), Some("19999"));
        assert_eq!(env.var("PATH"), Some("/bin"));
        // the field is public: a change from outside is still seen
        env.env.insert(0, ("OUTSIDE".into(), "1".into()));
        assert_eq!(env.var("OUTSIDE"), Some("1"));
        assert_eq!(env.var("V0"), Some("10000"));
        let set = Instruction::Env(vec![KeyValue {
            key: "OUTSIDE".into(),
            value: "2".into(),
        }]);
        env.apply(&set, src, '\\').expect("apply");
        assert_eq!(env.env[0], ("OUTSIDE".to_string(), "2".to_string()));
        assert_eq!(env.env.len(), 10_002);
    }

    #[test]
    fn proxies_reach_run_but_not_args() {
        let build = map(&[("HTTP_PROXY", "http://p:3128"), ("OTHER", "x")]);
        let env = StepEnv::default();
        let run = env.run_environment(&build);
        assert_eq!(
            run,
            vec![("HTTP_PROXY".to_string(), "http://p:3128".to_string())]
        );
        assert!(env.args.is_empty());
    }

    #[test]
    fn automatic_platform_args() {
        let a = automatic_args("linux/amd64", "linux/arm/v7");
        assert_eq!(a["TARGETARCH"], "arm");
        assert_eq!(a["TARGETVARIANT"], "v7");
        assert_eq!(a["BUILDOS"], "linux");
    }
}
