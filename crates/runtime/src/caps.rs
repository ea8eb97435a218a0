//! Linux capabilities: the config's five sets as bit masks, applied to the
//! container process.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{IoContext, RuntimeError};
use crate::sys::process::{self as sp, CapSets};

/// The kernel's number for a capability.
pub fn number(c: Capability) -> u32 {
    use Capability::*;
    match c {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// A set as a bit mask.
pub fn mask(set: Option<&Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .fold(0, |m, c| m | (1u64 << number(*c)))
}

/// The masks of all five sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapMasks {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

impl CapMasks {
    /// From the config (absent → no capabilities at all).
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> CapMasks {
        let Some(c) = c else {
            return CapMasks::default();
        };
        CapMasks {
            bounding: mask(c.bounding().as_ref()),
            effective: mask(c.effective().as_ref()),
            permitted: mask(c.permitted().as_ref()),
            inheritable: mask(c.inheritable().as_ref()),
            ambient: mask(c.ambient().as_ref()),
        }
    }
}

/// Drops every capability outside `bounding` from the bounding set (needs
/// CAP_SETPCAP: call before changing uid).
pub fn drop_bounding(bounding: u64) -> Result<(), RuntimeError> {
    for cap in 0..64u32 {
        if bounding & (1 << cap) != 0 {
            continue;
        }
        match sp::prctl(libc::PR_CAPBSET_DROP, u64::from(cap), 0) {
            Ok(_) => {}
            // past the kernel's last capability
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("drop capability {cap} from the bounding set"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Sets the effective, permitted and inheritable sets, then raises the
/// ambient ones (each must be permitted and inheritable, as the kernel
/// requires).
pub fn set(m: &CapMasks) -> Result<(), RuntimeError> {
    sp::capset(CapSets {
        effective: m.effective,
        permitted: m.permitted,
        inheritable: m.inheritable,
    })
    .ctx(|| "set capabilities".to_owned())?;
    // The kernel refuses an ambient capability that is not both permitted
    // and inheritable; runc's default spec lists ambient capabilities with
    // no inheritable set, so such entries are skipped quietly, as runc does.
    let raisable = m.ambient & m.permitted & m.inheritable;
    if raisable != m.ambient {
        tracing::debug!(
            skipped = format_args!("{:#x}", m.ambient & !raisable),
            "ambient capabilities that are not permitted and inheritable are not raised"
        );
    }
    for cap in 0..64u32 {
        if raisable & (1 << cap) == 0 {
            continue;
        }
        if let Err(e) = sp::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as u64,
            u64::from(cap),
        ) {
            tracing::warn!(
                "ambient capability {cap} not raised (it must be permitted and inheritable): {e}"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_kernel_numbers() {
        let set: Capabilities = [
            Capability::Kill,
            Capability::NetBindService,
            Capability::AuditWrite,
        ]
        .into_iter()
        .collect();
        assert_eq!(mask(Some(&set)), (1 << 5) | (1 << 10) | (1 << 29));
        assert_eq!(mask(None), 0);
        assert_eq!(number(Capability::CheckpointRestore), 40);
    }
}
