//! A load generator for the API (`kontti bench api`): create, get, list and watch over HTTPS/2
//! against a running server, with throughput and latency percentiles.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The kubeconfig is unreadable or lacks the admin credential.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A connection or request failed.
    #[error("request failed: {0}")]
    Request(String),
    /// The server answered with an unexpected status.
    #[error("{what}: unexpected status {status}: {body}")]
    Status {
        /// The operation.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The body, shortened.
        body: String,
    },
}

fn req_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Request(e.to_string())
}

/// Latency figures of one phase.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The phase name.
    pub name: String,
    /// Operations done.
    pub ops: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Phase {
    fn from(name: &str, mut lat: Vec<Duration>, elapsed: Duration) -> Phase {
        lat.sort();
        let pick = |q: f64| {
            lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Phase {
            name: name.into(),
            ops: lat.len(),
            elapsed,
            p50: pick(0.50),
            p99: pick(0.99),
        }
    }

    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An HTTP/2 connection to the server with the admin credential.
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
}

fn field(text: &str, name: &str) -> Option<Vec<u8>> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))?;
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()
}

impl Conn {
    /// Connects to `addr` with the credentials of the kubeconfig at `path`.
    pub async fn connect(path: &Path, addr: SocketAddr) -> Result<Conn, BenchError> {
        let bad = |reason: &str| BenchError::Kubeconfig {
            path: path.display().to_string(),
            reason: reason.into(),
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
        let ca = field(&text, "certificate-authority-data")
            .ok_or_else(|| bad("no certificate-authority-data"))?;
        let cert = field(&text, "client-certificate-data")
            .ok_or_else(|| bad("no client-certificate-data"))?;
        let key = field(&text, "client-key-data").ok_or_else(|| bad("no client-key-data"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&ca).map_err(|e| bad(&e.to_string()))?)
            .map_err(|e| bad(&e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad(&e.to_string()))?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(req_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| bad(&e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(req_err)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(addr.ip().to_string()).map_err(req_err)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(req_err)?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(req_err)?;
        tokio::spawn(conn);
        Ok(Conn { send })
    }

    /// One request; returns the status and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Bytes), BenchError> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(req_err)?;
        let mut send = self.send.clone();
        let resp = send.send_request(req).await.map_err(req_err)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(req_err)?
            .to_bytes();
        Ok((status, body))
    }

    async fn expect(
        &self,
        what: &'static str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        ok: u16,
    ) -> Result<Bytes, BenchError> {
        let (status, bytes) = self.call(method, path, body).await?;
        if status != ok {
            return Err(BenchError::Status {
                what,
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            });
        }
        Ok(bytes)
    }
}

const NS_PATH: &str = "/api/v1/namespaces/bench/configmaps";

fn object(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("obj-{i:05}"), "labels": {"bench": "true"}},
        "data": {"index": i.to_string(), "payload": "x".repeat(200)}})
}

/// Runs `n` operations with `concurrency` workers; `op(i)` performs operation `i`.
async fn parallel<F, Fut>(
    name: &str,
    n: usize,
    concurrency: usize,
    op: F,
) -> Result<Phase, BenchError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BenchError>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, BenchError>(lat);
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(req_err)??);
    }
    Ok(Phase::from(name, all, start.elapsed()))
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Objects to create, get and list.
    pub objects: usize,
    /// Concurrent requests in the create and get phases.
    pub concurrency: usize,
    /// Target rate of the paced-write phase (writes per second).
    pub write_rate: u32,
    /// Duration of the paced-write phase.
    pub write_seconds: u32,
    /// Watch-latency samples.
    pub watch_samples: usize,
}

