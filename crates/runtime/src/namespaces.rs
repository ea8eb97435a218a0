//! Namespace types: clone flags, /proc names, and the split of a config's
//! namespaces into those to create and those to join by path.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{IoContext, RuntimeError};
use crate::sys::fs as sfs;

/// The `CLONE_NEW*` flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> i32 {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

/// The name under `/proc/<pid>/ns/`.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The config's namespaces, split.
#[derive(Debug, Default)]
pub struct NamespacePlan {
    /// `CLONE_NEW*` flags to create at clone time (cgroup excluded: it is
    /// unshared by the init once it is in its cgroup).
    pub clone_flags: i32,
    /// A new cgroup namespace is wanted.
    pub new_cgroup: bool,
    /// A new user namespace is wanted.
    pub new_user: bool,
    /// A pid namespace is created or joined.
    pub pid_ns: bool,
    /// Namespaces to join: (type flag, open fd), user first.
    pub join: Vec<(i32, OwnedFd, PathBuf)>,
}

impl NamespacePlan {
    /// Splits `namespaces`, opening the ones to join.
    pub fn new(namespaces: &[LinuxNamespace]) -> Result<NamespacePlan, RuntimeError> {
        let mut plan = NamespacePlan::default();
        for ns in namespaces {
            let flag = clone_flag(ns.typ());
            plan.pid_ns |= ns.typ() == LinuxNamespaceType::Pid;
            match ns.path() {
                Some(p) => {
                    let fd = sfs::open(p, libc::O_RDONLY)
                        .ctx(|| format!("open namespace {}", p.display()))?;
                    plan.join.push((flag, fd, p.clone()));
                }
                None if ns.typ() == LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                None => {
                    plan.new_user |= ns.typ() == LinuxNamespaceType::User;
                    plan.clone_flags |= flag;
                }
            }
        }
        // the user namespace is joined first so that the others are joined
        // with its capabilities
        plan.join.sort_by_key(|(f, _, _)| *f != libc::CLONE_NEWUSER);
        Ok(plan)
    }
}
