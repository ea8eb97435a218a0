//! The cluster's identity: a CA, the admin client credential, and serving certificates.
//!
//! The CA key and the admin credential live in the datastore (see [`crate::identity`]), so that every
//! server on one datastore shares them. A serving certificate is issued by the CA at each start for the
//! addresses that server listens on.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

/// Why a certificate or key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A stored PEM could not be parsed.
    #[error("stored {what} is not valid PEM")]
    BadPem {
        /// Which PEM (the CA certificate, the admin key, …).
        what: &'static str,
    },
}

impl PkiError {
    /// The kind of failure.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        kontti_core::ErrorKind::Internal
    }
}

/// The CA common name; the CA's parameters are rebuilt from it to issue certificates.
const CA_COMMON_NAME: &str = "kontti-ca";
/// The admin user name and group carried in the admin client certificate.
pub const ADMIN_USER: &str = "kontti-admin";
/// The group that the admin belongs to.
pub const ADMIN_GROUP: &str = "system:masters";

/// Everything a server needs to prove and check identity; stored in the datastore as JSON.
#[derive(Clone, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// The CA certificate (PEM).
    pub ca_cert_pem: String,
    /// The CA private key (PKCS#8 PEM).
    pub ca_key_pem: String,
    /// The admin client certificate, signed by the CA (PEM).
    pub admin_cert_pem: String,
    /// The admin client key (PKCS#8 PEM).
    pub admin_key_pem: String,
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIdentity").finish_non_exhaustive()
    }
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

fn leaf_params(sans: Vec<String>, cn: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

impl ClusterIdentity {
    /// Generates a new CA and an admin client certificate signed by it.
    pub fn generate() -> Result<Self, PkiError> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let admin_key = KeyPair::generate()?;
        let mut params = leaf_params(Vec::new(), ADMIN_USER)?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, ADMIN_GROUP);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = params.signed_by(&admin_key, &issuer)?;
        Ok(Self {
            ca_cert_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
        })
    }

    /// Issues a serving certificate for `localhost`, `127.0.0.1` and `extra_ips`; returns (cert, key) PEMs.
    pub fn issue_serving_cert(&self, extra_ips: &[IpAddr]) -> Result<(String, String), PkiError> {
        let ca_key =
            KeyPair::from_pem(&self.ca_key_pem).map_err(|_| PkiError::BadPem { what: "CA key" })?;
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
        ];
        for ip in extra_ips {
            let s = ip.to_string();
            if !sans.contains(&s) {
                sans.push(s);
            }
        }
        let key = KeyPair::generate()?;
        let mut params = leaf_params(sans, "kontti-apiserver")?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem() + &self.ca_cert_pem, key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_issues_serving_certs() {
        let id = ClusterIdentity::generate().unwrap();
        assert!(id.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let (cert, key) = id
            .issue_serving_cert(&["10.0.0.1".parse().unwrap()])
            .unwrap();
        assert_eq!(cert.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(key.contains("PRIVATE KEY"));
    }
}
