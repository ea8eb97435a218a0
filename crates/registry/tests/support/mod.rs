//! A scripted registry for client tests: a plain HTTP/1.1 server on loopback
//! (std threads, one request per connection) whose answers a test decides,
//! including faults (statuses, cut-off bodies, slow bodies), plus a fixture
//! image and the standard answers for it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kontti_image::hash::sha256 as sha256_of;
use serde_json::{Value, json};

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this many body bytes (Content-Length still
    /// announces the whole body).
    pub cut_after: Option<usize>,
    /// Send the body in pieces of this size with this pause between them.
    pub throttle: Option<(usize, Duration)>,
}

impl Resp {
    pub fn status(status: u16) -> Resp {
        Resp {
            status,
            ..Resp::default()
        }
    }
    pub fn ok(body: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            body,
            ..Resp::default()
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn error(status: u16, code: &str) -> Resp {
        let body = json!({"errors": [{"code": code, "message": code.to_lowercase()}]});
        Resp {
            status,
            body: body.to_string().into_bytes(),
            ..Resp::default()
        }
        .header("Content-Type", "application/json")
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// A running scripted server; stops on drop.
pub struct Scripted {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub log: Arc<Mutex<Vec<Req>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, l) = (handler.clone(), l.clone());
                std::thread::spawn(move || serve(conn, &*h, &l));
            }
        });
        Scripted {
            addr,
            stop,
            log,
            thread: Some(thread),
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    // A TLS ClientHello (a client probing for HTTPS): this is plain HTTP.
    let mut first = [0u8; 1];
    if conn.peek(&mut first).map_or(true, |n| n == 0) || first[0] == 0x16 {
        return;
    }
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Req {
        method,
        path,
        headers,
        body,
    };
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    let mut conn = conn;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_err() || req.method == "HEAD" {
        return;
    }
    let body = match resp.cut_after {
        Some(n) => &resp.body[..n.min(resp.body.len())],
        None => &resp.body[..],
    };
    match resp.throttle {
        Some((piece, pause)) => {
            for c in body.chunks(piece) {
                if conn.write_all(c).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        }
        None => {
            let _ = conn.write_all(body);
        }
    }
    let _ = conn.flush();
}

/// A fixture image: layers, config and manifest, addressed by digest.
#[derive(Clone)]
pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub layer_media_type: String,
}

impl Image {
    /// An image with layers of the given sizes (generated content).
    pub fn new(sizes: &[usize]) -> Image {
        Image::with_media_type(sizes, "application/vnd.oci.image.layer.v1.tar")
    }

    pub fn with_media_type(sizes: &[usize], media_type: &str) -> Image {
        let layers: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let body: Vec<u8> = (0..*n).map(|j| ((j * 7 + i * 13) % 251) as u8).collect();
                tar_with_file(&format!("layer{i}.bin"), &body)
            })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_of(l).to_string()).collect();
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})
            .to_string()
            .into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_of(&config).to_string(), "size": config.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": media_type, "digest": sha256_of(l).to_string(), "size": l.len()})).collect::<Vec<Value>>(),
        })
        .to_string()
        .into_bytes();
        Image {
            layers,
            config,
            manifest,
            layer_media_type: media_type.to_owned(),
        }
    }

    pub fn manifest_digest(&self) -> String {
        sha256_of(&self.manifest).to_string()
    }

    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        if sha256_of(&self.config).to_string() == digest {
            return Some(&self.config);
        }
        self.layers
            .iter()
            .find(|l| sha256_of(l).to_string() == digest)
            .map(|l| &l[..])
    }

    /// The standard answer for `req` in repository `repo` (tag `v1`).
    pub fn answer(&self, repo: &str, req: &Req) -> Resp {
        let p = req.path.split('?').next().unwrap_or("");
        if p == "/v2/" {
            return Resp::ok(b"{}".to_vec());
        }
        let Some(rest) = p.strip_prefix(&format!("/v2/{repo}/")) else {
            return Resp::error(404, "NAME_UNKNOWN");
        };
        if let Some(r) = rest.strip_prefix("manifests/") {
            if r == "v1" || r == self.manifest_digest() {
                return Resp::ok(self.manifest.clone())
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .header("Docker-Content-Digest", &self.manifest_digest());
            }
            return Resp::error(404, "MANIFEST_UNKNOWN");
        }
        if let Some(d) = rest.strip_prefix("blobs/") {
            let Some(data) = self.blob(d) else {
                return Resp::error(404, "BLOB_UNKNOWN");
            };
            return range_answer(data, req);
        }
        Resp::error(404, "NAME_UNKNOWN")
    }
}

/// 200 with the whole blob, or 206 for a `Range: bytes=N-` request.
pub fn range_answer(data: &[u8], req: &Req) -> Resp {
    if let Some(r) = req.header("Range") {
        let start: usize = r
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap_or(0);
        return Resp {
            status: 206,
            body: data[start.min(data.len())..].to_vec(),
            ..Resp::default()
        }
        .header(
            "Content-Range",
            &format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
        );
    }
    Resp::ok(data.to_vec())
}

/// An uncompressed tar archive holding one regular file (ustar format).
pub fn tar_with_file(name: &str, body: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], body.len() as u64);
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}
