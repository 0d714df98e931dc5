//! Gossip that only members can read or write: every chitchat datagram is
//! sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the
//! cluster secret and the cluster name. A datagram that does not open (a
//! stranger, another cluster, a forgery, a replay of garbage) is dropped and
//! counted before chitchat sees it, so a node without the secret can neither
//! learn the membership nor announce itself into it (and so is never turned
//! into a Raft learner).
//!
//! Wire format: `nonce (12 random bytes) || ciphertext || tag (16)`.
//!
//! chitchat 0.13 keeps its envelope encoding private, so the socket uses
//! chitchat's own UDP sockets as its codec, over loopback inside this
//! process: an envelope sent by an encoder socket is read back as bytes, and
//! opened bytes are fed to a decoder socket that yields the envelope. Both
//! loopback sockets accept datagrams only from their partner.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as ChitchatUdp};
use chitchat::ChitchatEnvelope;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const SALT: &[u8] = b"caxton-gossip-v1";
const TAG_LEN: usize = 16;
/// The largest UDP payload; a sealed datagram must fit in it.
const MAX_DATAGRAM: usize = 65_507;

/// Datagrams dropped because they did not open, across the process.
#[derive(Debug, Default, Clone)]
pub struct Dropped(Arc<AtomicU64>);

impl Dropped {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) struct SealedTransport {
    keys: Arc<Keys>,
    dropped: Dropped,
}

struct HkdfLen(usize);

impl ring::hkdf::KeyType for HkdfLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The gossip key of a cluster: HKDF-SHA256(salt, secret), info = name.
fn derive_key(secret: &str, cluster_name: &str) -> LessSafeKey {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, SALT).extract(secret.as_bytes());
    let info = [cluster_name.as_bytes()];
    let okm = prk.expand(&info, HkdfLen(CHACHA20_POLY1305.key_len())).expect("32 bytes is a valid HKDF length");
    let mut key = [0u8; 32];
    okm.fill(&mut key).expect("the output length matches");
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key"))
}

/// The keys of every secret the node accepts (one per line of the
/// secret): the first seals, any opens. Rotating is three rolling steps,
/// none of which partitions the cluster: add the new secret as a second
/// line everywhere, swap the lines everywhere, drop the old line.
/// Never empty.
struct Keys(Vec<LessSafeKey>);

impl Keys {
    fn of(secret: &str, cluster_name: &str) -> Self {
        let mut keys: Vec<LessSafeKey> =
            crate::secret::secret_lines(secret).map(|s| derive_key(s, cluster_name)).collect();
        if keys.is_empty() {
            // A blank secret still seals, as one key.
            keys.push(derive_key(secret, cluster_name));
        }
        Self(keys)
    }

    fn sealing(&self) -> &LessSafeKey {
        &self.0[0]
    }

    fn opening(&self) -> &[LessSafeKey] {
        &self.0
    }
}

impl SealedTransport {
    pub fn new(secret: &str, cluster_name: &str, dropped: Dropped) -> Self {
        Self { keys: Arc::new(Keys::of(secret, cluster_name)), dropped }
    }
}

#[async_trait::async_trait]
impl Transport for SealedTransport {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("failed to bind to {listen}/UDP for gossip"))?;
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let codec = Codec {
            encoder: ChitchatUdp::open(loopback).await?,
            tap: tokio::net::UdpSocket::bind(loopback).await?,
            feeder: tokio::net::UdpSocket::bind(loopback).await?,
            decoder: ChitchatUdp::open(loopback).await?,
            buf: vec![0u8; MAX_DATAGRAM],
        };
        Ok(Box::new(SealedSocket {
            socket,
            keys: self.keys.clone(),
            rng: SystemRandom::new(),
            buf: vec![0u8; MAX_DATAGRAM],
            codec,
            dropped: self.dropped.clone(),
            last_warned: None,
        }))
    }
}

/// chitchat's own encoding, reached through its public UDP socket.
struct Codec {
    encoder: ChitchatUdp,
    tap: tokio::net::UdpSocket,
    feeder: tokio::net::UdpSocket,
    decoder: ChitchatUdp,
    buf: Vec<u8>,
}

/// Loopback hops inside one process; bounded in case the kernel drops one.
const HOP: Duration = Duration::from_secs(1);

impl Codec {
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        let (tap, encoder) = (self.tap.local_addr()?, self.encoder.local_addr()?);
        self.encoder.send(tap, envelope).await?;
        loop {
            let (len, from) = tokio::time::timeout(HOP, self.tap.recv_from(&mut self.buf))
                .await
                .context("encoding a gossip envelope timed out")??;
            if from == encoder {
                return Ok(self.buf[..len].to_vec());
            }
        }
    }

    async fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<ChitchatEnvelope> {
        let (decoder, feeder) = (self.decoder.local_addr()?, self.feeder.local_addr()?);
        self.feeder.send_to(bytes, decoder).await?;
        loop {
            let got = tokio::time::timeout(HOP, self.decoder.recv()).await.context("decoding gossip timed out")??;
            if got.from_addr == feeder {
                return Ok(got.envelope);
            }
        }
    }
}

