//! Unpack benchmark: a generated 5-layer image (many small files in one
//! layer, a few large ones in another; gzip layers) stored in a content
//! store, then unpacked into overlay snapshots. Prints the unpack time and
//! the peak RSS while unpacking, then the time of the layer of small files
//! applied alone (the per-file cost of the extraction).
//!
//! `cargo run --release -p kontti-image --example unpack_bench -- DIR [MB]`
#![allow(clippy::disallowed_macros)]

use std::io::Write;
use std::time::Instant;

use kontti_core::ImageRef;
use kontti_image::hash::sha256;
use kontti_image::snapshot::OverlaySnapshotter;
use kontti_image::{ContentStore, Descriptor, Image, media, rootfs};

fn tar_layer(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, &data[..]).expect("tar");
    }
    b.into_inner().expect("tar")
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half-entropy bytes: compressible like real binaries.
            (x as u8) & 0x3f
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/kontti-unpack-bench".into()),
    );
    let big_mb: usize = args.next().map_or(Ok(150), |s| s.parse())?;
    std::fs::create_dir_all(&dir)?;
    let store = ContentStore::open(dir.join("content"))?;
    let lease = store.lease("bench")?;
    let small: Vec<(String, Vec<u8>)> = (0..20_000)
        .map(|i| {
            (
                format!("small/d{}/f{i}", i % 100),
                pseudo_random(1024, i as u64 + 1),
            )
        })
        .collect();
    let big: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("big/f{i}"),
                pseudo_random((big_mb << 20) / 3, 99 + i),
            )
        })
        .collect();
    let misc = |n: usize| -> Vec<(String, Vec<u8>)> {
        (0..100)
            .map(|i| {
                (
                    format!("l{n}/f{i}"),
                    pseudo_random(64 << 10, (n * 1000 + i) as u64),
                )
            })
            .collect()
    };
    let layers = vec![
        tar_layer(&small),
        tar_layer(&big),
        tar_layer(&misc(3)),
        tar_layer(&misc(4)),
        tar_layer(&misc(5)),
    ];
    drop((small, big));
    let total: usize = layers.iter().map(Vec::len).sum();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &layers {
        diff_ids.push(sha256(l));
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(l)?;
        let gz = e.finish()?;
        let d = store.put(&lease, &gz, None)?;
        descs.push(Descriptor::new(media::OCI_LAYER_GZIP, d, gz.len() as u64));
    }
    drop(layers);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let cd = store.put(&lease, &config, None)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": descs,
    }))?;
    let md = store.put(&lease, &manifest, None)?;
    let r = ImageRef::parse("bench:1")?;
    let target = Descriptor::new(media::OCI_MANIFEST, md, manifest.len() as u64);
    store.set_ref(&r, &target)?;
    let image = Image::open(&store, &r)?;
    let sn = OverlaySnapshotter::open(dir.join("snapshots"))?;
    // Reset the peak-RSS counter: generating the layers above used memory
    // that unpacking does not.
    std::fs::write("/proc/self/clear_refs", "5")?;
    let start = Instant::now();
    let report = rootfs::unpack_image(&store, &image, &sn)?;
    let took = start.elapsed();
    let again = Instant::now();
    let second = rootfs::unpack_image(&store, &image, &sn)?;
    let rss = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map(str::to_owned)
        .unwrap_or_default();
    println!(
        "unpacked {} layers, {:.1} MB uncompressed, in {:.2} s (incl. diffID checks and syncfs); second unpack: {} unpacked, {} reused in {:.3} s; {rss}",
        report.unpacked,
        total as f64 / 1e6,
        took.as_secs_f64(),
        second.unpacked,
        second.reused,
        again.elapsed().as_secs_f64()
    );
    // The per-file cost alone: the layer of small files applied on its own
    // (one thread, no sync), three times.
    let mut times = Vec::new();
    for i in 0..3 {
        let dest = dir.join(format!("small-alone-{i}"));
        std::fs::create_dir_all(&dest)?;
        let blob = store.open_blob(&image.layers()[0].digest)?;
        let start = Instant::now();
        let stats = kontti_image::unpack::apply_layer(
            blob,
            &dest,
            kontti_image::unpack::WhiteoutMode::Overlay,
            Some(&image.diff_ids()[0]),
        )?;
        times.push((start.elapsed().as_secs_f64(), stats.entries));
    }
    // Deleted only now: on ext4 without a journal, creating files next to
    // inodes freed in the last seconds is much slower (see docs/benchmarks.md).
    for i in 0..3 {
        std::fs::remove_dir_all(dir.join(format!("small-alone-{i}")))?;
    }
    let line: Vec<String> = times
        .iter()
        .map(|(t, n)| format!("{t:.3} s ({:.1} us per entry)", t * 1e6 / *n as f64))
        .collect();
    println!("small-file layer alone: {}", line.join(", "));
    Ok(())
}
