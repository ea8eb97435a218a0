//! Cache keys: each step's key chains its parent's key with the expanded
//! instruction, the build args and environment in effect, and the digests of
//! what it reads (context files, other stages). Pure functions.
//!
//! Secrets never enter a key: a `RUN --mount=type=secret` step contributes
//! only the mount's options (id, target), never the secret's content, and
//! the executor must not put a secret into the [`StepEnv`].

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ast::Instruction;
use crate::context::ContentDigest;
use crate::scope::StepEnv;

/// The cache key of a step (or of a stage's base).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// Something a step reads besides its parent's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepInput<'a> {
    /// Files of the build context (COPY/ADD sources, bind mounts).
    Context(ContentDigest),
    /// The result of another stage (`COPY --from=stage`, `--mount from=`).
    Stage(CacheKey),
    /// An image, by its manifest digest (`COPY --from=image`).
    Image(&'a str),
}

fn field(h: &mut Sha256, tag: &[u8], bytes: &[u8]) {
    h.update(tag);
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

impl CacheKey {
    /// The key of a stage's starting point: an image's manifest digest,
    /// `scratch`, or another stage's final key as text, plus the platform.
    pub fn base(base: &str, platform: &str) -> CacheKey {
        let mut h = Sha256::new();
        field(&mut h, b"kontti-cache-v1/base", base.as_bytes());
        field(&mut h, b"platform", platform.as_bytes());
        CacheKey(h.finalize().into())
    }

    /// The key of the step after `self`: `instruction` must be expanded
    /// ([`Instruction::expanded`]) with `env`, the variables in effect.
    pub fn step(
        &self,
        instruction: &Instruction,
        env: &StepEnv,
        inputs: &[StepInput<'_>],
    ) -> CacheKey {
        let mut h = Sha256::new();
        field(&mut h, b"kontti-cache-v1/parent", &self.0);
        // Serialising the typed instruction (not its text) keeps formatting
        // changes (spaces, continuations) from causing misses.
        let text = serde_json::to_vec(instruction)
            .unwrap_or_else(|_| format!("{instruction:?}").into_bytes());
        field(&mut h, b"instruction", &text);
        for (k, v) in &env.env {
            field(&mut h, b"env-key", k.as_bytes());
            field(&mut h, b"env-value", v.as_bytes());
        }
        for (k, v) in &env.args {
            field(&mut h, b"arg-key", k.as_bytes());
            field(&mut h, b"arg-value", v.as_bytes());
        }
        for input in inputs {
            match input {
                StepInput::Context(d) => field(&mut h, b"context", &d.0),
                StepInput::Stage(k) => field(&mut h, b"stage", &k.0),
                StepInput::Image(d) => field(&mut h, b"image", d.as_bytes()),
            }
        }
        CacheKey(h.finalize().into())
    }
}