struct SealedSocket {
    socket: tokio::net::UdpSocket,
    keys: Arc<Keys>,
    rng: SystemRandom,
    buf: Vec<u8>,
    codec: Codec,
    dropped: Dropped,
    last_warned: Option<Instant>,
}

impl SealedSocket {
    fn seal(&self, mut body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness for a gossip nonce"))?;
        self.keys
            .sealing()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .map_err(|_| anyhow::anyhow!("sealing a gossip datagram failed"))?;
        let mut datagram = nonce.to_vec();
        datagram.extend_from_slice(&body);
        anyhow::ensure!(datagram.len() <= MAX_DATAGRAM, "sealed gossip datagram of {} bytes", datagram.len());
        Ok(datagram)
    }

    /// The plaintext of the datagram in `buf[..len]`, if it opens.
    fn open(&mut self, len: usize) -> Option<Vec<u8>> {
        if len < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = self.buf[..len].split_at(NONCE_LEN);
        // Opening works in place: each key tries a copy.
        self.keys.opening().iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut attempt = sealed.to_vec();
            key.open_in_place(nonce, Aad::empty(), &mut attempt).ok().map(|plain| plain.to_vec())
        })
    }

    fn drop_one(&mut self, from: SocketAddr) {
        self.dropped.0.fetch_add(1, Ordering::Relaxed);
        // One line now and then, not one per datagram: a flood must not flood the log.
        if self.last_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            self.last_warned = Some(Instant::now());
            tracing::warn!(%from, dropped = self.dropped.count(), "dropped gossip datagrams that did not open with this cluster's key");
        }
    }
}

#[async_trait::async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket.local_addr().context("gossip socket address")
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let plain = self.codec.encode(envelope).await?;
        let datagram = self.seal(plain)?;
        let num_bytes_sent = self.socket.send_to(&datagram, to).await.context("sending a gossip datagram")?;
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (len, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                // ICMP "port unreachable" from a peer that went away, and the like.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e).context("receiving gossip"),
            };
            let Some(plain) = self.open(len) else {
                self.drop_one(from);
                continue;
            };
            match self.codec.decode(&plain).await {
                Ok(envelope) => return Ok(RecvOutcome { from_addr: from, envelope, num_bytes_received: len }),
                Err(e) => tracing::warn!(%from, error = %e, "a sealed gossip datagram did not decode"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_same_cluster_key_opens_a_datagram() {
        let dropped = Dropped::default();
        let a = SealedTransport::new("secret", "caxton", dropped.clone());
        let stranger = SealedTransport::new("other-secret", "caxton", dropped.clone());
        let mut rx = a.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let to = rx.local_addr().unwrap();
        let mut tx_member = a.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut tx_stranger = stranger.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let envelope = || ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V0,
            message: chitchat::ChitchatMessage::BadCluster,
        };
        tx_stranger.send(to, envelope()).await.unwrap();
        // Plain chitchat (what a node without the secret sends).
        let mut plain = ChitchatUdp::open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        plain.send(to, envelope()).await.unwrap();
        tx_member.send(to, envelope()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(got.envelope, envelope());
        assert_eq!(got.from_addr, tx_member.local_addr().unwrap());
        assert_eq!(dropped.count(), 2, "the stranger's and the plain datagram were dropped");
    }

    #[tokio::test]
    async fn during_a_rotation_every_step_understands_its_neighbours() {
        let dropped = Dropped::default();
        let envelope = || ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V0,
            message: chitchat::ChitchatMessage::BadCluster,
        };
        // old → old+new (installed) → new+old (in use) → new (old removed):
        // each step talks to the one before and after it.
        let steps = ["old", "old\nnew", "new\nold", "new"];
        for pair in steps.windows(2) {
            for (from, to) in [(pair[0], pair[1]), (pair[1], pair[0])] {
                let rx_side = SealedTransport::new(to, "caxton", dropped.clone());
                let tx_side = SealedTransport::new(from, "caxton", dropped.clone());
                let mut rx = rx_side.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
                let mut tx = tx_side.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
                tx.send(rx.local_addr().unwrap(), envelope()).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
                assert!(got.is_ok(), "{from:?} → {to:?} did not open");
            }
        }
        assert_eq!(dropped.count(), 0);
        // Skipping a step partitions: old alone cannot read new alone.
        let old = SealedTransport::new("old", "caxton", dropped.clone());
        let new = SealedTransport::new("new", "caxton", dropped.clone());
        let mut rx = old.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut tx = new.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        tx.send(rx.local_addr().unwrap(), envelope()).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err());
        assert_eq!(dropped.count(), 1);
    }
}
