//! Resource usage of a cgroup.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Cgroup, CgroupError, Hierarchy};

/// Usage figures of a cgroup; a field is `None` when its controller is not
/// available.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CgroupStats {
    /// Memory in use, bytes.
    pub memory_usage: Option<u64>,
    /// Highest memory use seen, bytes.
    pub memory_max_usage: Option<u64>,
    /// The memory limit, bytes (`None` when unlimited).
    pub memory_limit: Option<u64>,
    /// Processes and threads in the cgroup.
    pub pids_current: Option<u64>,
    /// The pids limit (`None` when unlimited).
    pub pids_limit: Option<u64>,
    /// CPU time used, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
}

fn number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A limit file: `max` (v2) or a huge value (v1's "unlimited") is `None`.
fn limit(path: &Path) -> Option<u64> {
    number(path).filter(|v| *v < (1 << 62))
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

pub(super) fn collect(cg: &Cgroup) -> Result<CgroupStats, CgroupError> {
    let mut st = CgroupStats::default();
    if cg.hierarchy == Hierarchy::V2 {
        let Some(dir) = cg.v2_dir() else {
            return Ok(st);
        };
        if !dir.is_dir() {
            return Err(CgroupError::Read {
                path: dir,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        st.memory_usage = number(&dir.join("memory.current"));
        st.memory_max_usage = number(&dir.join("memory.peak"));
        st.memory_limit = limit(&dir.join("memory.max"));
        st.pids_current = number(&dir.join("pids.current"));
        st.pids_limit = limit(&dir.join("pids.max"));
        st.cpu_usage_ns = keyed(&dir.join("cpu.stat"), "usage_usec").map(|u| u * 1000);
        return Ok(st);
    }
    if let Some(dir) = cg.controller_dir("memory") {
        st.memory_usage = number(&dir.join("memory.usage_in_bytes"));
        st.memory_max_usage = number(&dir.join("memory.max_usage_in_bytes"));
        st.memory_limit = limit(&dir.join("memory.limit_in_bytes"));
    }
    if let Some(dir) = cg.controller_dir("pids") {
        st.pids_current = number(&dir.join("pids.current"));
        st.pids_limit = limit(&dir.join("pids.max"));
    }
    if let Some(dir) = cg.controller_dir("cpuacct") {
        st.cpu_usage_ns = number(&dir.join("cpuacct.usage"));
    }
    Ok(st)
}
