//! Serves the router: plain HTTP or TLS (rustls), HTTP/1.1 and HTTP/2, with
//! a deadline on request headers (a slow client cannot hold a connection
//! open by trickling them) and a graceful stop that lets requests finish.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A TLS server configuration from PEM files (certificate chain, key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("server.tls_cert_file = {:?}: not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "server.tls_cert_file = {:?}: no certificate in it", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("server.tls_key_file = {:?}: not a PEM private key", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls_cert_file and server.tls_key_file do not make a certificate and its key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub struct ServeOptions {
    pub tls: Option<TlsAcceptor>,
    pub header_read_timeout: Duration,
    /// Connections open at once; one more is closed at once (and logged),
    /// so idle sockets cannot exhaust the node's file descriptors.
    pub max_connections: usize,
}

/// How often an HTTP/2 connection is pinged, and how long a ping may go
/// unanswered before the connection is closed.
const H2_KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(20));

/// Accepts until `stop`, then waits for open connections to finish their
/// requests (the caller bounds that wait).
pub async fn serve(listener: TcpListener, router: Router, options: ServeOptions, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let mut refused_logged: Option<std::time::Instant> = None;
    let options = Arc::new(options);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(open) = connections.clone().try_acquire_owned() else {
            if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(%peer, max = options.max_connections, "connection refused: too many open connections");
                refused_logged = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, options, watcher) = (router.clone(), options.clone(), graceful.watcher());
        // The gate decides what a keyless request may do by where it came from.
        let router = router.map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        });
        tokio::spawn(async move {
            let _open = open;
            match &options.tls {
                None => connection(stream, router, &options, watcher).await,
                Some(acceptor) => {
                    // The handshake is bounded like the headers that follow it.
                    match tokio::time::timeout(options.header_read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, router, &options, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn connection<I, S>(io: I, router: S, options: &ServeOptions, watcher: hyper_util::server::graceful::Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            axum::extract::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    // An idle HTTP/2 peer that stops answering pings is let go.
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(H2_KEEP_ALIVE.0).keep_alive_timeout(H2_KEEP_ALIVE.1);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}
