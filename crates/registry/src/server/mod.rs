//! kontti's built-in registry: the distribution spec's HTTP API over
//! [`storage::Storage`].
//!
//! Serves pull (manifests by tag and digest, blobs with ranges), push
//! (monolithic and chunked uploads, cross-repository mounts), tags list and
//! catalog with `n`/`last` pagination, manifest and blob delete, and the OCI
//! 1.1 referrers API. Optional TLS and htpasswd (bcrypt) basic auth.

mod error;
pub mod gc;
mod handler;
mod htpasswd;
pub(crate) mod route;
pub(crate) mod storage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use htpasswd::{Htpasswd, HtpasswdError};

use crate::blobs::BlobStore;

/// How to run the registry.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Storage directory.
    pub storage: PathBuf,
    /// TLS certificate chain (PEM) and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// htpasswd file for basic auth.
    pub htpasswd: Option<PathBuf>,
}

/// Why the registry cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The storage directory cannot be used.
    #[error("cannot use storage directory {path}: {source}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A TLS file is unreadable or invalid.
    #[error("tls: {0}")]
    Tls(String),
    /// The htpasswd file is unusable.
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
}

impl ServeError {
    /// The error class.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            ServeError::Listen { .. } => kontti_core::ErrorKind::Unavailable,
            ServeError::Storage { .. } => kontti_core::ErrorKind::Unavailable,
            ServeError::Tls(_) => kontti_core::ErrorKind::Invalid,
            ServeError::Htpasswd(e) => e.kind(),
        }
    }
}

/// Shared state of a running server.
pub(crate) struct State {
    pub storage: storage::Storage,
    pub htpasswd: Option<Htpasswd>,
}

/// A bound registry, ready to serve.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Binds the address and opens storage; blobs go to `blobs`.
    pub async fn bind(
        config: &ServerConfig,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<Server, ServeError> {
        let storage = storage::Storage::open(&config.storage, blobs).map_err(|source| {
            ServeError::Storage {
                path: config.storage.clone(),
                source,
            }
        })?;
        let htpasswd = config.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: config.addr,
                    source,
                })?;
        Ok(Server {
            listener,
            state: Arc::new(State { storage, htpasswd }),
            tls,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the future `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                () = &mut shutdown => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler::handle(&state, req).await) }
                });
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => {
                            http1::Builder::new()
                                .serve_connection(TokioIo::new(s), svc)
                                .await
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                    },
                    None => {
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
