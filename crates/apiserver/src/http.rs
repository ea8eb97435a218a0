//! HTTPS serving: TLS with client-certificate authentication, HTTP/1.1 and HTTP/2, and the response
//! helpers every handler uses.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::error::ApiError;
use crate::pki::ClusterIdentity;

/// A response body: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS material is unusable.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The serving certificate could not be issued.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response with `status`.
pub fn json_response(status: u16, value: &Value) -> Response<Body> {
    json_bytes(
        status,
        serde_json::to_vec(value).unwrap_or_default(),
        "application/json",
    )
}

/// A response of serialized JSON with a content type.
pub fn json_bytes(status: u16, bytes: Vec<u8>, content_type: &str) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// The `Status` response of an error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.status(), &e.to_status())
}

/// A TLS acceptor that serves `identity`'s CA-issued certificate for the listen address and asks
/// for (but does not require) a client certificate signed by the CA.
pub fn tls_acceptor(
    identity: &ClusterIdentity,
    listen: SocketAddr,
) -> Result<(TlsAcceptor, Vec<u8>), ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert_pem, key_pem) = identity.issue_serving_cert(&[listen.ip()])?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("serving certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServeError::Tls(format!("serving key: {e}")))?;
    let ca = CertificateDer::from_pem_slice(identity.ca_cert_pem.as_bytes())
        .map_err(|e| ServeError::Tls(format!("CA certificate: {e}")))?;
    let admin = CertificateDer::from_pem_slice(identity.admin_cert_pem.as_bytes())
        .map_err(|e| ServeError::Tls(format!("admin certificate: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| ServeError::Tls(format!("CA certificate: {e}")))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), admin.to_vec()))
}

/// Binds `listen`.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })
}

/// Accepts connections until the task is dropped.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    admin_der: Vec<u8>,
) {
    let admin_der = Arc::new(admin_der);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (api, acceptor, admin_der) = (api.clone(), acceptor.clone(), admin_der.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
            };
            // The verifier accepted any presented chain only if the CA signed it.
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|leaf| User {
                    name: if leaf.as_ref() == admin_der.as_slice() {
                        crate::pki::ADMIN_USER.to_string()
                    } else {
                        "system:client-certificate".to_string()
                    },
                });
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (api, user) = (api.clone(), user.clone());
                async move { Ok::<_, std::convert::Infallible>(api.handle(req, user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
