//! The registry client (distribution spec v2): pull, push, login.
//!
//! A pull resolves a reference to a manifest (selecting a platform from an
//! index), then fetches the config and the layers the store does not have,
//! a few at a time, each streamed into a partial file in the store's ingest
//! directory, hashed on the way and adopted only once its digest and size
//! are verified. A partial file left by an interrupted pull is resumed with
//! an HTTP range request. Nothing is held whole in memory but manifests and
//! configs (bounded at 4 MiB).

pub mod auth;
pub mod config;
mod download;
pub mod error;
pub mod platform;
pub mod progress;
mod push;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use kontti_core::{Digest, ImageRef};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

pub use auth::{CredentialStore, Credentials};
pub use config::RegistriesConfig;
pub use error::ClientError;
pub use platform::Platform;
pub use progress::Progress;
pub use transport::Retry;

use crate::blobs::BlobStore;
use crate::media;
use transport::{Repo, status_error};

/// The largest manifest or config read (as docker's registry: 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// How a [`Client`] reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Insecure registries, mirrors, extra CAs.
    pub registries: RegistriesConfig,
    /// Extra insecure registries (the `--insecure-registry` flag).
    pub insecure: Vec<String>,
    /// Where credentials are.
    pub credentials: CredentialStore,
    /// Retry policy.
    pub retry: Retry,
    /// Layers downloaded or uploaded at once.
    pub concurrency: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            registries: RegistriesConfig::default(),
            insecure: Vec::new(),
            credentials: CredentialStore::from_env(),
            retry: Retry::default(),
            concurrency: 3,
        }
    }
}

/// A registry client.
pub struct Client {
    http: reqwest::Client,
    registries: RegistriesConfig,
    credentials: CredentialStore,
    retry: Retry,
    concurrency: usize,
    bases: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// What a pull fetched.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The index the reference named, if it named one: digest, media type, bytes.
    pub index: Option<(Digest, String, Vec<u8>)>,
    /// The image manifest's digest.
    pub manifest_digest: Digest,
    /// Its media type.
    pub manifest_media_type: String,
    /// Its bytes.
    pub manifest: Vec<u8>,
    /// The config descriptor.
    pub config: Descriptor,
    /// The layer descriptors, base first.
    pub layers: Vec<Descriptor>,
    /// How many layers were downloaded (the others were in the store).
    pub downloaded: usize,
}

/// The part of an image manifest a client needs.
#[derive(Debug, Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

