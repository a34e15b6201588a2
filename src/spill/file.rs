//! [`FileSpill`]: spillover objects as files under a local directory, with
//! the same relative keys and bytes as S3 (copy the tree to a bucket and the
//! backfill reads it).
//!
//! Guarantees: an object appears whole or not at all — written to a
//! temporary file, fsynced, then linked to its key only if the key is free
//! (create-only, as `If-None-Match: *` on S3), and the directory fsynced so
//! the link survives a crash. A retry that spills the same records finds
//! them there and succeeds; different records are never written over.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::delivery::store::{FileStateStore, StateStore};

use super::{
    OBJECT_SUFFIX, SpillError, SpillFilter, SpillKey, SpillSink, SpilledBatch, archive_prefix,
    format,
};

pub struct FileSpill {
    root: PathBuf,
}

impl FileSpill {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn url(&self, rel: &str) -> String {
        format!("file://{}", self.root.join(rel).display())
    }

    /// Runs blocking file work off the async workers, naming `rel` in errors.
    async fn blocking<T: Send + 'static>(
        &self,
        rel: &str,
        f: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, SpillError> {
        let root = self.root.clone();
        let location = self.url(rel);
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|_| SpillError::Cancelled)?
            .map_err(|source| SpillError::Io { location, source })
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` only if `path` does not exist: temp file, fsync,
/// link without clobbering, fsync dir. `false` when `path` already exists.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e.error),
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(true)
}

/// `Ok(None)` when the file does not exist.
fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_optional(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Relative paths of all files under `dir/rel` ending in `.ndjson.zst`.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(root.join(rel)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if entry.file_type()?.is_dir() {
            walk(root, &child, out)?;
        } else if name.ends_with(OBJECT_SUFFIX) {
            out.push(child);
        }
    }
    Ok(())
}

/// How `archive` ended, decided inside the blocking task.
enum Moved {
    Done,
    Gone,
    Occupied,
}

#[async_trait::async_trait]
impl SpillSink for FileSpill {
    async fn spill(&self, batch: &SpilledBatch) -> Result<SpillKey, SpillError> {
        let key = SpillKey::of(batch)?;
        let owned = batch.clone();
        let bytes = tokio::task::spawn_blocking(move || format::encode(&owned))
            .await
            .map_err(|_| SpillError::Cancelled)??;
        let rel = key.path();
        let path = rel.clone();
        if self.blocking(&rel, move |root| write_new(&root.join(path), &bytes)).await? {
            return Ok(key);
        }
        // Taken: the same records spilled again (a retry) are already safe;
        // anything else stays as it is.
        if self.read(&key).await?.replays_as(batch) {
            Ok(key)
        } else {
            Err(SpillError::Occupied { location: self.url(&rel) })
        }
    }

    async fn list(&self, filter: &SpillFilter) -> Result<Vec<SpillKey>, SpillError> {
        let prefix = filter.prefix();
        let start = prefix.trim_end_matches('/').to_string();
        let paths = self
            .blocking(&prefix, move |root| {
                let mut out = Vec::new();
                walk(root, &start, &mut out)?;
                Ok(out)
            })
            .await?;
        let mut keys: Vec<SpillKey> =
            paths.iter().filter_map(|p| SpillKey::parse(p)).filter(|k| filter.matches(k)).collect();
        keys.sort();
        Ok(keys)
    }

    async fn read(&self, key: &SpillKey) -> Result<SpilledBatch, SpillError> {
        let rel = key.path();
        let path = rel.clone();
        let bytes = self.blocking(&rel, move |root| read_optional(&root.join(path))).await?;
        let bytes = bytes.ok_or_else(|| SpillError::NotFound { location: self.url(&rel) })?;
        let location = self.url(&rel);
        tokio::task::spawn_blocking(move || format::decode(&bytes, &location))
            .await
            .map_err(|_| SpillError::Cancelled)?
    }

    async fn put_marker(
        &self,
        key: &SpillKey,
        marker: &serde_json::Value,
    ) -> Result<(), SpillError> {
        let bytes = serde_json::to_vec(marker).map_err(SpillError::Encode)?;
        let rel = key.marker_path();
        let path = rel.clone();
        self.blocking(&rel, move |root| write_atomic(&root.join(path), &bytes)).await
    }

    async fn get_marker(&self, key: &SpillKey) -> Result<Option<serde_json::Value>, SpillError> {
        let rel = key.marker_path();
        let path = rel.clone();
        let Some(bytes) = self.blocking(&rel, move |root| read_optional(&root.join(path))).await?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| SpillError::Corrupt {
            location: self.url(&rel),
            why: format!("marker is not JSON: {e}"),
        })
    }

    async fn delete(&self, key: &SpillKey) -> Result<(), SpillError> {
        let (object, marker) = (key.path(), key.marker_path());
        self.blocking(&key.path(), move |root| {
            // The object first, as on S3: a marker alone is harmless.
            remove_optional(&root.join(object))?;
            remove_optional(&root.join(marker)).map(|_| ())
        })
        .await
    }

    async fn archive(&self, key: &SpillKey, to: &str) -> Result<String, SpillError> {
        let to = archive_prefix(to)?.to_string();
        let (object, marker) = (key.path(), key.marker_path());
        let dest = format!("{to}/{object}");
        let moved_to = dest.clone();
        let moved = self
            .blocking(&key.path(), move |root| {
                let (from, dest) = (root.join(&object), root.join(&moved_to));
                let Some(bytes) = read_optional(&from)? else { return Ok(Moved::Gone) };
                // Create-only at the destination: the same bytes there are an
                // earlier run's copy; different bytes are not overwritten.
                if !write_new(&dest, &bytes)? && read_optional(&dest)?.as_ref() != Some(&bytes) {
                    return Ok(Moved::Occupied);
                }
                match std::fs::rename(root.join(&marker), root.join(format!("{to}/{marker}"))) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    other => other?,
                }
                remove_optional(&from)?;
                Ok(Moved::Done)
            })
            .await?;
        match moved {
            Moved::Done => Ok(self.url(&dest)),
            Moved::Gone => Err(SpillError::NotFound { location: self.url(&key.path()) }),
            Moved::Occupied => Err(SpillError::Occupied { location: self.url(&dest) }),
        }
    }

    async fn check(&self) -> Result<String, SpillError> {
        self.blocking("", |root| {
            std::fs::create_dir_all(root)?;
            // Proves the directory is writable without leaving anything.
            tempfile::NamedTempFile::new_in(root).map(drop)
        })
        .await?;
        Ok(format!("spillover directory {} is writable", self.root.display()))
    }

    fn location(&self, key: &SpillKey) -> String {
        self.url(&key.path())
    }

    fn root(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn lease_store(&self) -> std::sync::Arc<dyn StateStore> {
        std::sync::Arc::new(FileStateStore::new(self.root.clone()))
    }
}
