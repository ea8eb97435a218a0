//! Thin, safe wrappers over the kernel calls the runtime makes.
//!
//! Every `unsafe` block of the runtime lives here (the workspace denies
//! `unsafe_code` elsewhere), each with a `// SAFETY:` comment. Wrappers take
//! and return owned types (`OwnedFd`, `CString`) and turn `-1` into
//! [`std::io::Error`]; they add no policy.
#![allow(unsafe_code)]

pub mod fs;
pub mod mem;
pub mod process;
pub mod seccomp;
pub mod term;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns a C return value into a result, reading `errno` on `-1`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Turns a raw `syscall()` return value into a result.
pub(crate) fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A path as a C string; a path with an interior NUL is invalid input.
pub fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A string as a C string; an interior NUL is invalid input.
pub fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains a NUL byte"))
}
