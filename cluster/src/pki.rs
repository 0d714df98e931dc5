//! The cluster's certificate authority: creating it, issuing node
//! certificates, and reading the node id a certificate names.
//!
//! A node certificate carries its node id as a URI subject alternative name
//! (`urn:caxton:node:<id>`). Peers identify each other by that id, never by
//! host name: addresses change (pods are rescheduled, compose services are
//! renamed), the id a member was added under does not. Host names and IPs
//! given at issue time are added as well, for other TLS tools.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::types::NodeId;

const NODE_URI_PREFIX: &str = "urn:caxton:node:";

/// File names inside a CA directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} already exists; refusing to overwrite a CA (delete it first to start over)")]
    Exists { path: String },
    #[error("{path}: not a usable {what}: {reason}")]
    Invalid { path: String, what: &'static str, reason: String },
    #[error("generating the certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What a node certificate is issued for.
#[derive(Debug, Clone)]
pub struct NodeCertRequest {
    pub node_id: NodeId,
    /// DNS names added as subject alternative names.
    pub hostnames: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub valid_days: u32,
}

/// Where `issue_node_cert` wrote a node's material.
#[derive(Debug, Clone)]
pub struct NodeCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

/// Writes `contents` to a file readable by its owner only (keys), or by
/// everyone (certificates). A key is written to a fresh file beside the
/// target and renamed over it: never through a symbolic link planted at the
/// path, and never with the permissions an existing file had.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let written =
        options.open(&tmp).and_then(|mut file| file.write_all(contents.as_bytes()).and_then(|_| file.sync_all()));
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(())
}

fn validity(days: u32) -> (time::OffsetDateTime, time::OffsetDateTime) {
    // A day of slack before now: clocks in a cluster are never exactly equal.
    let now = time::OffsetDateTime::now_utc();
    (now - time::Duration::days(1), now + time::Duration::days(i64::from(days)))
}

/// Creates a CA (`ca.crt`, `ca.key`) in `dir`, never overwriting one.
pub fn init_ca(dir: &Path, cluster_name: &str, valid_days: u32) -> Result<PathBuf, PkiError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(PkiError::Exists { path: p.display().to_string() });
        }
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("caxton cluster CA ({cluster_name})"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (params.not_before, params.not_after) = validity(valid_days);
    let cert = params.self_signed(&key)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok(cert_path)
}

/// The file stem `issue_node_cert` uses unless told otherwise.
pub fn default_stem(node_id: NodeId) -> String {
    format!("node-{node_id}")
}

/// Issues a certificate for one node, signed by the CA in `ca_dir`, into
/// `out_dir` as `<stem>.crt` / `<stem>.key`, with a copy of `ca.crt`.
pub fn issue_node_cert(
    ca_dir: &Path,
    request: &NodeCertRequest,
    out_dir: &Path,
    stem: &str,
) -> Result<NodeCertFiles, PkiError> {
    issue(ca_dir, request, out_dir, stem, validity(request.valid_days))
}

/// As [`issue_node_cert`], valid for `valid_for` from now (short-lived
/// certificates, renewed often; `valid_days` is ignored).
pub fn issue_node_cert_for(
    ca_dir: &Path,
    request: &NodeCertRequest,
    out_dir: &Path,
    stem: &str,
    valid_for: std::time::Duration,
) -> Result<NodeCertFiles, PkiError> {
    let now = time::OffsetDateTime::now_utc();
    let valid_for = time::Duration::try_from(valid_for).unwrap_or(time::Duration::MAX);
    issue(ca_dir, request, out_dir, stem, (now - time::Duration::minutes(5), now + valid_for))
}

