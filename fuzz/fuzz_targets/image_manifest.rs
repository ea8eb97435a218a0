//! Arbitrary bytes as manifests, indexes, image configs, digests and image
//! references: parsing and platform selection may fail but never panic.
#![no_main]

use kontti_core::{Digest, ImageRef};
use kontti_image::media::{self, Document, PlatformSpec, parse_document, select_platform};
use kontti_image::{ImageConfigFile, hash::sha256};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let digest = sha256(data);
    for mt in ["", media::OCI_MANIFEST, media::OCI_INDEX, media::DOCKER_MANIFEST, media::DOCKER_MANIFEST_LIST] {
        if let Ok(Document::Index(i)) = parse_document(mt, &digest, data) {
            let _ = select_platform(&i, &digest, &PlatformSpec::host());
        }
    }
    let _ = serde_json::from_slice::<ImageConfigFile>(data);
    let text = String::from_utf8_lossy(data);
    let _ = Digest::parse(&text);
    if let Ok(r) = ImageRef::parse(&text) {
        let _ = r.familiar();
        let _ = ImageRef::parse(&r.to_string()).expect("a printed reference parses again");
    }
    let _ = text.parse::<PlatformSpec>();
});
