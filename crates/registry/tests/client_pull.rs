//! The registry client against scripted registries on loopback: auth flows,
//! retries, resume, mirrors, and every fault leaving the store consistent.
#![allow(clippy::disallowed_macros)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kontti_core::{ErrorKind, ImageRef};
use kontti_image::hash::sha256 as sha256_of;
use kontti_registry::client::progress::NoProgress;
use kontti_registry::client::{
    Client, ClientOptions, CredentialStore, Credentials, RegistriesConfig, Retry,
};
use kontti_registry::local::{self, LocalError};
use serde_json::json;
use support::{Image, Req, Resp, Scripted};

fn client_with(dir: &Path, registries: RegistriesConfig) -> Client {
    Client::new(ClientOptions {
        registries,
        insecure: Vec::new(),
        credentials: CredentialStore {
            auth_file: dir.join("auth.json"),
            docker_config: None,
            helper_dirs: Vec::new(),
        },
        retry: Retry {
            retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(3),
        },
        concurrency: 3,
    })
    .unwrap()
}

fn client(dir: &Path) -> Client {
    client_with(dir, RegistriesConfig::default())
}

async fn pull(
    c: &Client,
    dir: &Path,
    reference: &str,
) -> Result<kontti_registry::client::Pulled, LocalError> {
    local::pull(
        c,
        &dir.join("content"),
        &ImageRef::parse(reference).unwrap(),
        &"linux/amd64".parse().unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .and_then(|p| {
        p.name()?;
        Ok(p.pulled)
    })
}

fn has_blob(dir: &Path, data: &[u8]) -> bool {
    dir.join("content/blobs/sha256")
        .join(sha256_of(data).hex())
        .exists()
}

fn refs(dir: &Path) -> usize {
    kontti_image::ContentStore::open(dir.join("content"))
        .unwrap()
        .refs()
        .unwrap()
        .len()
}

fn assert_nothing_stored(dir: &Path, img: &Image) {
    for l in &img.layers {
        assert!(!has_blob(dir, l), "a layer entered the store");
    }
    assert!(!has_blob(dir, &img.manifest));
    assert_eq!(refs(dir), 0, "no name was recorded");
}

#[tokio::test]
async fn anonymous_pull_stores_and_names_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[1000, 200_000, 3]);
    let i2 = img.clone();
    let srv = Scripted::start(move |r| i2.answer("lib/img", r));
    let c = client(dir.path());
    let pulled = pull(&c, dir.path(), &format!("{}/lib/img:v1", srv.host()))
        .await
        .unwrap();
    assert_eq!(pulled.downloaded, 3);
    assert_eq!(pulled.manifest_digest.to_string(), img.manifest_digest());
    for l in &img.layers {
        assert!(has_blob(dir.path(), l));
    }
    assert_eq!(refs(dir.path()), 1);
    // A second pull downloads nothing.
    let again = pull(&c, dir.path(), &format!("{}/lib/img:v1", srv.host()))
        .await
        .unwrap();
    assert_eq!(again.downloaded, 0);
    let blob_gets = srv
        .requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .count();
    assert_eq!(blob_gets, 4, "config and three layers, once each");
}

