//! The connection pool: every connection made with the configured TLS
//! mode, a connect timeout, and the statement timeout set for its session.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{PgTlsMode, PostgresSection, Secret};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("memory.postgres.url: not a PostgreSQL connection URL: {0}")]
    Url(tokio_postgres::Error),
    #[error("memory.postgres.tls_ca_file {path}: {why}")]
    Ca { path: String, why: String },
    #[error("building the memory database pool: {0}")]
    Pool(String),
}

pub fn pool(url: &Secret, settings: &PostgresSection) -> Result<Pool, ConnectError> {
    let mut config: tokio_postgres::Config = url.expose().parse().map_err(ConnectError::Url)?;
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    config.connect_timeout(connect_timeout);
    config.application_name("caxton");
    // Session settings ride on the startup packet: no extra round trip per connection.
    config.options(format!("-c statement_timeout={}", settings.statement_timeout_ms));
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match settings.tls {
        PgTlsMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        }
        mode => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(mode, settings)?);
            Manager::from_config(config, tls, manager_config)
        }
    };
    Pool::builder(manager)
        .max_size(settings.pool_size as usize)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(connect_timeout))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| ConnectError::Pool(e.to_string()))
}

fn client_config(mode: PgTlsMode, settings: &PostgresSection) -> Result<rustls::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Pool(e.to_string()))?;
    if mode == PgTlsMode::Require {
        return Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified)).with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match settings.tls_ca_file.get() {
        Some(path) => {
            let ca = |why: String| ConnectError::Ca { path: path.display().to_string(), why };
            let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
            let certs: Vec<CertificateDer<'static>> = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ca(format!("not PEM certificates: {e:?}")))?;
            if certs.is_empty() {
                return Err(ca("holds no certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `tls = "require"`: encrypted, the peer not authenticated (as libpq's
/// `sslmode=require`; docs/memory.md says when that is acceptable).
#[derive(Debug)]
struct Unverified;

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_algorithms().supported_schemes()
    }
}

/// Signatures are still checked in `require` mode: only the identity is not.
fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}
