//! Seccomp: compiles an OCI `linux.seccomp` profile to a classic BPF filter
//! and installs it.
//!
//! The compiler is kontti's own (no libseccomp): it resolves syscall names
//! per architecture from a static table, checks `seccomp_data.arch` first
//! (the native architecture always, plus the profile's `architectures`:
//! x86_64, x86, x32, aarch64, arm), and lays out a binary search over
//! syscall-number intervals (see `compile.rs`). Rules for one syscall are
//! tried in profile order; the first match wins. As in runc, conditions of
//! one rule are ANDed, except that a rule with two conditions on the same
//! argument is split into one rule per condition (ORed). Names unknown on
//! an architecture are skipped (debug log), as runc does.
//!
//! It does not support `SCMP_ACT_NOTIFY` (refused with a clear error), and
//! it does not set `no_new_privs`: the caller orders that against
//! capability changes and calls [`SeccompProgram::install`] last.

mod arch;
mod bpf;
mod compile;

use std::io;

use kontti_core::ErrorKind;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use arch::{FilterArch, SyscallTable};
use bpf::ret;
pub use bpf::{Insn, MAX_INSNS};
use compile::{ArchRules, Cond, Op, Plan, Rule};

/// The largest errno a filter can return (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// kontti's default profile (an allow-list; `ERRNO(EPERM)` otherwise).
pub const DEFAULT_PROFILE_JSON: &str = include_str!("../../profiles/default-seccomp.json");

/// Why a profile cannot be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// a field of the profile is invalid
    #[error("invalid linux.seccomp.{field}: {reason}")]
    Invalid {
        /// The field, e.g. `syscalls[2].args[0].index`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// the profile is not valid JSON for the OCI schema
    #[error("invalid seccomp profile at {path}: {message}")]
    Parse {
        /// Where in the document.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// SCMP_ACT_NOTIFY needs a seccomp agent
    #[error(
        "linux.seccomp.{field}: SCMP_ACT_NOTIFY is not supported (kontti has no seccomp agent)"
    )]
    Notify {
        /// Where the action appears.
        field: String,
    },
    /// the compiled program is longer than the kernel takes
    #[error("the compiled seccomp filter has {0} instructions, above the kernel's limit of 4096")]
    TooLong(usize),
    /// the seccomp(2) call failed
    #[error("installing the seccomp filter: {0}")]
    Install(#[source] io::Error),
}

impl SeccompError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SeccompError::Invalid { .. }
            | SeccompError::Parse { .. }
            | SeccompError::TooLong(_) => ErrorKind::Invalid,
            SeccompError::Notify { .. } => ErrorKind::Unavailable,
            SeccompError::Install(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                ErrorKind::Forbidden
            }
            SeccompError::Install(_) => ErrorKind::Internal,
        }
    }
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    insns: Vec<Insn>,
    flags: u32,
}

/// `SECCOMP_FILTER_FLAG_*`.
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;

impl SeccompProgram {
    /// The BPF instructions.
    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Installs the filter on the calling thread (all threads with TSYNC)
    /// with seccomp(SECCOMP_SET_MODE_FILTER). The caller must have set
    /// `no_new_privs` or hold CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<(), SeccompError> {
        crate::sys::seccomp::set_mode_filter(&self.insns, self.flags).map_err(SeccompError::Install)
    }
}

/// Parses a profile (the `linux.seccomp` object) from JSON, naming the
/// offending field on error.
pub fn parse_profile(json: &str) -> Result<LinuxSeccomp, SeccompError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| SeccompError::Parse {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// kontti's default profile, parsed.
pub fn default_profile() -> Result<LinuxSeccomp, SeccompError> {
    parse_profile(DEFAULT_PROFILE_JSON)
}

fn invalid(field: String, reason: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The return value of an action.
fn action_value(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
) -> Result<u32, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => ret::ALLOW,
        LinuxSeccompAction::ScmpActLog => ret::LOG,
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ret::KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => ret::KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => ret::TRAP,
        LinuxSeccompAction::ScmpActErrno => {
            let errno = errno_ret.unwrap_or(libc::EPERM as u32);
            if errno > MAX_ERRNO {
                return Err(invalid(
                    format!("{field}errnoRet"),
                    format!("{errno} is above {MAX_ERRNO}"),
                ));
            }
            ret::ERRNO | errno
        }
        LinuxSeccompAction::ScmpActTrace => {
            let data = errno_ret.unwrap_or(libc::EPERM as u32);
            if data > 0xffff {
                return Err(invalid(
                    format!("{field}errnoRet"),
                    format!("{data} does not fit in 16 bits"),
                ));
            }
            ret::TRACE | data
        }
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Notify {
                field: format!("{field}action"),
            });
        }
    })
}