fn issue(
    ca_dir: &Path,
    request: &NodeCertRequest,
    out_dir: &Path,
    stem: &str,
    (not_before, not_after): (time::OffsetDateTime, time::OffsetDateTime),
) -> Result<NodeCertFiles, PkiError> {
    let (ca_cert_path, ca_key_path) = (ca_dir.join(CA_CERT), ca_dir.join(CA_KEY));
    let ca_pem = std::fs::read_to_string(&ca_cert_path).map_err(io(&ca_cert_path))?;
    let ca_key_pem = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
    let invalid = |path: &Path, what, e: rcgen::Error| PkiError::Invalid {
        path: path.display().to_string(),
        what,
        reason: e.to_string(),
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| invalid(&ca_key_path, "CA key", e))?;
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)
        .map_err(|e| invalid(&ca_cert_path, "CA certificate", e))?
        .self_signed(&ca_key)
        .map_err(|e| invalid(&ca_key_path, "CA key for this certificate", e))?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("caxton node {}", request.node_id));
    let uri = format!("{NODE_URI_PREFIX}{}", request.node_id);
    params.subject_alt_names.push(SanType::URI(uri.try_into()?));
    for host in &request.hostnames {
        params.subject_alt_names.push(SanType::DnsName(host.clone().try_into()?));
    }
    params.subject_alt_names.extend(request.ips.iter().copied().map(SanType::IpAddress));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // Every node is both a server and a client of its peers.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = (not_before, not_after);
    let cert = params.signed_by(&key, &ca, &ca_key)?;

    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let files = NodeCertFiles {
        cert: out_dir.join(format!("{stem}.crt")),
        key: out_dir.join(format!("{stem}.key")),
        ca: out_dir.join(CA_CERT),
    };
    write_file(&files.key, &key.serialize_pem(), true)?;
    write_file(&files.cert, &cert.pem(), false)?;
    if files.ca != ca_cert_path {
        write_file(&files.ca, &ca_pem, false)?;
    }
    Ok(files)
}

/// The node id a certificate (DER) names, if it names exactly one.
pub fn node_id_of(cert_der: &[u8]) -> Option<NodeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX)?.parse().ok(),
        _ => None,
    });
    let id = ids.next()?;
    ids.next().is_none().then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(node_id: NodeId) -> NodeCertRequest {
        NodeCertRequest {
            node_id,
            hostnames: vec!["caxton-2".into()],
            ips: vec![[127, 0, 0, 1].into()],
            valid_days: 30,
        }
    }

    fn der_of(path: &Path) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    #[test]
    fn a_node_certificate_names_its_node_id_and_chains_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test", 365).unwrap();
        let files = issue_node_cert(&ca, &request(3), &dir.path().join("out"), &default_stem(3)).unwrap();
        assert_eq!(node_id_of(&der_of(&files.cert)), Some(3));
        assert_eq!(node_id_of(&der_of(&files.ca)), None, "the CA names no node");
        assert_eq!(std::fs::read(&files.ca).unwrap(), std::fs::read(ca.join(CA_CERT)).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "a node key is private: {mode:o}");
        }
        // rustls accepts the chain, as the RPC server will.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der_of(&files.ca).into()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = rustls::pki_types::CertificateDer::from(der_of(&files.cert));
        verifier.verify_client_cert(&leaf, &[], rustls::pki_types::UnixTime::now()).unwrap();
    }

    #[test]
    fn a_ca_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "test", 365).unwrap();
        let before = std::fs::read(dir.path().join(CA_KEY)).unwrap();
        let err = init_ca(dir.path(), "test", 365).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(CA_KEY)).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_is_private_and_never_written_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        let key = dir.path().join("node.key");
        std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
        write_file(&key, "-----BEGIN PRIVATE KEY-----", true).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched", "the link's target is not written");
        let meta = std::fs::symlink_metadata(&key).unwrap();
        assert!(meta.file_type().is_file(), "the link was replaced by a file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // An existing key readable by others becomes private when rewritten.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&key, "again", true).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn issuing_without_a_ca_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = issue_node_cert(dir.path(), &request(1), dir.path(), "node").unwrap_err().to_string();
        assert!(err.contains("ca.crt"), "{err}");
    }
}