impl Client {
    /// A client; fails when an extra CA certificate is unusable.
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let mut registries = opts.registries;
        registries.insecure.extend(opts.insecure);
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("kontti/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8);
        for path in &registries.ca_certs {
            let pem = std::fs::read(path).map_err(|e| config::ConfigError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                config::ConfigError::CaCert {
                    path: path.clone(),
                    reason: error::chain(&e),
                }
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| ClientError::Http {
            url: String::new(),
            reason: error::chain(&e),
        })?;
        Ok(Client {
            http,
            registries,
            credentials: opts.credentials,
            retry: opts.retry,
            concurrency: opts.concurrency.max(1),
            bases: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The base URL for `host`: HTTPS, except for insecure and loopback
    /// registries, which get HTTPS when they answer it (a quick `GET /v2/`
    /// probe, as docker does) and plain HTTP otherwise.
    async fn base_url(&self, host: &str) -> String {
        let https = format!("https://{host}");
        if !self.registries.is_insecure(host) {
            return https;
        }
        if let Some(b) = self.bases.lock().await.get(host) {
            return b.clone();
        }
        let probe = self
            .http
            .get(format!("{https}/v2/"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let base = match probe {
            Ok(_) => https,
            Err(e) => {
                tracing::debug!(%host, error = %error::chain(&e), "no HTTPS, using plain HTTP");
                format!("http://{host}")
            }
        };
        self.bases
            .lock()
            .await
            .insert(host.to_owned(), base.clone());
        base
    }

    async fn repo(
        &self,
        registry: &str,
        host: &str,
        name: &str,
        push: bool,
    ) -> Result<Repo, ClientError> {
        let creds = self.credentials.get(registry)?;
        Ok(Repo::new(
            self.http.clone(),
            self.base_url(host).await,
            registry.to_owned(),
            name.to_owned(),
            creds,
            push,
            self.retry,
        ))
    }

    /// Checks credentials against a registry (`GET /v2/`, answering its
    /// challenge) and stores them when they work.
    pub async fn login(&self, registry: &str, creds: &Credentials) -> Result<(), ClientError> {
        let host = config::api_host(registry);
        let mut repo = Repo::new(
            self.http.clone(),
            self.base_url(host).await,
            registry.to_owned(),
            String::new(),
            Some(creds.clone()),
            false,
            self.retry,
        );
        repo.clear_scopes();
        let url = format!("{}/v2/", repo.base);
        let resp = repo.send(Method::GET, &url, |rb| rb).await?;
        if !resp.status().is_success() {
            return Err(status_error(&url, resp).await);
        }
        self.credentials.store(registry, creds)?;
        Ok(())
    }

    /// Pulls `reference` for `platform` into `store`.
    pub async fn pull(
        &self,
        reference: &ImageRef,
        platform: &Platform,
        store: Arc<dyn BlobStore>,
        progress: Arc<dyn Progress>,
    ) -> Result<Pulled, ClientError> {
        self.pull_observed(reference, platform, store, progress, None)
            .await
    }

    /// Pulls `reference` for `platform` into `store`, telling `observer` as
    /// soon as the config and then each layer is in the store.
    pub async fn pull_observed(
        &self,
        reference: &ImageRef,
        platform: &Platform,
        store: Arc<dyn BlobStore>,
        progress: Arc<dyn Progress>,
        observer: Option<Arc<dyn PullObserver>>,
    ) -> Result<Pulled, ClientError> {
        let registry = reference.registry();
        let endpoints = self.registries.pull_endpoints(registry);
        let mut last_err = None;
        for (i, host) in endpoints.iter().enumerate() {
            let repo = self
                .repo(registry, host, reference.repository(), false)
                .await?;
            let resolved = self.resolve(&repo, reference, platform).await;
            match resolved {
                Ok(r) => return self.fetch_image(repo, r, store, progress, observer).await,
                Err(e) if i + 1 < endpoints.len() => {
                    tracing::warn!(mirror = %host, error = %e, "mirror failed, trying the next endpoint");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Http {
            url: registry.to_owned(),
            reason: "no endpoint".into(),
        }))
    }

    /// Fetches the manifest (and index) a reference names.
    async fn resolve(
        &self,
        repo: &Repo,
        reference: &ImageRef,
        platform: &Platform,
    ) -> Result<Pulled, ClientError> {
        let tag_or_digest = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => kontti_core::DEFAULT_TAG.to_owned(),
        };
        let shown = reference.to_string();
        let (digest, media_type, bytes) =
            fetch_manifest(repo, &tag_or_digest, reference.digest(), &shown).await?;
        let (index, digest, media_type, bytes) = if media::is_index(&media_type) {
            let doc: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| ClientError::ManifestInvalid {
                    reference: shown.clone(),
                    reason: e.to_string(),
                })?;
            let entries = doc["manifests"].as_array().cloned().unwrap_or_default();
            let chosen = entries.iter().find(|m| platform.matches(&m["platform"]));
            let Some(chosen) = chosen else {
                let available: Vec<String> = entries
                    .iter()
                    .map(|m| Platform::describe(&m["platform"]))
                    .collect();
                return Err(ClientError::PlatformNotFound {
                    platform: platform.to_string(),
                    reference: shown,
                    available: if available.is_empty() {
                        "none".into()
                    } else {
                        available.join(", ")
                    },
                });
            };
            let child: Digest = chosen["digest"]
                .as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| ClientError::ManifestInvalid {
                    reference: shown.clone(),
                    reason: "index entry without a valid digest".into(),
                })?;
            let (cd, cm, cb) =
                fetch_manifest(repo, &child.to_string(), Some(&child), &shown).await?;
            if media::is_index(&cm) {
                return Err(ClientError::ManifestInvalid {
                    reference: shown,
                    reason: "nested index".into(),
                });
            }
            (Some((digest, media_type, bytes)), cd, cm, cb)
        } else {
            (None, digest, media_type, bytes)
        };
        let doc: ManifestDoc =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::ManifestInvalid {
                reference: shown.clone(),
                reason: e.to_string(),
            })?;
        for l in &doc.layers {
            if !is_layer_type(&l.media_type) {
                return Err(ClientError::UnsupportedMediaType {
                    media_type: l.media_type.clone(),
                    reference: shown,
                });
            }
        }
        Ok(Pulled {
            index,
            manifest_digest: digest,
            manifest_media_type: media_type,
            manifest: bytes,
            config: doc.config,
            layers: doc.layers,
            downloaded: 0,
        })
    }

    async fn fetch_image(
        &self,
        repo: Repo,
        mut pulled: Pulled,
        store: Arc<dyn BlobStore>,
        progress: Arc<dyn Progress>,
        observer: Option<Arc<dyn PullObserver>>,
    ) -> Result<Pulled, ClientError> {
        use futures_util::StreamExt;
        let repo = Arc::new(repo);
        let have = |d: &Descriptor| {
            store
                .blob_size(&d.digest)
                .map(|s| s == Some(d.size))
                .map_err(|e| ClientError::io(format!("checking blob {}", d.digest), e))
        };
        // The config first (it is small): what observers need to plan.
        if !have(&pulled.config)? {
            download::blob(&repo, &pulled.config, store.as_ref(), None).await?;
        }
        if let Some(o) = &observer {
            o.config(&pulled);
        }
        let mut jobs = Vec::new();
        for d in &pulled.layers {
            if have(d)? {
                progress.exists(&d.digest);
                if let Some(o) = &observer {
                    o.layer(&d.digest);
                }
                continue;
            }
            if !jobs.contains(d) {
                jobs.push(d.clone());
            }
        }
        let downloaded = jobs.len();
        let results: Vec<Result<(), ClientError>> =
            futures_util::stream::iter(jobs.into_iter().map(|d| {
                let repo = repo.clone();
                let store = store.clone();
                let progress = progress.clone();
                let observer = observer.clone();
                async move {
                    if observer.as_ref().is_some_and(|o| o.failed()) {
                        return Err(ClientError::io(
                            format!("downloading blob {}", d.digest),
                            std::io::Error::other("stopped: work on an earlier blob failed"),
                        ));
                    }
                    download::blob(&repo, &d, store.as_ref(), Some(progress)).await?;
                    if let Some(o) = &observer {
                        o.layer(&d.digest);
                    }
                    Ok(())
                }
            }))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for r in results {
            r?;
        }
        // Manifests (and the index) go into the store too.
        let mut docs = vec![(pulled.manifest_digest.clone(), pulled.manifest.clone())];
        if let Some((d, _, b)) = &pulled.index {
            docs.push((d.clone(), b.clone()));
        }
        for (d, b) in docs {
            download::store_bytes(store.as_ref(), &d, &b)?;
        }
        pulled.downloaded = downloaded;
        Ok(pulled)
    }

    /// Pushes an image whose blobs are in `store` as `reference`.
    pub async fn push(
        &self,
        reference: &ImageRef,
        image: &PushImage,
        store: Arc<dyn BlobStore>,
        progress: Arc<dyn Progress>,
    ) -> Result<Digest, ClientError> {
        let registry = reference.registry();
        let host = config::api_host(registry);
        let repo = self
            .repo(registry, host, reference.repository(), true)
            .await?;
        push::push(repo, reference, image, store, progress, self.concurrency).await
    }
}

/// Told when the blobs of a pull are in the store, so that work on them
/// (unpacking) starts before the whole image has arrived.
pub trait PullObserver: Send + Sync {
    /// The config blob is in the store; called once, before any layer.
    fn config(&self, pulled: &Pulled);
    /// A layer blob is in the store, verified (downloaded now or there before).
    fn layer(&self, digest: &Digest);
    /// Whether the work on the blobs failed: downloads not yet started are
    /// then not started, and the pull fails (the observer has the cause).
    fn failed(&self) -> bool {
        false
    }
}

/// An image to push: the manifests (index first, if any, then image
/// manifests) and the blobs they reference.
#[derive(Debug, Clone)]
pub struct PushImage {
    /// The manifest the reference will name: digest, media type, bytes.
    pub top: (Digest, String, Vec<u8>),
    /// Image manifests an index references (empty for a plain manifest).
    pub children: Vec<(Digest, String, Vec<u8>)>,
    /// Every config and layer blob, in upload order.
    pub blobs: Vec<Descriptor>,
    /// A repository of the same registry the blobs may be mounted from.
    pub mount_from: Option<String>,
}

/// Whether a layer media type is one kontti can unpack.
pub fn is_layer_type(t: &str) -> bool {
    matches!(
        t,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// GETs a manifest, bounded; verifies it against `expected` when given.
async fn fetch_manifest(
    repo: &Repo,
    reference: &str,
    expected: Option<&Digest>,
    shown: &str,
) -> Result<(Digest, String, Vec<u8>), ClientError> {
    let url = repo.url(&format!("manifests/{reference}"));
    let resp = repo
        .send(Method::GET, &url, |rb| {
            rb.header(reqwest::header::ACCEPT, media::MANIFEST_ACCEPT)
        })
        .await?;
    if resp.status() != StatusCode::OK {
        return Err(status_error(&url, resp).await);
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_owned());
    let bytes = download::read_bounded(resp, MAX_MANIFEST, &url).await?;
    let algorithm = expected.map_or(kontti_core::Algorithm::Sha256, Digest::algorithm);
    let mut h = kontti_image::hash::Hasher::new(algorithm);
    h.update(&bytes);
    let actual = h.finish();
    if let Some(e) = expected
        && &actual != e
    {
        return Err(ClientError::DigestMismatch {
            expected: e.clone(),
            actual,
            url,
        });
    }
    let declared = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned));
    let media_type = declared.or(content_type).unwrap_or_default();
    if !media::is_manifest(&media_type) {
        return Err(ClientError::UnsupportedMediaType {
            media_type,
            reference: shown.to_owned(),
        });
    }
    Ok((actual, media_type, bytes))
}
