//! Arbitrary bytes as a layer (plain, gzip or zstd tar) unpacked into a
//! scratch directory: unpacking may fail but never panic, and nothing may
//! appear next to the layer directory.
#![no_main]

use kontti_image::unpack::{WhiteoutMode, apply_layer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(scratch) = tempfile::tempdir() else { return };
    let layer = scratch.path().join("layer");
    if std::fs::create_dir(&layer).is_err() {
        return;
    }
    for mode in [WhiteoutMode::Remove, WhiteoutMode::Overlay] {
        let _ = apply_layer(data, &layer, mode, None);
    }
    let outside: Vec<_> = std::fs::read_dir(scratch.path())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(outside, vec![std::ffi::OsString::from("layer")], "an entry escaped the layer");
});
