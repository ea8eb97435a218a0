//! The `api_request` fuzz target's property (no panic on any request body) checked as a plain
//! test: the seeds in `tests/fuzz_seeds/api_request` (what libFuzzer found included) and
//! thousands of mutations of them through body decoding, the three patch engines and admission.
//! The real fuzzing runs with `cargo fuzz` from `fuzz/`.

use std::path::Path;

use kontti_apiserver::{admission, api, patch, query, resources};

/// The content types in the order the fuzz target picks them by its first byte.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
];

/// What `fuzz/fuzz_targets/api_request.rs` does with one input.
fn check(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    let Ok(mut value) = api::decode_body(ct, body) else {
        return;
    };
    let def =
        &resources::RESOURCES[(pick as usize / CONTENT_TYPES.len()) % resources::RESOURCES.len()];
    let mut target = value.clone();
    let _ = patch::json_patch(&mut target, &value);
    let _ = patch::strategic_merge(&mut target, &value);
    patch::merge_patch(&mut target, &value);
    if admission::check_type(def, &mut value).is_ok() {
        let _ = admission::unknown_fields(def, &mut value, query::FieldValidation::Warn);
        admission::generate_name(&mut value);
        admission::apply_defaults(def, &mut value);
        let _ = admission::validate(def, &value);
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds/api_request");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "seed corpus missing in {}", dir.display());
    seeds
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn api_request_seeds_do_not_panic() {
    for s in seeds() {
        check(&s);
    }
}

#[test]
fn mutated_api_requests_do_not_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x6b6f_6e74_7469_00a9);
    for _ in 0..4000 {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len());
            match rng.below(4) {
                0 => data[at] = rng.next() as u8,
                1 => data[at] ^= 1 << rng.below(8),
                2 => data.truncate(at.max(1)),
                _ => {
                    let end = (at + rng.below(32)).min(data.len());
                    let span = data[at..end].to_vec();
                    data.splice(at..at, span);
                }
            }
        }
        check(&data);
    }
}

/// What fuzzing found: a container, a port, a Secret's `data` or a workload's `spec` that is not an
/// object made defaulting index into a string or a number and panic (which aborts the server).
/// Now the pipeline that a create runs leaves them to validation, which refuses them.
#[test]
fn non_object_elements_are_refused_not_defaulted() {
    for (kind, body) in [
        ("Pod", r#"{"spec":{"containers":["x"]}}"#),
        (
            "Pod",
            r#"{"spec":{"containers":[{"name":"c","image":"i","ports":[1]}]}}"#,
        ),
        (
            "Deployment",
            r#"{"spec":{"template":{"spec":{"initContainers":[7]}}}}"#,
        ),
        ("Secret", r#"{"data":"x","stringData":{"a":"b"}}"#),
        ("DaemonSet", r#"{"spec":"x"}"#),
        ("StatefulSet", r#"{"spec":{"template":[]}}"#),
    ] {
        let def = resources::RESOURCES
            .iter()
            .find(|d| d.kind == kind)
            .unwrap();
        let mut obj: serde_json::Value = serde_json::from_str(body).unwrap();
        admission::check_type(def, &mut obj).unwrap();
        obj["metadata"]["name"] = "n".into();
        admission::apply_defaults(def, &mut obj);
        let err = admission::validate(def, &obj).expect_err(body);
        assert!(err.to_string().contains("decoding"), "{body}: {err}");
    }
}
