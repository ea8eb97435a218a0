//! Architectures a filter can cover, and their syscall tables.

use oci_spec::runtime::Arch;

/// x32 syscalls run under the x86_64 audit arch with this bit in `nr`.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// An architecture kontti compiles filters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FilterArch {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
}

impl FilterArch {
    /// The architecture this binary runs on.
    pub(crate) fn native() -> FilterArch {
        #[cfg(target_arch = "x86_64")]
        return FilterArch::X86_64;
        #[cfg(target_arch = "aarch64")]
        return FilterArch::Aarch64;
        #[cfg(target_arch = "x86")]
        return FilterArch::X86;
        #[cfg(target_arch = "arm")]
        return FilterArch::Arm;
    }

    /// Maps an OCI architecture; `None` for ones kontti has no table for.
    pub(crate) fn from_oci(a: Arch) -> Option<FilterArch> {
        Some(match a {
            Arch::ScmpArchNative => FilterArch::native(),
            Arch::ScmpArchX86_64 => FilterArch::X86_64,
            Arch::ScmpArchX32 => FilterArch::X32,
            Arch::ScmpArchX86 => FilterArch::X86,
            Arch::ScmpArchAarch64 => FilterArch::Aarch64,
            Arch::ScmpArchArm => FilterArch::Arm,
            _ => return None,
        })
    }

    /// `AUDIT_ARCH_*` as the kernel reports it in `seccomp_data.arch`.
    pub(crate) fn audit(self) -> u32 {
        match self {
            FilterArch::X86_64 | FilterArch::X32 => 0xc000_003e,
            FilterArch::X86 => 0x4000_0003,
            FilterArch::Aarch64 => 0xc000_00b7,
            FilterArch::Arm => 0x4000_0028,
        }
    }

    /// The end (exclusive) of the syscall numbers this architecture's
    /// kernels assign: every table here ends below 1024, and numbers at or
    /// above it are private ranges (ARM's 0x0f0000) or not syscalls at all.
    /// x32 numbers carry [`X32_SYSCALL_BIT`].
    pub(crate) fn syscall_end(self) -> u32 {
        const END: u32 = 1024;
        match self {
            FilterArch::X32 => X32_SYSCALL_BIT | END,
            _ => END,
        }
    }

    /// The syscall number of `name` on this architecture (a linear
    /// lookup; [`SyscallTable`] is the fast one).
    #[cfg(test)]
    pub(crate) fn syscall(self, name: &str) -> Option<u32> {
        SyscallTable::new(self).lookup(name)
    }
}

/// Syscall names of one architecture, sorted by name, built per compile
/// and merged with the profile's sorted names (the `syscalls` crate's own
/// lookup is a linear `match` over strings, which dominated compile time).
///
/// x32 numbers are the x86_64 ones with [`X32_SYSCALL_BIT`]; the few
/// syscalls that x32 numbers separately (512 and up, for compat structures)
/// are not matched, so on x32 they get the default action, the safe
/// direction for an allow-list.
pub(crate) struct SyscallTable {
    entries: Vec<(&'static str, u32)>,
    bit: u32,
}

impl SyscallTable {
    pub(crate) fn new(arch: FilterArch) -> SyscallTable {
        fn collect<T: Copy>(
            it: impl Iterator<Item = T>,
            name: fn(&T) -> &'static str,
            id: fn(&T) -> i32,
        ) -> Vec<(&'static str, u32)> {
            let mut v: Vec<(&'static str, u32)> = it
                .filter_map(|s| Some((name(&s), u32::try_from(id(&s)).ok()?)))
                .collect();
            v.sort_unstable_by(|a, b| a.0.cmp(b.0));
            v
        }
        use syscalls::{aarch64, arm, x86, x86_64};
        let entries = match arch {
            FilterArch::X86_64 | FilterArch::X32 => {
                collect(x86_64::Sysno::iter(), |s| s.name(), |s| s.id())
            }
            FilterArch::X86 => collect(x86::Sysno::iter(), |s| s.name(), |s| s.id()),
            FilterArch::Aarch64 => collect(aarch64::Sysno::iter(), |s| s.name(), |s| s.id()),
            FilterArch::Arm => collect(arm::Sysno::iter(), |s| s.name(), |s| s.id()),
        };
        let bit = if arch == FilterArch::X32 {
            X32_SYSCALL_BIT
        } else {
            0
        };
        SyscallTable { entries, bit }
    }

    /// (name, number), sorted by name.
    pub(crate) fn entries(&self) -> impl ExactSizeIterator<Item = (&'static str, u32)> + '_ {
        self.entries.iter().map(|&(n, nr)| (n, nr | self.bit))
    }

    #[cfg(test)]
    pub(crate) fn lookup(&self, name: &str) -> Option<u32> {
        let i = self.entries.binary_search_by(|e| e.0.cmp(name)).ok()?;
        Some(self.entries[i].1 | self.bit)
    }
}
