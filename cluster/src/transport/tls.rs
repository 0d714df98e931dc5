//! Mutual TLS between nodes: both ends present a certificate from the
//! cluster CA, and each learns the other's node id from it.
//!
//! Server names are not checked: a peer is identified by the node id its
//! certificate names (see `pki`), and the callers that know which node they
//! mean to reach check that id on the answer. Everything else webpki checks
//! (chain to the cluster CA, validity period, key usage) still applies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::pki::node_id_of;
use crate::types::NodeId;

/// Where a node's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path} is a certificate for {}, but this node's id is {ours}: issue one with `caxton cluster cert issue --node-id {ours}`", named.map_or_else(|| "no node id".to_owned(), |n| format!("node {n}")))]
    WrongNode { path: String, named: Option<NodeId>, ours: NodeId },
    #[error("the TLS settings are unusable: {0}")]
    Config(String),
}

/// A node's loaded TLS material: the rustls configurations for both ends.
pub struct NodeTls {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: rustls::ClientConfig,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Loads the CA, this node's certificate and key, and checks that the
    /// certificate names `node_id` (a node must not start under a
    /// certificate its peers would refuse).
    pub fn load(files: &TlsFiles, node_id: NodeId) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .map_err(|e| file_err(&files.cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_err(&files.cert, e))?;
        let leaf = chain.first().ok_or_else(|| file_err(&files.cert, "no certificate in the file"))?;
        let named = node_id_of(leaf);
        if named != Some(node_id) {
            return Err(TlsError::WrongNode { path: files.cert.display().to_string(), named, ours: node_id });
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&files.ca).map_err(|e| file_err(&files.ca, e))? {
            roots.add(ca.map_err(|e| file_err(&files.ca, e))?).map_err(|e| file_err(&files.ca, e))?;
        }
        if roots.is_empty() {
            return Err(file_err(&files.ca, "no CA certificate in the file"));
        }
        let roots = Arc::new(roots);

        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| file_err(&files.key, e))?;

        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier(server_verifier)))
            .with_client_auth_cert(chain, key)
            .map_err(|e| file_err(&files.key, e))?;
        Ok(Self { server: Arc::new(server), client })
    }
}

/// webpki's verification, with the host name check replaced by the node id
/// check the caller makes (see the module comment).
#[derive(Debug)]
struct PeerVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if node_id_of(end_entity).is_none() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
        }
        // webpki checks the chain before the name: a name mismatch means the
        // chain, dates and usages were all accepted.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
