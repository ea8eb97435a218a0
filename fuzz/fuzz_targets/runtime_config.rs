//! Arbitrary bytes as a bundle's config.json: the runtime's parser (with
//! field paths in its errors), its validation, and the seccomp compiler on
//! whatever profile parses. None of them may panic.
#![no_main]

use kontti_runtime::{config, seccomp};
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = config::parse_json::<Spec>("config.json", data) else { return };
    let _ = config::validate(&spec);
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        let _ = seccomp::compile(profile);
    }
});
