//! The free space of the node's data volume, watched so that writes are
//! refused before the volume fills: a full volume stops Raft itself (the
//! log cannot be appended), on every node the entries reach.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the free space is read.
const EVERY: Duration = Duration::from_secs(2);

/// Free bytes of the data volume, as last read.
#[derive(Clone)]
pub struct DiskSpace {
    free: Arc<AtomicU64>,
    /// Below this, growing writes are refused.
    pub min_free: u64,
}

impl DiskSpace {
    /// Reads `dir`'s volume now, then every two seconds until `stop`.
    pub fn watch(dir: PathBuf, min_free: u64, stop: tokio_util::sync::CancellationToken) -> Self {
        let free = Arc::new(AtomicU64::new(free_bytes(&dir).unwrap_or(u64::MAX)));
        let watched = free.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(EVERY) => {}
                }
                let dir = dir.clone();
                match tokio::task::spawn_blocking(move || free_bytes(&dir)).await {
                    Ok(Ok(bytes)) => watched.store(bytes, Ordering::Relaxed),
                    // Unknown is not full: a failed read never blocks writes.
                    Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the data volume's free space"),
                    Err(_) => {}
                }
            }
        });
        Self { free, min_free }
    }

    /// The free bytes as last read (`u64::MAX` if never read).
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// The free bytes when they are below the floor.
    pub fn short(&self) -> Option<u64> {
        let free = self.free.load(Ordering::Relaxed);
        (free < self.min_free).then_some(free)
    }
}

/// Bytes an unprivileged writer may still use on `dir`'s file system.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `statvfs` writes only into the struct we own; the path is a
    // NUL-terminated string that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_free_space_of_a_real_volume_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let free = super::free_bytes(dir.path()).unwrap();
        assert!(free > 0 && free < u64::MAX, "{free}");
        assert!(super::free_bytes(&dir.path().join("missing")).is_err());
    }
}
