//! The properties of the supervisor's fuzz targets (`attach_protocol`,
//! `cri_log_line`, `log_timestamp` in `fuzz/`) checked as plain tests: the
//! seeds in `tests/fuzz_seeds/<target>` and thousands of mutations of them.
//! The real fuzzing runs with `cargo fuzz` from `fuzz/`.

use std::path::Path;

use kontti_supervisor::Timestamp;
use kontti_supervisor::crilog::LogLine;
use kontti_supervisor::protocol::Decoder;

/// `attach_protocol`: the first byte is where the rest is split.
fn attach_protocol(data: &[u8]) {
    let (split, data) = data
        .split_first()
        .map_or((0, data), |(s, d)| (*s as usize, d));
    let mut d = Decoder::default();
    let at = split.min(data.len());
    for part in [&data[..at], &data[at..]] {
        d.push(part);
        while let Ok(Some(frame)) = d.next_frame() {
            let _ = frame.encode();
        }
    }
}

fn cri_log_line(data: &[u8]) {
    if let Some(line) = LogLine::parse(data) {
        let encoded = line.encode();
        let again = LogLine::parse(encoded.strip_suffix(b"\n").unwrap_or(&encoded));
        assert_eq!(
            again.as_ref(),
            Some(&line),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
}

fn log_timestamp(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = Timestamp::parse(s) {
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t), "{s:?}");
    }
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

const TOKENS: &[&[u8]] = &[
    b"0",
    b"9",
    b"60",
    b"99",
    b"-",
    b"+",
    b":",
    b".",
    b"Z",
    b"T",
    b" ",
    b"\xff",
    b"\x00",
    b"+23:59",
    b"-24:00",
    b".0000000001",
    b"stdout",
    b"stderr",
    b"P",
    b"F:x",
    b"\x7f\xff\xff\xff",
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_seeds")
        .join(target);
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Feeds the seeds, then `n` mutations of them, to `check`.
fn run(target: &str, n: usize, check: fn(&[u8])) {
    let seeds = seeds(target);
    for s in &seeds {
        check(s);
    }
    let mut rng = Rng(0x6b6f_6e74_7469 ^ target.len() as u64);
    for _ in 0..n {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(data.len());
            match rng.below(4) {
                0 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    let end = (at + rng.below(4)).min(data.len());
                    data.splice(at..end, t.iter().copied());
                }
                1 => data[at] ^= 1 << rng.below(8),
                2 => data.truncate(at),
                _ => {
                    let end = (at + rng.below(16)).min(data.len());
                    let span = data[at..end].to_vec();
                    data.splice(at..at, span);
                }
            }
        }
        check(&data);
    }
}

#[test]
fn attach_protocol_decoder_never_panics() {
    run("attach_protocol", 20_000, attach_protocol);
}

#[test]
fn cri_log_lines_parse_without_panic_and_round_trip() {
    run("cri_log_line", 20_000, cri_log_line);
}

#[test]
fn log_timestamps_parse_without_panic_and_round_trip() {
    run("log_timestamp", 20_000, log_timestamp);
}
