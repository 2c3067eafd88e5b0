//! A fresh directory under the system temp dir, removed on drop.
//!
//! Small enough not to need the `tempfile` crate: the harness only needs one directory per
//! server for its port file.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many names to try before giving up (a clash needs another process with our pid).
const MAX_CREATE_ATTEMPTS: u32 = 16;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A directory that is deleted, with its contents, when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/rampart-tests-<pid>-<n>-<nanos>`.
    ///
    /// When running as root the directory is made writable by everyone: the servers drop to
    /// `-u nobody` before they write the port file into it.
    pub fn new() -> io::Result<TempDir> {
        let mut last_err = None;
        for _ in 0..MAX_CREATE_ATTEMPTS {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("rampart-tests-{}-{id}-{nanos}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    if crate::running_as_root() {
                        fs::set_permissions(&path, fs::Permissions::from_mode(0o777))?;
                    }
                    return Ok(TempDir { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not create a temp dir")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is not worth a panic during unwinding.
        let _ = fs::remove_dir_all(&self.path);
    }
}
