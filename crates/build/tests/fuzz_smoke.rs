//! The fuzz targets' property (never panic, whatever the input) checked as a
//! plain test: thousands of pseudo-random and mutated-corpus inputs through
//! the parser, the planner, expansion and the `.dockerignore` matcher. The
//! real fuzzing runs with `cargo fuzz` from `fuzz/`.

use std::fs;
use std::path::Path;

use kontti_build::{ArgSources, Dockerignore, ParseOptions, StepEnv, parse};

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

const TOKENS: &[&str] = &[
    "\\\n",
    "`\n",
    "\n",
    " ",
    "\t",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "\nEOF\n",
    "EOF",
    "$",
    "${",
    "}",
    "${A:-",
    "${A:?",
    "${A%",
    ":+",
    "\"",
    "'",
    "[",
    "]",
    "[\"a\",",
    "1]",
    "--mount=",
    "type=cache,",
    "target=/x",
    "--from=",
    "0",
    "99",
    "--chown=",
    "--network=",
    "=",
    "FROM ",
    "FROM a AS b\n",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "CMD ",
    "--interval=",
    "NONE",
    "é",
    "\u{0}",
    "\r\n",
    "\u{feff}",
    "\u{a0}",
    "日本",
];

fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles");
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| fs::read_to_string(e.path().join("Dockerfile")).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    assert!(!out.is_empty(), "corpus is empty");
    out
}

fn exercise(text: &str) {
    let opts = ParseOptions::default();
    let Ok(df) = parse(text, &opts) else { return };
    let _ = df.plan(None);
    for stage in &df.stages {
        let _ = df.plan(stage.name.as_deref());
        let sources = ArgSources {
            build_args: &df.build_args,
            meta_args: &df.meta_args,
        };
        let mut env = StepEnv::default();
        for node in &stage.instructions {
            let _ = env.apply(&node.instruction, sources, df.directives.escape);
            let _ = node.instruction.expanded(&env, df.directives.escape);
        }
    }
}

fn exercise_ignore(text: &str) {
    if let Ok(ig) = Dockerignore::parse(text) {
        for path in ["a", "a/b/c", "", ".", "x.go", "dir/sub/file.txt", text] {
            let _ = ig.is_excluded(path);
        }
        let _ = ig.may_include_under("a");
    }
}

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                chars.splice(at..at, token.chars());
            }
            1 if !chars.is_empty() => {
                let end = (at + rng.below(16)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            2 if !chars.is_empty() => {
                let from = rng.below(chars.len());
                let len = rng.below(40).min(chars.len() - from);
                let piece: Vec<char> = chars[from..from + len].to_vec();
                chars.splice(at..at, piece);
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

#[test]
fn every_prefix_of_the_corpus_parses_or_fails_cleanly() {
    for text in corpus() {
        for (i, _) in text.char_indices() {
            exercise(&text[..i]);
        }
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let corpus = corpus();
    let mut rng = Rng(0x6b6f_6e74_7469_0001);
    for _ in 0..4000 {
        let base = &corpus[rng.below(corpus.len())];
        let text = mutate(&mut rng, base);
        exercise(&text);
    }
}

#[test]
fn random_token_soup_never_panics() {
    let mut rng = Rng(0x6b6f_6e74_7469_0002);
    for _ in 0..4000 {
        let mut text = String::new();
        for _ in 0..rng.below(60) {
            text.push_str(TOKENS[rng.below(TOKENS.len())]);
        }
        exercise(&text);
        exercise_ignore(&text);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x6b6f_6e74_7469_0003);
    for _ in 0..3000 {
        let bytes: Vec<u8> = (0..rng.below(200))
            .map(|_| (rng.next() >> 56) as u8)
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        exercise(&text);
        exercise_ignore(&text);
    }
}

#[test]
fn dockerignore_soup_never_panics() {
    const PIECES: &[&str] = &[
        "*", "**", "?", "[", "]", "^", "-", "\\", "/", "!", "#", ".", "..", "a", "é", "\n", " ",
    ];
    let mut rng = Rng(0x6b6f_6e74_7469_0004);
    for _ in 0..4000 {
        let mut text = String::new();
        for _ in 0..rng.below(30) {
            text.push_str(PIECES[rng.below(PIECES.len())]);
        }
        exercise_ignore(&text);
    }
}

/// The seeds of `fuzz/`'s `dockerfile` and `dockerignore` targets that are not
/// in the compatibility corpus (what libFuzzer found included), through what
/// both targets do with them (the `.dockerignore` one also matches the
/// input's own lines).
#[test]
fn fuzz_seeds_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds");
    let mut seen = 0;
    for target in ["dockerfile", "dockerignore"] {
        let Ok(rd) = fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in rd {
            let bytes = fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            exercise(&text);
            exercise_ignore(&text);
            if let Ok(ig) = Dockerignore::parse(&text) {
                for line in text.lines().take(16) {
                    let _ = ig.is_excluded(line);
                    let _ = ig.may_include_under(line);
                }
            }
            seen += 1;
        }
    }
    assert!(seen > 0, "no seeds in {}", root.display());
}
