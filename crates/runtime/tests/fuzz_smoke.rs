//! The `runtime_config` fuzz target's property (no panic on any config.json)
//! checked as a plain test: the seeds in `tests/fuzz_seeds/config`
//! and thousands of mutations of it through the parser, validation and the
//! seccomp compiler. The real fuzzing runs with `cargo fuzz` from `fuzz/`.

use std::path::Path;

use kontti_runtime::{config, seccomp};
use oci_spec::runtime::Spec;

/// What the fuzz target does with one input; whether it parsed.
fn check(data: &[u8]) -> bool {
    let Ok(spec) = config::parse_json::<Spec>("config.json", data) else {
        return false;
    };
    let _ = config::validate(&spec);
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        let _ = seccomp::compile(profile);
    }
    true
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

/// Values that reach edge cases when spliced over a number or a string.
const TOKENS: &[&str] = &[
    "0",
    "-1",
    "4294967295",
    "18446744073709551615",
    "18446744073709551616",
    "1e400",
    "\"\"",
    "\"/\"",
    "\"../../..\"",
    "\"SCMP_ACT_NOTIFY\"",
    "\"SCMP_CMP_MASKED_EQ\"",
    "\"SCMP_ARCH_PPC64\"",
    "null",
    "[]",
    "{}",
    "true",
    "\"\\u0000\"",
    "\"user\"",
    "\"RLIMIT_NOFILE\"",
];

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds/config");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.push(
        serde_json::to_vec(&kontti_runtime::templates::default_spec(true, 1000, 1000)).unwrap(),
    );
    seeds
}

#[test]
fn seeds_parse_and_do_not_panic() {
    let seeds = corpus();
    assert!(seeds.len() >= 4, "seed corpus missing");
    for s in &seeds {
        assert!(
            check(s),
            "a seed does not parse: {}",
            String::from_utf8_lossy(s)
        );
    }
}

#[test]
fn mutated_configs_do_not_panic() {
    let seeds = corpus();
    let mut rng = Rng(0x6b6f_6e74_7469);
    for _ in 0..4000 {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len());
            match rng.below(4) {
                // overwrite a span with a token
                0 => {
                    let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                    let end = (at + rng.below(12)).min(data.len());
                    data.splice(at..end, t.iter().copied());
                }
                // flip a bit
                1 => data[at] ^= 1 << rng.below(8),
                // truncate
                2 => data.truncate(at),
                // duplicate a span
                _ => {
                    let end = (at + rng.below(64)).min(data.len());
                    let span = data[at..end].to_vec();
                    data.splice(at..at, span);
                }
            }
        }
        check(&data);
    }
}