#[tokio::test]
async fn bearer_token_flow_with_stored_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[5000]);
    let i2 = img.clone();
    let port_cell = Arc::new(std::sync::OnceLock::<String>::new());
    let pc = port_cell.clone();
    let srv = Scripted::start(move |r: &Req| {
        let host = pc.get().cloned().unwrap_or_default();
        if r.path.starts_with("/token") {
            let want = format!("Basic {}", base64_of("alice:s3cret"));
            if r.header("Authorization") != Some(want.as_str()) {
                return Resp::status(401);
            }
            // login asks for no scope; a pull for the repository's.
            let scoped = r.path.contains("scope=");
            assert!(
                !scoped || r.path.contains("scope=repository%3Alib%2Fimg%3Apull"),
                "{}",
                r.path
            );
            assert!(r.path.contains("service=test-registry"), "{}", r.path);
            return Resp::ok(br#"{"token":"tok-123"}"#.to_vec());
        }
        if r.header("Authorization") != Some("Bearer tok-123") {
            return Resp::error(401, "UNAUTHORIZED").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/token",service="test-registry",scope="repository:lib/img:pull""#),
            );
        }
        i2.answer("lib/img", r)
    });
    port_cell.set(srv.host()).unwrap();
    let c = client(dir.path());
    // Without credentials the token service refuses: a clear error.
    let e = pull(&c, dir.path(), &format!("{}/lib/img:v1", srv.host()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.to_string().contains("kontti login"), "{e}");
    assert_nothing_stored(dir.path(), &img);
    // login checks and stores the credentials; the pull then works.
    let creds = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let wrong = Credentials {
        username: "alice".into(),
        password: "nope".into(),
    };
    assert!(c.login(&srv.host(), &wrong).await.is_err());
    c.login(&srv.host(), &creds).await.unwrap();
    pull(&c, dir.path(), &format!("{}/lib/img:v1", srv.host()))
        .await
        .unwrap();
    assert!(has_blob(dir.path(), &img.layers[0]));
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn basic_auth_challenge_uses_stored_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[10]);
    let i2 = img.clone();
    let srv = Scripted::start(move |r: &Req| {
        let want = format!("Basic {}", base64_of("bob:pw"));
        if r.header("Authorization") != Some(want.as_str()) {
            return Resp::error(401, "UNAUTHORIZED")
                .header("WWW-Authenticate", r#"Basic realm="x""#);
        }
        i2.answer("a", r)
    });
    let c = client(dir.path());
    let e = pull(&c, dir.path(), &format!("{}/a:v1", srv.host()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    CredentialStore {
        auth_file: dir.path().join("auth.json"),
        docker_config: None,
        helper_dirs: Vec::new(),
    }
    .store(
        &srv.host(),
        &Credentials {
            username: "bob".into(),
            password: "pw".into(),
        },
    )
    .unwrap();
    pull(&c, dir.path(), &format!("{}/a:v1", srv.host()))
        .await
        .unwrap();
}

#[tokio::test]
async fn not_found_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[10]);
    let i2 = img.clone();
    let srv = Scripted::start(move |r| i2.answer("a", r));
    let e = pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:nope", srv.host()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.to_string().contains("404") && e.to_string().contains("MANIFEST_UNKNOWN"),
        "{e}"
    );
    assert_nothing_stored(dir.path(), &img);
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[100]);
    let i2 = img.clone();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let srv = Scripted::start(move |r: &Req| {
        if r.path.contains("/manifests/") && n2.fetch_add(1, Ordering::SeqCst) == 0 {
            return Resp::error(429, "TOOMANYREQUESTS").header("Retry-After", "1");
        }
        i2.answer("a", r)
    });
    let t = Instant::now();
    pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:v1", srv.host()),
    )
    .await
    .unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited as Retry-After asked"
    );
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[100, 100]);
    let i2 = img.clone();
    let bad = sha256_of(&img.layers[1]).to_string();
    let srv = Scripted::start(move |r: &Req| {
        if r.path.ends_with(&bad) {
            return Resp::error(500, "UNKNOWN");
        }
        i2.answer("a", r)
    });
    let e = pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:v1", srv.host()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("500"), "{e}");
    let tries = srv
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&sha256_of(&img.layers[1]).to_string()))
        .count();
    assert_eq!(tries, 4, "first attempt and three retries");
    assert!(!has_blob(dir.path(), &img.layers[1]));
    assert_eq!(refs(dir.path()), 0);
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[4096]);
    let i2 = img.clone();
    let layer_d = sha256_of(&img.layers[0]).to_string();
    let srv = Scripted::start(move |r: &Req| {
        if r.path.ends_with(&layer_d) {
            let mut evil = i2.layers[0].clone();
            evil[100] ^= 1;
            return Resp::ok(evil);
        }
        i2.answer("a", r)
    });
    let e = pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:v1", srv.host()),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("digest"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert_nothing_stored(dir.path(), &img);
    let ingest = dir.path().join("content/ingest");
    let left: Vec<_> = std::fs::read_dir(&ingest)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the failed ingest was removed: {left:?}");
}

