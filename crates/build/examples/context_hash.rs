//! Measures walking and hashing a build context of many files.
//!
//! `cargo run --release -p kontti-build --example context_hash -- [FILES] [DIR]`
//! generates FILES files (default 5000, 0.5–16 KiB each, 50 directories) in a
//! fresh temporary directory (or walks DIR as it is, when given) and prints
//! the time of the walk, the first full-context digest (reading every file)
//! and a second walk and digest (as an unchanged rebuild does).
#![allow(clippy::disallowed_macros)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use kontti_build::BuildContext;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()
        .context("FILES must be a number")?
        .unwrap_or(5000);
    let given: Option<PathBuf> = args.next().map(PathBuf::from);
    let temp = tempfile::tempdir()?;
    let root = match given {
        Some(dir) => dir,
        None => {
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            for i in 0..files {
                let dir = temp.path().join(format!("d{:02}", i % 50));
                std::fs::create_dir_all(&dir)?;
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = 512 + (seed % (16 * 1024 - 512)) as usize;
                let content: Vec<u8> = (0..len).map(|j| (j as u64 ^ seed) as u8).collect();
                std::fs::write(dir.join(format!("f{i}.dat")), content)?;
            }
            temp.path().to_path_buf()
        }
    };
    let t = Instant::now();
    let ctx = BuildContext::open(&root, "Dockerfile")?;
    let walk = t.elapsed();
    let bytes: u64 = ctx.entries().iter().map(|e| e.size).sum();
    let t = Instant::now();
    let first = ctx.digest(&["."])?;
    let hash = t.elapsed();
    let t = Instant::now();
    let again = BuildContext::open(&root, "Dockerfile")?.digest(&["."])?;
    let rebuild = t.elapsed();
    assert_eq!(first, again);
    println!(
        "entries={} bytes={} threads={} walk={:.1}ms first-digest={:.1}ms walk+digest-again={:.1}ms digest={}",
        ctx.entries().len(),
        bytes,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        walk.as_secs_f64() * 1e3,
        hash.as_secs_f64() * 1e3,
        rebuild.as_secs_f64() * 1e3,
        first
    );
    Ok(())
}
