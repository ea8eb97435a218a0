//! A load generator for any [`Store`]: paced creates and updates, gets, paged lists, and the delay
//! from a write's acknowledgement to its watch event. `kontti bench api` and the store benchmark use it.
//!
//! Writes are paced open-loop: operation `i` is due at `start + i / rate`, and its latency is measured
//! from when it was due, so that a store that falls behind shows it in the tail instead of slowing the
//! generator down (no coordinated omission).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Revision, Store, StoreError};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Keys are `{prefix}{index:08}`; the prefix should be empty of other keys.
    pub prefix: String,
    /// How many objects to create (then update, get, and delete).
    pub objects: usize,
    /// Target writes per second for creates and updates (0 = as fast as possible).
    pub write_rate: u32,
    /// Operations in flight at once.
    pub concurrency: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Page size for the list phase.
    pub list_page: usize,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            prefix: "/bench/objects/".into(),
            objects: 10_000,
            write_rate: 500,
            concurrency: 32,
            value_size: 1024,
            list_page: 500,
        }
    }
}

/// Latency distribution of one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Operations measured.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
    /// Operations per second over the phase.
    pub per_second: f64,
}

impl Latency {
    fn from_samples(mut samples: Vec<Duration>, elapsed: Duration) -> Latency {
        samples.sort();
        let at = |q: f64| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        let secs = elapsed.as_secs_f64();
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
            per_second: if secs > 0.0 {
                samples.len() as f64 / secs
            } else {
                0.0
            },
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} {:.0}/s p50={:.3}ms p99={:.3}ms max={:.3}ms",
            self.count,
            self.per_second,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Creates, paced at the write rate.
    pub create: Latency,
    /// Compare-and-swap updates, paced at the write rate.
    pub update: Latency,
    /// Gets, unpaced.
    pub get: Latency,
    /// Full paged lists of every object (one sample per full list).
    pub list: Latency,
    /// From a write's acknowledgement to its event reaching a watcher (0 if the event came first).
    pub watch_delivery: Latency,
    /// Deletes, unpaced.
    pub delete: Latency,
}

/// Runs every phase against `store` and deletes the objects it created.
pub async fn run(store: Arc<dyn Store>, spec: &LoadSpec) -> Result<LoadReport, StoreError> {
    let acked: Arc<Mutex<HashMap<Revision, Instant>>> = Arc::default();
    let start_rev = store.current_revision().await?;
    let mut watch = store.watch(&spec.prefix, start_rev).await?;
    let expected_events = spec.objects * 2;
    let watcher = tokio::spawn(async move {
        let mut arrivals = Vec::with_capacity(expected_events);
        while arrivals.len() < expected_events {
            match watch.next().await {
                Some(Ok(event)) => arrivals.push((event.revision(), Instant::now())),
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(arrivals)
    });

    let values: Arc<Vec<u8>> = Arc::new(vec![b'x'; spec.value_size]);
    let revisions: Arc<Mutex<Vec<Revision>>> = Arc::new(Mutex::new(vec![0; spec.objects]));

    let create = {
        let (store, values, revisions, acked) = (
            store.clone(),
            values.clone(),
            revisions.clone(),
            acked.clone(),
        );
        paced(spec, spec.write_rate, move |i, key| {
            let (store, values, revisions, acked) = (
                store.clone(),
                values.clone(),
                revisions.clone(),
                acked.clone(),
            );
            async move {
                let kv = store.create(&key, values.to_vec()).await?;
                note_ack(&acked, kv.mod_revision);
                lock(&revisions)[i] = kv.mod_revision;
                Ok(())
            }
        })
        .await?
    };
    let update = {
        let (store, values, revisions, acked) = (
            store.clone(),
            values.clone(),
            revisions.clone(),
            acked.clone(),
        );
        paced(spec, spec.write_rate, move |i, key| {
            let (store, values, revisions, acked) = (
                store.clone(),
                values.clone(),
                revisions.clone(),
                acked.clone(),
            );
            async move {
                let expected = lock(&revisions)[i];
                let kv = store.update(&key, values.to_vec(), expected).await?;
                note_ack(&acked, kv.mod_revision);
                Ok(())
            }
        })
        .await?
    };
    let get = {
        let store = store.clone();
        paced(spec, 0, move |_, key| {
            let store = store.clone();
            async move { store.get(&key).await.map(|_| ()) }
        })
        .await?
    };

    let mut list_samples = Vec::new();
    let list_started = Instant::now();
    for _ in 0..5 {
        let started = Instant::now();
        let mut seen = 0;
        let mut page = store
            .range(&spec.prefix, None, spec.list_page, None)
            .await?;
        let at = page.revision;
        loop {
            seen += page.kvs.len();
            if !page.more {
                break;
            }
            let last = page.kvs.last().map(|kv| kv.key.clone());
            page = store
                .range(&spec.prefix, last.as_deref(), spec.list_page, Some(at))
                .await?;
        }
        if seen != spec.objects {
            return Err(StoreError::Internal(format!(
                "list saw {seen} of {} objects",
                spec.objects
            )));
        }
        list_samples.push(started.elapsed());
    }
    let list = Latency::from_samples(list_samples, list_started.elapsed());

    let arrivals = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .map_err(|_| StoreError::Internal("the benchmark watch did not see every write".into()))?
        .map_err(|e| StoreError::Internal(format!("watch task failed: {e}")))??;
    let acked = lock(&acked).clone();
    let delivery: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(rev, arrived)| {
            acked
                .get(rev)
                .map(|ack| arrived.saturating_duration_since(*ack))
        })
        .collect();
    let watch_delivery = Latency::from_samples(delivery, Duration::ZERO);

    let delete = {
        let store = store.clone();
        paced(spec, 0, move |_, key| {
            let store = store.clone();
            async move { store.delete(&key, None).await.map(|_| ()) }
        })
        .await?
    };
    Ok(LoadReport {
        create,
        update,
        get,
        list,
        watch_delivery,
        delete,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn note_ack(acked: &Mutex<HashMap<Revision, Instant>>, revision: Revision) {
    lock(acked).insert(revision, Instant::now());
}

/// Runs `op(i, key)` for every object with `spec.concurrency` workers, operation `i` due at
/// `start + i / rate` (all due at once when `rate` is 0); latency counts from when it was due.
async fn paced<F, Fut>(spec: &LoadSpec, rate: u32, op: F) -> Result<Latency, StoreError>
where
    F: Fn(usize, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (op, next, prefix, objects) =
            (op.clone(), next.clone(), spec.prefix.clone(), spec.objects);
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    return Ok::<_, StoreError>(samples);
                }
                let due = if rate == 0 {
                    Instant::now()
                } else {
                    start + Duration::from_secs_f64(i as f64 / rate as f64)
                };
                tokio::time::sleep_until(due.into()).await;
                op(i, format!("{prefix}{i:08}")).await?;
                samples.push(due.elapsed());
            }
        }));
    }
    let mut samples = Vec::with_capacity(spec.objects);
    for worker in workers {
        let worker = worker
            .await
            .map_err(|e| StoreError::Internal(format!("load worker failed: {e}")))?;
        samples.extend(worker?);
    }
    Ok(Latency::from_samples(samples, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::from_samples(samples, Duration::from_secs(2));
        assert_eq!(
            (l.count, l.p50, l.p99, l.max),
            (
                100,
                Duration::from_millis(50),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        assert_eq!(l.per_second, 50.0);
        assert_eq!(
            Latency::from_samples(vec![], Duration::ZERO).p99,
            Duration::ZERO
        );
    }
}
