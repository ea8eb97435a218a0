//! The kernel calls the supervisor makes that neither std nor the runtime
//! library's `sys` wraps. Every `unsafe` block of the crate is here.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sets `IFF_UP` on the loopback interface of the caller's network
/// namespace.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() has no memory preconditions; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is a valid value of the C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of `req`,
    // a valid ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags member.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops this process's page-table entries for file-backed, read-only
/// mappings that hold no private (anonymous) pages: code and constants of
/// the binary and its libraries. They are shared page cache; the pages the
/// supervisor's loop needs fault back in from the cache, the ones only
/// container setup used stop counting toward its RSS. Mappings that were
/// ever written (relocations, data) are left alone, so nothing is lost.
pub fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = parts.next().unwrap_or("");
            let path = parts.nth(3).unwrap_or("");
            current = (perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/'))
            .then_some((start, end - start));
            continue;
        }
        if first == "Anonymous:"
            && let Some(m) = current.take()
            && parts.next() == Some("0")
        {
            candidates.push(m);
        }
    }
    for (start, len) in candidates {
        // SAFETY: the range is a whole mapping of this process, file-backed,
        // private, not writable and without anonymous pages (smaps said so),
        // so MADV_DONTNEED only drops clean page-cache pages that are read
        // back from the file on the next access; no data is discarded.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}
