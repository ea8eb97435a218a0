//! The Kubernetes-compatible API server over the kontti store.
//!
//! What it does: serves the Kubernetes REST API (discovery, OpenAPI, get/list/watch/create/update/
//! patch/delete, status and scale subresources, tables) for the kinds in
//! [`resources::RESOURCES`] over HTTPS, with objects kept in a [`kontti_store::Store`]. Requests pass
//! authentication (client certificates signed by the cluster CA) → authorization (allow-all until
//! RBAC lands) → admission (defaults, validation) → storage. The CA and the admin credential live in
//! the datastore, so servers sharing one etcd share one identity. Garbage collection through
//! ownerReferences and namespace deletion run as in-process controllers.
//!
//! What it does not do: run anything. Scheduling, workload controllers and nodes are API clients.

pub mod admission;
pub mod api;
pub mod apply;
pub mod bench;
pub mod body;
pub mod controllers;
pub mod convert;
pub mod discovery;
pub mod error;
pub mod http;
pub mod identity;
pub mod openapi;
pub mod openapi_pb;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod protobuf_schema;
pub mod query;
pub mod registry;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::ApiError;
use kontti_store::{Datastore, StoreError};

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Holds the kubeconfig and the embedded store.
    pub data_dir: PathBuf,
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `embedded` (default) or `etcd://host:port[/prefix]`.
    pub datastore: Option<String>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The datastore could not be opened.
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
    /// The identity could not be loaded or the kubeconfig written.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The system namespaces could not be created.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// TLS or the listener failed.
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

impl ServerError {
    /// The kind of failure.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            ServerError::Store(e) => e.kind(),
            ServerError::Identity(e) => e.kind(),
            ServerError::DataDir { .. } | ServerError::Serve(_) | ServerError::Bootstrap(_) => {
                kontti_core::ErrorKind::Unavailable
            }
        }
    }
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The admin kubeconfig written into the data directory.
    pub kubeconfig_path: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Runs until the accept loop ends (it does not, short of the runtime shutting down).
    pub async fn wait(mut self) {
        if let Some(t) = self.tasks.pop() {
            let _ = t.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn ensure_dir(path: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(path).map_err(|source| ServerError::DataDir {
        path: path.to_path_buf(),
        source,
    })
}

/// The namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn bootstrap(registry: &registry::Registry) -> Result<(), ServerError> {
    let Some(def) = resources::find("", "v1", "namespaces") else {
        return Ok(());
    };
    let q = query::Query::parse(None).map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    for ns in SYSTEM_NAMESPACES {
        let obj = serde_json::json!({"metadata": {"name": ns}});
        match registry.create(def, None, obj, &q).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(ServerError::Bootstrap(e.to_string())),
        }
    }
    Ok(())
}

/// Opens the datastore, loads or creates the identity, writes the kubeconfig and starts serving.
pub async fn start(opts: &ServerOptions) -> Result<RunningServer, ServerError> {
    ensure_dir(&opts.data_dir)?;
    let ds = Datastore::parse(opts.datastore.as_deref(), &opts.data_dir)?;
    let store = ds.open().await?;
    let identity = identity::load_or_create(store.as_ref()).await?;
    let listener = http::bind(opts.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| http::ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    let (acceptor, admin_der) = http::tls_acceptor(&identity, addr)?;
    let url = format!("https://{addr}");
    let kubeconfig_path =
        identity::write_kubeconfig(&opts.data_dir, &identity::kubeconfig(&identity, &url))?;
    let registry = registry::Registry::new(store);
    bootstrap(&registry).await?;
    let api = Arc::new(api::Api::new(registry, addr.to_string()));
    let controllers = tokio::spawn(controllers::run(api.clone()));
    let server = tokio::spawn(http::serve(api, listener, acceptor, admin_der));
    tracing::info!(%addr, kubeconfig = %kubeconfig_path.display(), "serving");
    Ok(RunningServer {
        addr,
        kubeconfig_path,
        tasks: vec![controllers, server],
    })
}
