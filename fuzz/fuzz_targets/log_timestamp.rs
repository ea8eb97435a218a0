//! Arbitrary text through the supervisor's RFC 3339 timestamp parser: no
//! panic, and a parsed time prints as text that parses to the same time.
#![no_main]

use kontti_supervisor::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(t) = Timestamp::parse(s) {
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
    }
});
