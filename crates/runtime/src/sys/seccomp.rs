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

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// `union bpf_attr`, as raw words: large enough for the commands used, the
/// rest zero as the kernel requires.
#[repr(C, align(8))]
struct BpfAttr([u32; 32]);

fn bpf(cmd: libc::c_long, attr: &BpfAttr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `union bpf_attr` image of
    // `size_of::<BpfAttr>()` bytes that lives across the call; the pointers
    // inside it (set by the callers) point at live buffers of the lengths
    // given. The kernel reads it and does not keep it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const BpfAttr,
            size_of::<BpfAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` (the
/// instructions as encoded `struct bpf_insn`s); returns its fd.
pub fn load_cgroup_device_program(insns: &[u64]) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    static LICENSE: &[u8] = b"Apache-2.0\0";
    let count =
        u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = BpfAttr([0; 32]);
    attr.0[0] = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.0[1] = count;
    let ip = insns.as_ptr() as u64;
    attr.0[2] = ip as u32;
    attr.0[3] = (ip >> 32) as u32;
    let lp = LICENSE.as_ptr() as u64;
    attr.0[4] = lp as u32;
    attr.0[5] = (lp >> 32) as u32;
    let fd = bpf(BPF_PROG_LOAD, &attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing
    // else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Attaches a cgroup device program to the cgroup open at `cgroup`
/// (without flags: a later attach replaces it).
pub fn attach_cgroup_device_program(
    cgroup: std::os::fd::BorrowedFd<'_>,
    prog: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut attr = BpfAttr([0; 32]);
    attr.0[0] = cgroup.as_raw_fd() as u32;
    attr.0[1] = prog.as_raw_fd() as u32;
    attr.0[2] = BPF_CGROUP_DEVICE;
    bpf(BPF_PROG_ATTACH, &attr).map(|_| ())
}
