//! Dropping clean file pages from this process's page tables.

/// Unmaps (`MADV_DONTNEED`) the resident pages of this process's private,
/// read-only, file-backed mappings that hold no anonymous pages: code and
/// constants of the binary and its libraries, which are shared page cache.
/// Code that runs again faults them back in from the cache; code that ran
/// once (argument and config parsing, the seccomp compiler) stops counting
/// toward the process's RSS. Mappings with anonymous pages (relocated data,
/// a debugger's breakpoints) are left alone, so nothing is lost. Returns
/// how many mappings were released; best effort (0 when smaps is
/// unreadable).
pub fn release_clean_file_pages() -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut parts = line.split_ascii_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = parts.next().unwrap_or("");
            let path = parts.nth(3).unwrap_or("");
            current = (perms.starts_with('r')
                && perms.as_bytes().get(1) == Some(&b'-')
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
    for &(start, len) in &candidates {
        // SAFETY: the range is one whole mapping of this process that smaps
        // listed as private, file-backed, not writable and without anonymous
        // pages, so MADV_DONTNEED drops only clean page-cache pages, read
        // back from the file on the next access; no data is discarded and
        // no Rust object lives in it.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
    candidates.len()
}

#[cfg(test)]
mod tests {
    fn rss_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    #[test]
    fn clean_file_pages_are_released_and_fault_back() {
        let before = rss_file_kb();
        let n = super::release_clean_file_pages();
        let after = rss_file_kb();
        assert!(n > 0, "no mapping released");
        assert!(after < before, "RssFile {before} kB -> {after} kB");
        // code and constants of the binary and libc still work
        let v: Vec<String> = (0..100).map(|i| format!("{i:x}")).collect();
        assert_eq!(v.join("").len(), 16 + 84 * 2);
        assert!(std::fs::metadata("/proc/self/exe").is_ok());
    }
}
