//! The fuzz targets' property (no panic, nothing outside the layer) on a
//! deterministic set of mutated inputs, so it runs without nightly:
//! `fuzz/fuzz_targets/{image_manifest,layer_unpack}.rs` explore further.

mod common;

use common::{Tar, gzip};
use kontti_core::ImageRef;
use kontti_image::hash::sha256;
use kontti_image::media::{self, Document, PlatformSpec, parse_document, select_platform};
use kontti_image::unpack::{WhiteoutMode, apply_layer};

/// xorshift: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        let n = 1 + self.next() % 8;
        for _ in 0..n {
            if v.is_empty() {
                v.push(self.next() as u8);
                continue;
            }
            let i = (self.next() as usize) % v.len();
            match self.next() % 4 {
                0 => v[i] = self.next() as u8,
                1 => v.truncate(i),
                2 => v.insert(i, self.next() as u8),
                _ => v[i] ^= 1 << (self.next() % 8),
            }
        }
        v
    }
}

#[test]
fn documents_never_panic() {
    let d = sha256(b"x");
    let seeds = [
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST
        ),
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{d}","size":1}},"layers":[]}}"#,
            media::OCI_CONFIG
        ),
        "localhost:5000/a/b:tag@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        for seed in &seeds {
            let data = rng.mutate(seed.as_bytes());
            for mt in ["", media::OCI_MANIFEST, media::OCI_INDEX] {
                if let Ok(Document::Index(i)) = parse_document(mt, &d, &data) {
                    let _ = select_platform(&i, &d, &PlatformSpec::host());
                }
            }
            let text = String::from_utf8_lossy(&data);
            if let Ok(r) = ImageRef::parse(&text) {
                assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r, "{text:?}");
            }
        }
    }
}

#[test]
fn layers_never_panic_or_escape() {
    let seed = Tar::new()
        .dir("a/", 0o755)
        .file("a/f", b"data", 0o644)
        .symlink("a/l", "../a")
        .hardlink("a/h", "a/f")
        .file("a/.wh.x", b"", 0o644)
        .finish();
    let seeds = [seed.clone(), gzip(&seed)];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..400 {
        let data = rng.mutate(&seeds[round % 2]);
        let scratch = tempfile::tempdir().unwrap();
        let layer = scratch.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let mode = if round % 3 == 0 {
            WhiteoutMode::Overlay
        } else {
            WhiteoutMode::Remove
        };
        let _ = apply_layer(&data[..], &layer, mode, None);
        let names: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["layer"], "round {round}: something escaped");
    }
}

/// The seeds of `fuzz/`'s `image_manifest` and `layer_unpack` targets, and what libFuzzer found,
/// through what those targets do with them.
fn fuzz_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_seeds")
        .join(target);
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

#[test]
fn image_manifest_seeds_do_not_panic() {
    for data in fuzz_seeds("image_manifest") {
        let d = sha256(&data);
        for mt in [
            "",
            media::OCI_MANIFEST,
            media::OCI_INDEX,
            media::DOCKER_MANIFEST,
            media::DOCKER_MANIFEST_LIST,
        ] {
            if let Ok(Document::Index(i)) = parse_document(mt, &d, &data) {
                let _ = select_platform(&i, &d, &PlatformSpec::host());
            }
        }
        let _ = serde_json::from_slice::<kontti_image::ImageConfigFile>(&data);
        let text = String::from_utf8_lossy(&data);
        let _ = kontti_core::Digest::parse(&text);
        if let Ok(r) = ImageRef::parse(&text) {
            let _ = r.familiar();
            assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r, "{text:?}");
        }
        let _ = text.parse::<PlatformSpec>();
    }
}

#[test]
fn layer_unpack_seeds_do_not_panic_or_escape() {
    for data in fuzz_seeds("layer_unpack") {
        let scratch = tempfile::tempdir().unwrap();
        let layer = scratch.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        for mode in [WhiteoutMode::Remove, WhiteoutMode::Overlay] {
            let _ = apply_layer(&data[..], &layer, mode, None);
        }
        let names: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["layer"], "something escaped");
    }
}
