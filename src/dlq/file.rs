//! [`FileDeadLetter`]: dead letters appended to a local NDJSON file, one
//! envelope per line, for the demo and local runs.
//!
//! Guarantees: a `send` that returns `Ok` has its lines on disk (fsynced).
//! All letters of one `send` are written with one `write_all`, serialized by
//! a lock within the process; payloads always stay inline (no size limit).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DeadLetter, DeadLetterSink, DlqError, LetterError};

/// File name used when the URL names an existing directory.
pub const DEFAULT_FILE_NAME: &str = "dead-letters.ndjson";

pub struct FileDeadLetter {
    path: PathBuf,
    lock: Arc<std::sync::Mutex<()>>,
}

impl FileDeadLetter {
    /// Appends to `path`, or to `path/dead-letters.ndjson` when `path` is an
    /// existing directory. Parent directories are created on first write.
    pub fn new(path: PathBuf) -> Self {
        let path = if path.is_dir() { path.join(DEFAULT_FILE_NAME) } else { path };
        Self { path, lock: Arc::new(std::sync::Mutex::new(())) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn append(path: &Path, text: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text)?;
    file.sync_data()
}

#[async_trait::async_trait]
impl DeadLetterSink for FileDeadLetter {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DlqError> {
        if letters.is_empty() {
            return Ok(());
        }
        let all = || (0..letters.len()).collect::<Vec<_>>();
        let mut text = String::new();
        for letter in letters {
            let line = letter
                .to_json()
                .map_err(|e| DlqError::Partial { failed: all(), cause: e.into() })?;
            text.push_str(&line);
            text.push('\n');
        }
        let path = self.path.clone();
        let lock = Arc::clone(&self.lock);
        let written = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another append panicked; the file is
            // still append-only, so carrying on is safe.
            let _guard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            append(&path, text.as_bytes())
        })
        .await;
        let cause = match written {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(source)) => LetterError::Io { path: self.path.display().to_string(), source },
            Err(_) => LetterError::Cancelled,
        };
        Err(DlqError::Partial { failed: all(), cause })
    }

    async fn check(&self) -> Result<String, DlqError> {
        let path = self.path.clone();
        let probe = tokio::task::spawn_blocking(move || append(&path, b"")).await;
        let cause = match probe {
            Ok(Ok(())) => return Ok(format!("dead letters append to {}", self.path.display())),
            Ok(Err(source)) => LetterError::Io { path: self.path.display().to_string(), source },
            Err(_) => LetterError::Cancelled,
        };
        Err(DlqError::Unreachable { location: self.location(), cause })
    }

    fn location(&self) -> String {
        format!("file://{}", self.path.display())
    }
}
