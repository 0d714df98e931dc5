//! Backups of the whole replicated state, taken on any member.
//!
//! A backup is one line of JSON (the [`BackupHeader`]: which cluster, the
//! log index and term it holds, its size and SHA-256) followed by exactly
//! that many bytes: a SQLite copy of the replica made by `VACUUM INTO`,
//! which reads inside one transaction and so is consistent at one index.
//! Before copying, the member waits for a linearizable point, so a backup
//! holds every write acknowledged before it was asked for, whichever node
//! took it. `recovery::restore` turns a backup into a new cluster.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::storage::state_machine::{applied_id, open_replica};
use crate::write_error::WriteError;

/// What the first line of a backup file says.
pub const FORMAT: &str = "caxton-backup";
pub const VERSION: u32 = 1;
/// A header is a few hundred bytes; anything longer is not a backup.
const MAX_HEADER: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: String,
    pub version: u32,
    /// The cluster the backup was taken from (a restore founds another).
    pub cluster_id: String,
    /// The member that made the copy.
    pub node: u64,
    /// The last log entry the copy holds, and its term.
    pub index: u64,
    pub term: u64,
    /// Milliseconds since the epoch when the copy was made.
    pub created_ms: u64,
    /// Length and SHA-256 (hex) of the database that follows the header.
    pub bytes: u64,
    pub sha256: String,
    /// The application-state digest (`GET /v1/cluster/digest`) at `index`.
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Cluster(#[from] WriteError),
    #[error("cannot copy the replica: {0}")]
    Copy(String),
    #[error("{path}: not a Caxton backup: {reason}")]
    NotABackup { path: String, reason: String },
    #[error("{path}: the backup is damaged: {reason}")]
    Damaged { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A finished copy: its header, and the database file (already unlinked
/// from the directory, so nothing is left behind once it is read).
pub struct Backup {
    pub header: BackupHeader,
    pub database: std::fs::File,
}

/// Copies `replica` (consistently, at one index) into an unlinked file.
pub(crate) fn copy_replica(
    replica: &Path,
    scratch: &Path,
    cluster_id: String,
    node: u64,
) -> Result<Backup, BackupError> {
    let copy_err = |e: &dyn std::fmt::Display| BackupError::Copy(e.to_string());
    std::fs::create_dir_all(scratch).map_err(|e| copy_err(&e))?;
    let tmp = scratch.join(format!("backup-{}.db", uuid::Uuid::new_v4()));
    let made = (|| -> Result<Backup, BackupError> {
        let conn = open_replica(replica).map_err(|e| copy_err(&e))?;
        conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()]).map_err(|e| copy_err(&e))?;
        drop(conn);
        let copy = Connection::open(&tmp).map_err(|e| copy_err(&e))?;
        let last = applied_id(&copy).map_err(|e| copy_err(&e))?;
        let (_, digest) = crate::replica::application_digest(&copy).map_err(|e| copy_err(&e))?;
        drop(copy);
        let mut database = std::fs::File::open(&tmp).map_err(|e| copy_err(&e))?;
        let (bytes, sha256) = hash(&mut database).map_err(|e| copy_err(&e))?;
        use std::io::Seek;
        database.rewind().map_err(|e| copy_err(&e))?;
        let header = BackupHeader {
            format: FORMAT.into(),
            version: VERSION,
            cluster_id,
            node,
            index: last.map(|l| l.index).unwrap_or(0),
            term: last.map(|l| l.leader_id.term).unwrap_or(0),
            created_ms: now_ms(),
            bytes,
            sha256,
            digest,
        };
        Ok(Backup { header, database })
    })();
    // Open, the file stays readable; unlinked, it cannot be left behind.
    let _ = std::fs::remove_file(&tmp);
    made
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Length and SHA-256 (hex) of everything `reader` yields.
pub fn hash(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut sink = std::io::sink();
    let mut hashing = HashingWriter::new(&mut sink);
    let total = std::io::copy(reader, &mut hashing)?;
    Ok((total, hashing.finish()))
}

impl BackupHeader {
    /// The header as its line in the file, newline included.
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a header always serialises");
        line.push(b'\n');
        line
    }
}

/// Reads and checks a backup file's header, then copies its database to
/// `to`, checking length and checksum as it goes (streamed, never held
/// whole in memory). On any mismatch `to` is removed.
pub fn unpack(file: &Path, to: &Path) -> Result<BackupHeader, BackupError> {
    let out_err = |source| BackupError::Io { path: to.display().to_string(), source };
    // Never over an existing file: only what this call created is removed.
    let mut out = std::fs::File::create_new(to).map_err(out_err)?;
    let result = copy_verified(file, &mut out).and_then(|h| out.sync_all().map(|()| h).map_err(out_err));
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// Checks a backup file whole (header, length, checksum) without a copy.
pub fn check(file: &Path) -> Result<BackupHeader, BackupError> {
    copy_verified(file, &mut std::io::sink())
}

fn copy_verified(file: &Path, out: &mut impl Write) -> Result<BackupHeader, BackupError> {
    let path = file.display().to_string();
    let io = |source| BackupError::Io { path: path.clone(), source };
    let damaged = |reason: String| BackupError::Damaged { path: path.clone(), reason };
    let mut reader = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?);
    let header = read_header(&mut reader, &path)?;
    let mut hashing = HashingWriter::new(out);
    let copied = std::io::copy(&mut reader.by_ref().take(header.bytes), &mut hashing).map_err(io)?;
    let sha256 = hashing.finish();
    if copied != header.bytes {
        return Err(damaged(format!(
            "the header promises {} bytes, the file holds {copied} (truncated?)",
            header.bytes
        )));
    }
    if !reader.fill_buf().map_err(io)?.is_empty() {
        return Err(damaged("bytes follow the database".into()));
    }
    if sha256 != header.sha256 {
        return Err(damaged(format!("SHA-256 is {sha256}, the header says {}", header.sha256)));
    }
    Ok(header)
}

fn read_header(reader: &mut impl BufRead, path: &str) -> Result<BackupHeader, BackupError> {
    let not = |reason: String| BackupError::NotABackup { path: path.to_owned(), reason };
    let mut line = Vec::new();
    reader
        .take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .map_err(|source| BackupError::Io { path: path.to_owned(), source })?;
    if line.last() != Some(&b'\n') {
        return Err(not("no header line".into()));
    }
    let header: BackupHeader =
        serde_json::from_slice(&line).map_err(|e| not(format!("the header line is not a backup header: {e}")))?;
    if header.format != FORMAT {
        return Err(not(format!("format {:?}, expected {FORMAT:?}", header.format)));
    }
    if header.version != VERSION {
        return Err(not(format!("format version {} is not one this caxton reads ({VERSION})", header.version)));
    }
    Ok(header)
}

/// Writes through to `inner`, hashing (SHA-256) what passes.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    ctx: ring::digest::Context,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Self { inner, ctx: ring::digest::Context::new(&ring::digest::SHA256) }
    }

    /// The SHA-256 of everything written, in hex.
    fn finish(self) -> String {
        crate::codec::hex(self.ctx.finish().as_ref())
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where a member makes its backup copies: beside its replica.
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> BackupHeader {
        let (len, sha256) = hash(&mut &bytes[..]).unwrap();
        BackupHeader {
            format: FORMAT.into(),
            version: VERSION,
            cluster_id: "c".into(),
            node: 1,
            index: 7,
            term: 2,
            created_ms: 0,
            bytes: len,
            sha256,
            digest: "d".into(),
        }
    }

    fn write(dir: &Path, header: &BackupHeader, body: &[u8]) -> PathBuf {
        let file = dir.join("b.backup");
        std::fs::write(&file, [header.line(), body.to_vec()].concat()).unwrap();
        file
    }

    #[test]
    fn a_backup_unpacks_to_its_database_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"database bytes".repeat(1000);
        let h = header(&body);
        let file = write(dir.path(), &h, &body);
        assert_eq!(unpack(&file, &dir.path().join("out.db")).unwrap(), h);
        assert_eq!(std::fs::read(dir.path().join("out.db")).unwrap(), body);

        let mut flipped = body.clone();
        flipped[10] ^= 1;
        let file = write(dir.path(), &h, &flipped);
        assert!(check(&file).is_err());
        let err = unpack(&file, &dir.path().join("flipped.db")).unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("SHA-256"), "{err}");
        assert!(!dir.path().join("flipped.db").exists(), "nothing half-restored is left");

        let file = write(dir.path(), &h, &body[..body.len() - 1]);
        let err = unpack(&file, &dir.path().join("short.db")).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");

        std::fs::write(dir.path().join("junk"), b"SQLite format 3\0").unwrap();
        let err = unpack(&dir.path().join("junk"), &dir.path().join("junk.db")).unwrap_err().to_string();
        assert!(err.contains("not a Caxton backup"), "{err}");

        let mut other = h.clone();
        other.version = 9;
        let file = write(dir.path(), &other, &body);
        let err = unpack(&file, &dir.path().join("v9.db")).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }

    #[test]
    fn unpacking_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"x".to_vec();
        let file = write(dir.path(), &header(&body), &body);
        std::fs::write(dir.path().join("state.db"), b"precious").unwrap();
        assert!(unpack(&file, &dir.path().join("state.db")).is_err());
        assert_eq!(std::fs::read(dir.path().join("state.db")).unwrap(), b"precious");
    }
}
