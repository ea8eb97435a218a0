//! Arbitrary bytes, split at arbitrary points, through the supervisor's
//! attach-protocol `Decoder`: no panic, and every decoded frame encodes
//! again.
#![no_main]

use kontti_supervisor::protocol::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (split, data) = data.split_first().map_or((0, data), |(s, d)| (*s as usize, d));
    let mut d = Decoder::default();
    let at = split.min(data.len());
    for part in [&data[..at], &data[at..]] {
        d.push(part);
        while let Ok(Some(frame)) = d.next_frame() {
            let _ = frame.encode();
        }
    }
});
