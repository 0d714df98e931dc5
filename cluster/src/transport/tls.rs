//! Mutual TLS between nodes: both ends present a certificate from the
//! cluster CA, and each learns the other's node id from it.
//!
//! Server names are not checked: a peer is identified by the node id its
//! certificate names (see `pki`), and the callers that know which node they
//! mean to reach check that id on the answer. Everything else webpki checks
//! (chain to the cluster CA, validity period, key usage) still applies.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::DistinguishedName;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsFiles;
use crate::pki::node_id_of;
use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path} is a certificate for {}, but this node's id is {ours}: issue one with `caxton cluster cert issue --node-id {ours}`", named.map_or_else(|| "no node id".to_owned(), |n| format!("node {n}")))]
    WrongNode { path: String, named: Option<NodeId>, ours: NodeId },
    #[error("the TLS settings are unusable: {0}")]
    Config(String),
}

/// A node's TLS: the rustls configurations for both ends, built once, over
/// material (certificate, key, CA) that is re-read when its files change,
/// so certificates and CAs rotate without a restart: new handshakes use
/// the new material at once, established connections keep theirs.
pub struct NodeTls {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: rustls::ClientConfig,
    current: Arc<Current>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

/// One reading of the files.
struct Material {
    key: Arc<CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<rustls::client::WebPkiServerVerifier>,
    /// When this node's certificate expires (seconds since the epoch).
    not_after: i64,
    /// When the earliest CA certificate in the file expires.
    ca_not_after: i64,
    /// What the files were when read: changed files are read again.
    stamp: Vec<Option<std::time::SystemTime>>,
}

/// The material in use, swapped whole when the files change.
struct Current {
    files: TlsFiles,
    node_id: NodeId,
    material: RwLock<Arc<Material>>,
}

impl Current {
    fn get(&self) -> Arc<Material> {
        self.material.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn stamp(files: &TlsFiles) -> Vec<Option<std::time::SystemTime>> {
    [&files.ca, &files.cert, &files.key].iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn expires_at(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Reads and checks the files: the certificate must name `node_id` (a node
/// must not run under a certificate its peers would refuse).
fn read_material(files: &TlsFiles, node_id: NodeId) -> Result<Material, TlsError> {
    let stamp = stamp(files);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_err(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&files.cert, e))?;
    let leaf = chain.first().ok_or_else(|| file_err(&files.cert, "no certificate in the file"))?;
    let named = node_id_of(leaf);
    if named != Some(node_id) {
        return Err(TlsError::WrongNode { path: files.cert.display().to_string(), named, ours: node_id });
    }
    let not_after = expires_at(leaf).ok_or_else(|| file_err(&files.cert, "the certificate does not parse"))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| file_err(&files.key, e))?;
    let mut roots = RootCertStore::empty();
    let mut ca_not_after = i64::MAX;
    for ca in CertificateDer::pem_file_iter(&files.ca).map_err(|e| file_err(&files.ca, e))? {
        let ca = ca.map_err(|e| file_err(&files.ca, e))?;
        ca_not_after = ca_not_after.min(expires_at(&ca).unwrap_or(i64::MAX));
        roots.add(ca).map_err(|e| file_err(&files.ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_err(&files.ca, "no CA certificate in the file"));
    }
    let roots = Arc::new(roots);
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Material { key: Arc::new(key), client_verifier, server_verifier, not_after, ca_not_after, stamp })
}

/// The handshake signature checks: the crypto provider's, whatever the
/// certificates in use (both ends' verifiers share them).
fn signatures() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// How often the files are looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

impl NodeTls {
    /// Loads the CA, this node's certificate and key, and checks that the
    /// certificate names `node_id`.
    pub fn load(files: &TlsFiles, node_id: NodeId) -> Result<Self, TlsError> {
        let material = read_material(files, node_id)?;
        let current = Arc::new(Current { files: files.clone(), node_id, material: RwLock::new(Arc::new(material)) });
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(Arc::new(CurrentClientVerifier(current.clone())))
            .with_cert_resolver(Arc::new(CurrentKey(current.clone())));
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier(current.clone())))
            .with_client_cert_resolver(Arc::new(CurrentKey(current.clone())));
        Ok(Self { server: Arc::new(server), client, current })
    }

    /// Reads the files again if they changed since they were last read;
    /// whether new material is now in use. Unusable files leave the
    /// current material in place (logged), so a half-written rotation
    /// never stops the node.
    pub fn reload_if_changed(&self) -> bool {
        let c = &self.current;
        if stamp(&c.files) == c.get().stamp {
            return false;
        }
        match read_material(&c.files, c.node_id) {
            Ok(m) => {
                tracing::info!(cert = %c.files.cert.display(), not_after = m.not_after, "cluster TLS material reloaded");
                *c.material.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(m);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster TLS files changed but cannot be used; keeping the current ones");
                false
            }
        }
    }

    /// Looks at the files every two seconds until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    }

    /// When this node's certificate, and the earliest CA certificate it
    /// trusts, expire (seconds since the epoch).
    pub fn expiry(&self) -> (i64, i64) {
        let m = self.current.get();
        (m.not_after, m.ca_not_after)
    }
}

/// This node's certificate and key, as currently loaded, for both ends.
#[derive(Debug)]
struct CurrentKey(Arc<Current>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current")
    }
}

impl ResolvesServerCert for CurrentKey {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }
}

impl ResolvesClientCert for CurrentKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client-certificate check against the CA as currently loaded.
#[derive(Debug)]
struct CurrentClientVerifier(Arc<Current>);

impl ClientCertVerifier for CurrentClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; a node has one certificate and sends it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.get().client_verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signatures())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signatures())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures().supported_schemes()
    }
}

/// webpki's verification, with the host name check replaced by the node id
/// check the caller makes (see the module comment).
#[derive(Debug)]
struct PeerVerifier(Arc<Current>);

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
        let verifier = self.0.get().server_verifier.clone();
        match verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signatures())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signatures())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures().supported_schemes()
    }
}