#[tokio::test]
async fn truncated_download_resumes_with_a_range_request() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[300_000]);
    let i2 = img.clone();
    let layer_d = sha256_of(&img.layers[0]).to_string();
    let cut = Arc::new(AtomicUsize::new(0));
    let c2 = cut.clone();
    let srv = Scripted::start(move |r: &Req| {
        let mut resp = i2.answer("a", r);
        if r.path.ends_with(&layer_d) && c2.fetch_add(1, Ordering::SeqCst) == 0 {
            resp.cut_after = Some(120_000);
        }
        resp
    });
    pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:v1", srv.host()),
    )
    .await
    .unwrap();
    assert!(has_blob(dir.path(), &img.layers[0]));
    let ranges: Vec<String> = srv
        .requests()
        .iter()
        .filter_map(|r| r.header("Range").map(str::to_owned))
        .collect();
    assert_eq!(
        ranges,
        vec!["bytes=120000-".to_owned()],
        "resumed where the cut happened"
    );
}

#[tokio::test]
async fn always_truncated_download_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[50_000]);
    let i2 = img.clone();
    let srv = Scripted::start(move |r: &Req| {
        let mut resp = i2.answer("a", r);
        if r.path.contains("/blobs/") && resp.body.len() > 1000 {
            resp.cut_after = Some(10);
        }
        resp
    });
    let e = pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:v1", srv.host()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_nothing_stored(dir.path(), &img);
}

#[tokio::test]
async fn unknown_layer_media_type_is_refused_before_download() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::with_media_type(&[10], "application/x-unknown-layer");
    let i2 = img.clone();
    let srv = Scripted::start(move |r| i2.answer("a", r));
    let e = pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:v1", srv.host()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(e.to_string().contains("application/x-unknown-layer"), "{e}");
    assert!(srv.requests().iter().all(|r| !r.path.contains("/blobs/")));
    assert_nothing_stored(dir.path(), &img);
}

#[tokio::test]
async fn index_without_the_platform_names_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[10]);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest(), "size": img.manifest.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest(), "size": img.manifest.len(),
             "platform": {"os": "windows", "architecture": "amd64"}}
        ]
    })
    .to_string()
    .into_bytes();
    let i2 = img.clone();
    let idx = index.clone();
    let srv = Scripted::start(move |r: &Req| {
        if r.path.ends_with("/manifests/multi") {
            return Resp::ok(idx.clone())
                .header("Content-Type", "application/vnd.oci.image.index.v1+json");
        }
        i2.answer("a", r)
    });
    let e = pull(
        &client(dir.path()),
        dir.path(),
        &format!("{}/a:multi", srv.host()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("linux/amd64")
            && msg.contains("linux/arm64/v8")
            && msg.contains("windows/amd64"),
        "{msg}"
    );
    assert_nothing_stored(dir.path(), &img);
    // The arm64 one is there.
    let pulled = local::pull(
        &client(dir.path()),
        &dir.path().join("content"),
        &ImageRef::parse(&format!("{}/a:multi", srv.host())).unwrap(),
        &"linux/arm64/v8".parse().unwrap(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert!(pulled.pulled.index.is_some());
    assert!(has_blob(dir.path(), &index), "the index is stored");
}

#[tokio::test]
async fn mirror_is_tried_first() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[10]);
    let i2 = img.clone();
    let mirror = Scripted::start(move |r| i2.answer("lib/a", r));
    let mut registries = RegistriesConfig::default();
    // The registry itself is a closed port: only the mirror can answer.
    registries
        .mirrors
        .insert("127.0.0.9:1".into(), vec![mirror.host()]);
    let c = client_with(dir.path(), registries);
    pull(&c, dir.path(), "127.0.0.9:1/lib/a:v1").await.unwrap();
    assert!(has_blob(dir.path(), &img.layers[0]));
    let names = kontti_image::ContentStore::open(dir.path().join("content"))
        .unwrap()
        .refs()
        .unwrap();
    assert_eq!(
        names[0].name.as_ref().unwrap().to_string(),
        "127.0.0.9:1/lib/a:v1"
    );
}
