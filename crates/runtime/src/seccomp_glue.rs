//! The runtime's view of the seccomp module: compile the config's profile
//! in the runtime (before anything is created, so that an invalid profile
//! leaves nothing behind) and install it in the init.

use oci_spec::runtime::Spec;

use crate::error::RuntimeError;
use crate::seccomp::SeccompProgram;

/// A compiled filter ready to install.
#[derive(Debug)]
pub struct Seccomp(SeccompProgram);

/// Compiles `linux.seccomp`, if any.
pub fn compile(spec: &Spec) -> Result<Option<Seccomp>, RuntimeError> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    Ok(Some(Seccomp(crate::seccomp::compile(profile)?)))
}

impl Seccomp {
    /// Installs the filter on the calling process.
    pub fn install(&self) -> Result<(), RuntimeError> {
        Ok(self.0.install()?)
    }
}
