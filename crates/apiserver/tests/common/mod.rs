//! Test harness: a live server on a free loopback port with its own data directory, an etcd on
//! loopback, kubectl by path with its own HOME and cache, and a small HTTPS client.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The kubectl versions the tests use, by path.
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The path of `kubectl.1.NN`, failing clearly when it is missing.
pub fn kubectl_path(minor: u32) -> PathBuf {
    let p = PathBuf::from(format!("{KUBECTL_DIR}/kubectl.1.{minor}"));
    assert!(
        p.exists(),
        "{} is missing: these tests need kubectl 1.27 and 1.33 from the Google Cloud SDK (install google-cloud-cli-kubectl)",
        p.display()
    );
    p
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A server running on its own runtime thread; stopped on drop.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on the embedded store (`datastore` None) or the given datastore URL.
    pub fn start(datastore: Option<String>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::start_in(dir, datastore)
    }

    /// Starts a server with `dir` as its data directory.
    pub fn start_in(dir: tempfile::TempDir, datastore: Option<String>) -> Result<Self> {
        let opts = kontti_apiserver::ServerOptions {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            datastore,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match kontti_apiserver::start(&opts).await {
                    Ok(server) => {
                        let _ = ready_tx.send(Ok((server.addr, server.kubeconfig_path.clone())));
                        let _ = stop_rx.await;
                        drop(server);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        let (addr, kubeconfig) = ready_rx
            .recv_timeout(Duration::from_secs(60))?
            .map_err(anyhow::Error::msg)?;
        Ok(TestServer {
            dir,
            addr,
            kubeconfig,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// A kubectl of version 1.`minor` with its own HOME and cache directory.
    pub fn kubectl(&self, minor: u32) -> Kubectl {
        let home = tempfile::tempdir().expect("kubectl home");
        Kubectl {
            bin: kubectl_path(minor),
            kubeconfig: self.kubeconfig.clone(),
            home,
        }
    }

    /// An HTTPS client with the admin credential.
    pub fn client(&self) -> Client {
        Client::from_kubeconfig(&self.kubeconfig, self.addr, true).expect("client")
    }

    /// An HTTPS client without a client certificate.
    pub fn anonymous_client(&self) -> Client {
        Client::from_kubeconfig(&self.kubeconfig, self.addr, false).expect("client")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// kubectl with its own HOME and `--cache-dir`.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: tempfile::TempDir,
}

impl Kubectl {
    /// A command with the kubeconfig, cache dir and HOME set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"));
        c.args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG");
        c
    }

    /// Runs and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("kubectl runs")
    }

    /// Runs with `stdin`.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl finishes")
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs with `stdin`, asserts success, returns stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes `text` into the kubectl home and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.home.path().join(name);
        std::fs::write(&p, text).expect("write manifest");
        p
    }
}

/// etcd on free loopback ports with its own data directory; killed on drop.
pub struct Etcd {
    child: Option<Child>,
    pub url: String,
    pub client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (cp, pp) = (free_port(), free_port());
        let child = Self::spawn(dir.path(), cp, pp)?;
        Ok(Etcd {
            child: Some(child),
            url: format!("etcd://127.0.0.1:{cp}/kontti-test/"),
            client_port: cp,
            peer_port: pp,
            dir,
        })
    }

    /// Kills etcd (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.child = Some(Self::spawn(
            self.dir.path(),
            self.client_port,
            self.peer_port,
        )?);
        Ok(())
    }

    fn spawn(dir: &Path, cp: u16, pp: u16) -> Result<Child> {
        let bin = Path::new("/usr/bin/etcd");
        if !bin.exists() {
            bail!("/usr/bin/etcd is missing: install Debian's etcd-server");
        }
        let child = Command::new(bin)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("data"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{cp}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{cp}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{pp}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{pp}"
            ))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{pp}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start etcd")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", cp)).is_err() {
            if Instant::now() > deadline {
                bail!("etcd did not listen on 127.0.0.1:{cp}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(child)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn b64_field(kubeconfig: &str, field: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    let line = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}: ")))
        .context(field.to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.decode(line.trim())?)
}

/// A minimal HTTPS client (HTTP/1.1, one connection per request).
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
}

/// A response.
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Client {
    pub fn from_kubeconfig(path: &Path, addr: SocketAddr, with_cert: bool) -> Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let ca = CertificateDer::from_pem_slice(&b64_field(&text, "certificate-authority-data")?)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = if with_cert {
            let certs =
                CertificateDer::pem_slice_iter(&b64_field(&text, "client-certificate-data")?)
                    .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(&b64_field(&text, "client-key-data")?)?;
            builder.with_client_auth_cert(certs, key)?
        } else {
            builder.with_no_client_auth()
        };
        Ok(Client {
            config: Arc::new(config),
            addr,
        })
    }

    /// One request; returns status, headers and the whole body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Resp> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
            .await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Resp> {
        self.request("GET", path, "", Vec::new()).await
    }

    pub async fn post_json(&self, path: &str, v: &serde_json::Value) -> Result<Resp> {
        self.request("POST", path, "application/json", serde_json::to_vec(v)?)
            .await
    }

    pub async fn put_json(&self, path: &str, v: &serde_json::Value) -> Result<Resp> {
        self.request("PUT", path, "application/json", serde_json::to_vec(v)?)
            .await
    }

    /// Opens a watch and returns the raw response stream.
    pub async fn stream(&self, path: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
            .await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method("GET")
            .uri(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))?;
        Ok(sender.send_request(req).await?)
    }
}

/// The smallest valid object of `def`'s kind named `name` (in no namespace: the caller's request or
/// kubectl's `-n` gives it one).
pub fn minimal(def: &kontti_apiserver::resources::ResourceDef, name: &str) -> serde_json::Value {
    use serde_json::json;
    let template = json!({"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let selector = json!({"matchLabels": {"app": name}});
    let mut o =
        json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {"name": name}});
    match def.kind {
        "Pod" => o["spec"] = json!({"containers": [{"name": "c", "image": "busybox"}]}),
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            o["spec"] = json!({"selector": selector, "template": template})
        }
        "StatefulSet" => {
            o["spec"] = json!({"selector": selector, "template": template, "serviceName": name})
        }
        "Event" if def.group.is_empty() => {
            o["involvedObject"] = json!({"kind": "Pod", "name": "p"})
        }
        "Event" => o["eventTime"] = json!("2024-01-01T00:00:00.000000Z"),
        "EndpointSlice" => {
            o["addressType"] = json!("IPv4");
            o["endpoints"] = json!([{"addresses": ["10.0.0.1"]}]);
        }
        "HorizontalPodAutoscaler" => {
            o["spec"] = json!({"scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"}, "maxReplicas": 3})
        }
        _ => {}
    }
    o
}
