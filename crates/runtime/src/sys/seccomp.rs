//! seccomp(2).

use std::io;

use crate::seccomp::Insn;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Installs a classic BPF filter with seccomp(SECCOMP_SET_MODE_FILTER).
pub fn set_mode_filter(insns: &[Insn], flags: u32) -> io::Result<()> {
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // `Insn` is `#[repr(C)]` with the fields of `struct sock_filter`.
    const _: () = assert!(size_of::<Insn>() == size_of::<libc::sock_filter>());
    const _: () = assert!(align_of::<Insn>() == align_of::<libc::sock_filter>());
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points at `len` valid instructions laid out as
    // `struct sock_filter` (checked above), which outlive the call; the
    // kernel only reads them (it copies the program) and does not keep the
    // pointer. The other arguments are plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets `no_new_privs` on the calling thread (prctl(PR_SET_NO_NEW_PRIVS)),
/// which an unprivileged process needs before installing a filter.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only
    // and touches no memory of ours.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
