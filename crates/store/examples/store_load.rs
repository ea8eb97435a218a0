//! Store-level benchmark: runs the load generator against the embedded store (in a temp dir) or a
//! private etcd (started here on loopback ports), and prints latencies and memory.
//!
//! `cargo run --release -p kontti-store --example store_load -- embedded 10000 500`
//! `cargo run --release -p kontti-store --example store_load -- etcd 10000 500`
//! Arguments: backend, objects, writes per second (0 = unpaced), concurrency (default 32).

#![allow(clippy::disallowed_macros)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use anyhow::{Context, bail};
use kontti_store::load::{self, LoadSpec};
use kontti_store::{EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Store};

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().map(String::as_str).unwrap_or("embedded");
    let number = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse()
                .with_context(|| format!("argument {a:?} is not a number"))
        })
    };
    let spec = LoadSpec {
        objects: number(1, 10_000)? as usize,
        write_rate: number(2, 500)? as u32,
        concurrency: number(3, 32)? as usize,
        ..LoadSpec::default()
    };
    let dir = tempfile::tempdir()?;
    let mut etcd = None;
    let store: Arc<dyn Store> = match backend {
        "embedded" => Arc::new(EmbeddedStore::open(
            &dir.path().join("store.redb"),
            EmbeddedOptions::default(),
        )?),
        "etcd" => {
            let server = common::EtcdServer::start();
            let store = EtcdStore::connect(&[server.endpoint()], EtcdOptions::default()).await?;
            etcd = Some(server);
            Arc::new(store)
        }
        other => bail!("unknown backend {other:?}: expected embedded or etcd"),
    };
    let idle = rss_kib("self");
    println!(
        "backend={backend} objects={} write_rate={}/s concurrency={} value={}B",
        spec.objects, spec.write_rate, spec.concurrency, spec.value_size
    );
    let report = load::run(store.clone(), &spec).await?;
    println!("create          {}", report.create);
    println!("update          {}", report.update);
    println!("get             {}", report.get);
    println!("list (paged {})  {}", spec.list_page, report.list);
    println!("watch delivery  {}", report.watch_delivery);
    println!("delete          {}", report.delete);
    println!(
        "rss: process idle {} KiB, after load {} KiB",
        idle,
        rss_kib("self")
    );
    if let Some(pid) = etcd.as_ref().and_then(|e| e.pid()) {
        println!("rss: etcd {} KiB", rss_kib(&pid.to_string()));
    }
    Ok(())
}
