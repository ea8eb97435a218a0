//! Arbitrary bytes as a `.dockerignore`, matched against fixed paths and
//! against the input's own lines: neither parsing nor matching may panic.
#![no_main]

use kontti_build::Dockerignore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(ignore) = Dockerignore::parse(&text) else { return };
    for path in ["a", "a/b/c.txt", "Dockerfile", ".", "x/../y"] {
        let _ = ignore.is_excluded(path);
    }
    for line in text.lines().take(16) {
        let _ = ignore.is_excluded(line);
        let _ = ignore.may_include_under(line);
    }
});