/// Runs every phase; `report` gets each phase as it completes.
pub async fn run(
    conn: &Conn,
    opts: &BenchOptions,
    mut report: impl FnMut(&Phase),
) -> Result<Vec<Phase>, BenchError> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
    let (status, _) = conn.call("POST", "/api/v1/namespaces", Some(&ns)).await?;
    if status != 201 && status != 409 {
        return Err(BenchError::Status {
            what: "create namespace",
            status,
            body: String::new(),
        });
    }
    let mut phases = Vec::new();
    let c = conn.clone();
    let p = parallel("create", opts.objects, opts.concurrency, move |i| {
        let c = c.clone();
        async move {
            c.expect("create", "POST", NS_PATH, Some(&object(i)), 201)
                .await
                .map(|_| ())
        }
    })
    .await?;
    report(&p);
    phases.push(p);
    let c = conn.clone();
    let n = opts.objects;
    let p = parallel("get", opts.objects, opts.concurrency, move |i| {
        let c = c.clone();
        async move {
            c.expect(
                "get",
                "GET",
                &format!("{NS_PATH}/obj-{:05}", (i * 7919) % n),
                None,
                200,
            )
            .await
            .map(|_| ())
        }
    })
    .await?;
    report(&p);
    phases.push(p);
    let c = conn.clone();
    let p = parallel(
        &format!("list ({} objects)", opts.objects),
        10,
        1,
        move |_| {
            let c = c.clone();
            async move {
                c.expect("list", "GET", NS_PATH, None, 200)
                    .await
                    .map(|_| ())
            }
        },
    )
    .await?;
    report(&p);
    phases.push(p);
    let p = paced_writes(conn, opts).await?;
    report(&p);
    phases.push(p);
    let p = watch_latency(conn, opts.watch_samples).await?;
    report(&p);
    phases.push(p);
    Ok(phases)
}

/// Updates at a fixed rate (open loop: a slow reply does not slow the schedule).
async fn paced_writes(conn: &Conn, opts: &BenchOptions) -> Result<Phase, BenchError> {
    let total = (opts.write_rate * opts.write_seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.write_rate.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let c = conn.clone();
        let n = opts.objects.max(1);
        tasks.push(tokio::spawn(async move {
            let patch = json!({"data": {"tick": i.to_string()}});
            let req = hyper::Request::builder()
                .method("PATCH")
                .uri(format!("{NS_PATH}/obj-{:05}", i % n))
                .header("content-type", "application/merge-patch+json")
                .body(Full::new(Bytes::from(
                    serde_json::to_vec(&patch).unwrap_or_default(),
                )))
                .map_err(req_err)?;
            let t = Instant::now();
            let mut send = c.send.clone();
            let resp = send.send_request(req).await.map_err(req_err)?;
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            if status != 200 {
                return Err(BenchError::Status {
                    what: "patch",
                    status,
                    body: String::new(),
                });
            }
            Ok::<_, BenchError>(t.elapsed())
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.map_err(req_err)??);
    }
    Ok(Phase::from(
        &format!("patch at {}/s", opts.write_rate),
        lat,
        start.elapsed(),
    ))
}

/// Time from a write's reply to its watch event, over `samples` sequential writes.
async fn watch_latency(conn: &Conn, samples: usize) -> Result<Phase, BenchError> {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}, "data": {"n": "0"}});
    let (status, bytes) = conn.call("POST", NS_PATH, Some(&obj)).await?;
    if status != 201 {
        return Err(BenchError::Status {
            what: "create watched",
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let created: Value = serde_json::from_slice(&bytes).map_err(req_err)?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let req = hyper::Request::builder()
        .uri(format!(
            "{NS_PATH}?watch=true&fieldSelector=metadata.name%3Dwatched&resourceVersion={rv}"
        ))
        .body(Full::new(Bytes::new()))
        .map_err(req_err)?;
    let mut send = conn.send.clone();
    let mut resp = send.send_request(req).await.map_err(req_err)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = resp.body_mut().frame().await {
            if let Some(d) = frame.data_ref() {
                let now = Instant::now();
                for _ in d.iter().filter(|b| **b == b'\n') {
                    let _ = tx.send(now);
                }
            }
        }
    });
    let start = Instant::now();
    let mut lat = Vec::new();
    for i in 0..samples {
        let patch = json!({"data": {"n": i.to_string()}});
        let req = hyper::Request::builder()
            .method("PATCH")
            .uri(format!("{NS_PATH}/watched"))
            .header("content-type", "application/merge-patch+json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&patch).unwrap_or_default(),
            )))
            .map_err(req_err)?;
        let mut send = conn.send.clone();
        let resp = send.send_request(req).await.map_err(req_err)?;
        let _ = resp.into_body().collect().await;
        let acked = Instant::now();
        let seen = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| BenchError::Request("watch event did not arrive within 5 s".into()))?;
        let seen = seen.ok_or_else(|| BenchError::Request("watch ended".into()))?;
        lat.push(seen.saturating_duration_since(acked));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Phase::from(
        "watch delivery after write reply",
        lat,
        start.elapsed(),
    ))
}
