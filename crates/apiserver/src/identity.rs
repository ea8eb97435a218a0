//! The cluster identity in the datastore, and the admin kubeconfig.

use std::path::{Path, PathBuf};

use base64::Engine;
use kontti_store::{Store, StoreError};

use crate::pki::{ClusterIdentity, PkiError};

/// The datastore key of the cluster identity.
pub const IDENTITY_KEY: &str = "/kontti/cluster-identity";
/// The kubeconfig file name inside the data directory.
pub const KUBECONFIG_FILE: &str = "admin.kubeconfig";

/// Why the identity could not be loaded or the kubeconfig written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The datastore failed.
    #[error("cluster identity: {0}")]
    Store(#[from] StoreError),
    /// The stored identity is not readable.
    #[error("cluster identity at {IDENTITY_KEY} is corrupt: {0}")]
    Corrupt(String),
    /// Certificates could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The kubeconfig could not be written or read.
    #[error("kubeconfig {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl IdentityError {
    /// The kind of failure.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        match self {
            IdentityError::Store(e) => e.kind(),
            IdentityError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                kontti_core::ErrorKind::NotFound
            }
            _ => kontti_core::ErrorKind::Internal,
        }
    }
}

/// Loads the cluster identity from the datastore, creating it on first start. Two servers starting
/// at once on one datastore agree: the loser of the create race reads the winner's identity.
pub async fn load_or_create(store: &dyn Store) -> Result<ClusterIdentity, IdentityError> {
    if let Some(kv) = store.get(IDENTITY_KEY).await? {
        return serde_json::from_slice(&kv.value)
            .map_err(|e| IdentityError::Corrupt(e.to_string()));
    }
    let fresh = ClusterIdentity::generate()?;
    let bytes = serde_json::to_vec(&fresh).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    match store.create(IDENTITY_KEY, bytes).await {
        Ok(_) => {
            tracing::info!("created a new cluster identity (CA and admin credential)");
            Ok(fresh)
        }
        Err(StoreError::AlreadyExists { .. }) => {
            let kv = store
                .get(IDENTITY_KEY)
                .await?
                .ok_or_else(|| IdentityError::Corrupt("vanished after create race".into()))?;
            serde_json::from_slice(&kv.value).map_err(|e| IdentityError::Corrupt(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The admin kubeconfig for a server at `server_url` (`https://127.0.0.1:6443`).
pub fn kubeconfig(identity: &ClusterIdentity, server_url: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kontti
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: kontti-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: kontti
  context:
    cluster: kontti
    user: kontti-admin
    namespace: default
current-context: kontti
",
        ca = b64(&identity.ca_cert_pem),
        cert = b64(&identity.admin_cert_pem),
        key = b64(&identity.admin_key_pem),
    )
}

/// Writes the kubeconfig into `data_dir` (mode 0600); returns its path.
pub fn write_kubeconfig(data_dir: &Path, contents: &str) -> Result<PathBuf, IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(KUBECONFIG_FILE);
    let tmp = data_dir.join(format!(".{KUBECONFIG_FILE}.tmp"));
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Reads the kubeconfig written by a server in `data_dir`.
pub fn read_kubeconfig(data_dir: &Path) -> Result<String, IdentityError> {
    let path = data_dir.join(KUBECONFIG_FILE);
    std::fs::read_to_string(&path).map_err(|source| IdentityError::Io { path, source })
}
