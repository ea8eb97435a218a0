//! Pushing from the local store to the built-in registry: uploads (one PUT
//! for small blobs, chunked PATCHes for large ones), blobs the registry has
//! are skipped, shared blobs are mounted across repositories.
#![allow(clippy::disallowed_macros)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kontti_core::{Digest, ImageRef};
use kontti_image::hash::sha256 as sha256_of;
use kontti_registry::blobs::{BlobStore, ContentBlobs};
use kontti_registry::client::progress::NoProgress;
use kontti_registry::client::{
    Client, ClientOptions, CredentialStore, Progress, RegistriesConfig, Retry,
};
use kontti_registry::local;
use kontti_registry::server::{Server, ServerConfig};
use serde_json::json;

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Progress for Events {
    fn start(&self, d: &Digest, _: u64, _: u64) {
        self.0.lock().unwrap().push(format!("start {}", d.short()));
    }
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, d: &Digest) {
        self.0.lock().unwrap().push(format!("done {}", d.short()));
    }
    fn exists(&self, d: &Digest) {
        self.0.lock().unwrap().push(format!("exists {}", d.short()));
    }
    fn mounted(&self, d: &Digest, from: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("mounted {} {from}", d.short()));
    }
}

fn client(dir: &Path) -> Client {
    Client::new(ClientOptions {
        registries: RegistriesConfig::default(),
        insecure: Vec::new(),
        credentials: CredentialStore {
            auth_file: dir.join("auth.json"),
            docker_config: None,
            helper_dirs: Vec::new(),
        },
        retry: Retry {
            retries: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
        },
        concurrency: 3,
    })
    .unwrap()
}

fn put(blobs: &ContentBlobs, data: &[u8]) -> Digest {
    let d = sha256_of(data);
    let mut s = blobs.sink(&d, data.len() as u64).unwrap();
    s.write_all(data).unwrap();
    s.commit().unwrap();
    d
}

/// Stores an image with the given layers under `name`; returns the manifest digest.
fn store_image(content: &Path, name: &str, layers: &[Vec<u8>]) -> Digest {
    let blobs = ContentBlobs::open(content, "test", true).unwrap();
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).to_string();
    let cd = put(&blobs, config.as_bytes());
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(&blobs, l).to_string(), "size": l.len()}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": layer_descs,
    })
    .to_string();
    let md = put(&blobs, manifest.as_bytes());
    let desc = kontti_image::Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        md.clone(),
        manifest.len() as u64,
    );
    blobs
        .store()
        .set_ref(&ImageRef::parse(name).unwrap(), &desc)
        .unwrap();
    md
}

#[tokio::test]
async fn push_uploads_skips_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("registry");
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        storage: storage.clone(),
        tls: None,
        htpasswd: None,
    };
    let server = Server::bind(
        &config,
        Arc::new(ContentBlobs::open(&storage, "registry", false).unwrap()),
    )
    .await
    .unwrap();
    let host = server.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));

    let content = dir.path().join("content");
    // One layer larger than the chunk size goes up in PATCHes.
    let big: Vec<u8> = (0..(33u32 << 20)).map(|i| (i % 253) as u8).collect();
    let small = b"small layer".to_vec();
    let md = store_image(
        &content,
        &format!("{host}/team/app:v1"),
        &[big.clone(), small.clone()],
    );
    let c = client(dir.path());
    let events = Arc::new(Events::default());
    let pushed = local::push(
        &c,
        &content,
        &ImageRef::parse(&format!("{host}/team/app:v1")).unwrap(),
        events.clone(),
    )
    .await
    .unwrap();
    assert_eq!(pushed, md);
    let ev = events.0.lock().unwrap().clone();
    assert_eq!(
        ev.iter().filter(|e| e.starts_with("done")).count(),
        3,
        "{ev:?}"
    );

    // Pushing again skips every blob.
    let events = Arc::new(Events::default());
    local::push(
        &c,
        &content,
        &ImageRef::parse(&format!("{host}/team/app:v1")).unwrap(),
        events.clone(),
    )
    .await
    .unwrap();
    let ev = events.0.lock().unwrap().clone();
    assert_eq!(
        ev.iter().filter(|e| e.starts_with("exists")).count(),
        3,
        "{ev:?}"
    );

    // Another repository sharing the big layer mounts it.
    let other = b"other top layer".to_vec();
    store_image(
        &content,
        &format!("{host}/team/other:v1"),
        &[big.clone(), other],
    );
    let events = Arc::new(Events::default());
    local::push(
        &c,
        &content,
        &ImageRef::parse(&format!("{host}/team/other:v1")).unwrap(),
        events.clone(),
    )
    .await
    .unwrap();
    let ev = events.0.lock().unwrap().clone();
    let big_short = sha256_of(&big).short().to_owned();
    assert!(
        ev.contains(&format!("mounted {big_short} team/app")),
        "{ev:?}"
    );

    // Pull back into a fresh store: same manifest digest, same content.
    let fresh = dir.path().join("fresh");
    let pulled = local::pull(
        &c,
        &fresh,
        &ImageRef::parse(&format!("{host}/team/app:v1")).unwrap(),
        &"linux/amd64".parse().unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(pulled.pulled.manifest_digest, md);
    let got = std::fs::read(fresh.join("blobs/sha256").join(sha256_of(&big).hex())).unwrap();
    assert!(got == big);
    let _ = tx.send(());
}

#[tokio::test]
async fn pushing_an_unknown_image_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(dir.path());
    let e = local::push(
        &c,
        &dir.path().join("content"),
        &ImageRef::parse("127.0.0.1:9/none:v1").unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), kontti_core::ErrorKind::NotFound);
    assert_eq!(e.to_string(), "no such image: 127.0.0.1:9/none:v1");
}

#[tokio::test]
async fn tls_registry_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let storage = dir.path().join("registry");
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        storage: storage.clone(),
        tls: Some((cert.clone(), key)),
        htpasswd: None,
    };
    let server = Server::bind(
        &config,
        Arc::new(ContentBlobs::open(&storage, "registry", false).unwrap()),
    )
    .await
    .unwrap();
    let host = server.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    let content = dir.path().join("content");
    let md = store_image(
        &content,
        &format!("{host}/tls/app:v1"),
        &[b"over tls".to_vec()],
    );
    let mut registries = RegistriesConfig::default();
    registries.ca_certs.push(cert);
    let c = Client::new(ClientOptions {
        registries,
        insecure: Vec::new(),
        credentials: CredentialStore {
            auth_file: dir.path().join("auth.json"),
            docker_config: None,
            helper_dirs: Vec::new(),
        },
        retry: Retry::default(),
        concurrency: 3,
    })
    .unwrap();
    let r = ImageRef::parse(&format!("{host}/tls/app:v1")).unwrap();
    assert_eq!(
        local::push(&c, &content, &r, Arc::new(NoProgress))
            .await
            .unwrap(),
        md
    );
    let pulled = local::pull(
        &c,
        &dir.path().join("fresh"),
        &r,
        &"linux/amd64".parse().unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(pulled.pulled.manifest_digest, md);
    // Plain HTTP to the TLS port is refused by the server.
    let plain = reqwest::Client::new()
        .get(format!("http://{host}/v2/"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    let _ = tx.send(());
}