/// Compiles `profile` for this host's architecture and the profile's
/// `architectures`.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let default_action = match action_value(
        profile.default_action(),
        profile.default_errno_ret(),
        "default",
    ) {
        Err(SeccompError::Invalid { reason, .. }) => {
            return Err(invalid("defaultErrnoRet".into(), reason));
        }
        Err(SeccompError::Notify { .. }) => {
            return Err(SeccompError::Notify {
                field: "defaultAction".into(),
            });
        }
        other => other?,
    };

    let mut arches = vec![FilterArch::native()];
    for (i, a) in profile.architectures().iter().flatten().enumerate() {
        let fa = FilterArch::from_oci(*a).ok_or_else(|| {
            invalid(
                format!("architectures[{i}]"),
                format!("{a} is not supported (kontti filters SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64 and SCMP_ARCH_ARM)"),
            )
        })?;
        if !arches.contains(&fa) {
            arches.push(fa);
        }
    }

    let mut flags = 0;
    for f in profile.flags().iter().flatten() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags |= FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                tracing::warn!(
                    "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: it only applies to SCMP_ACT_NOTIFY"
                );
            }
        }
    }

    // Rules, and the (name, profile entry) pairs to resolve per architecture.
    let mut rules: Vec<Rule> = Vec::new();
    let mut entry_rules: Vec<(usize, usize)> = Vec::new();
    let mut wanted: Vec<(&str, usize)> = Vec::new();
    for (si, sc) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("syscalls[{si}].");
        let action = action_value(sc.action(), sc.errno_ret(), &field)?;
        let mut conds = Vec::new();
        let mut per_index = [0usize; 6];
        for (ai, arg) in sc.args().iter().flatten().enumerate() {
            if arg.index() > 5 {
                return Err(invalid(
                    format!("{field}args[{ai}].index"),
                    format!("{} is above 5", arg.index()),
                ));
            }
            per_index[arg.index()] += 1;
            let op = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => Op::Ne,
                LinuxSeccompOperator::ScmpCmpLt => Op::Lt,
                LinuxSeccompOperator::ScmpCmpLe => Op::Le,
                LinuxSeccompOperator::ScmpCmpEq => Op::Eq,
                LinuxSeccompOperator::ScmpCmpGe => Op::Ge,
                LinuxSeccompOperator::ScmpCmpGt => Op::Gt,
                LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq,
            };
            if op == Op::MaskedEq && arg.value_two().is_none() {
                return Err(invalid(
                    format!("{field}args[{ai}].valueTwo"),
                    "SCMP_CMP_MASKED_EQ needs valueTwo",
                ));
            }
            conds.push(Cond {
                index: arg.index(),
                op,
                value: arg.value(),
                value_two: arg.value_two().unwrap_or(0),
            });
        }
        let first = rules.len();
        if per_index.iter().any(|&n| n > 1) {
            // Several conditions on one argument: one rule each (OR), as runc.
            rules.extend(conds.into_iter().map(|c| Rule {
                conds: vec![c],
                action,
            }));
        } else {
            rules.push(Rule { conds, action });
        }
        entry_rules.push((first, rules.len()));
        wanted.extend(sc.names().iter().map(|n| (n.as_str(), si)));
    }
    let per_arch = resolve(&arches, &mut wanted, &entry_rules);

    let plan = Plan {
        default_action,
        bad_arch_action: ret::KILL_PROCESS,
        arches: per_arch,
        rules,
    };
    let insns = compile::emit(&plan);
    if insns.len() > MAX_INSNS {
        return Err(SeccompError::TooLong(insns.len()));
    }
    Ok(SeccompProgram { insns, flags })
}

/// Resolves the profile's names on each architecture by merging the sorted
/// names with each sorted syscall table (linear, no per-name search), and
/// groups the rules of each syscall number in profile order.
fn resolve(
    arches: &[FilterArch],
    wanted: &mut [(&str, usize)],
    entry_rules: &[(usize, usize)],
) -> Vec<ArchRules> {
    wanted.sort_unstable();
    let mut known = vec![false; wanted.len()];
    let mut out = Vec::with_capacity(arches.len());
    for &arch in arches {
        let table = SyscallTable::new(arch);
        let entries: Vec<(&str, u32)> = table.entries().collect();
        let mut hits: Vec<(u32, usize)> = Vec::with_capacity(wanted.len());
        let (mut i, mut j) = (0, 0);
        while i < wanted.len() && j < entries.len() {
            match wanted[i].0.cmp(entries[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    hits.push((entries[j].1, wanted[i].1));
                    known[i] = true;
                    i += 1;
                }
            }
        }
        hits.sort_unstable();
        let mut rules = ArchRules {
            arch,
            groups: Vec::with_capacity(hits.len()),
            ids: Vec::with_capacity(hits.len()),
        };
        for (k, &(nr, entry)) in hits.iter().enumerate() {
            if k == 0 || hits[k - 1].0 != nr {
                let at = rules.ids.len();
                rules.groups.push((nr, at, at));
            }
            let (from, to) = entry_rules[entry];
            rules.ids.extend(from..to);
            if let Some(g) = rules.groups.last_mut() {
                g.2 = rules.ids.len();
            }
        }
        out.push(rules);
    }
    for (k, (name, _)) in wanted.iter().enumerate() {
        if !known[k] {
            tracing::debug!(syscall = %name, "unknown syscall skipped");
        }
    }
    out
}

#[cfg(test)]
mod interp;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_host;
