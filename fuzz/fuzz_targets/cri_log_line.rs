//! Arbitrary bytes as one line of a CRI log: no panic, and a line that
//! parses encodes to one that parses to the same entry.
#![no_main]

use kontti_supervisor::crilog::LogLine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(line) = LogLine::parse(data) {
        let encoded = line.encode();
        let again = LogLine::parse(encoded.strip_suffix(b"\n").unwrap_or(&encoded));
        assert_eq!(again.as_ref(), Some(&line));
    }
});
