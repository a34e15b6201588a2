//! [`FileStateStore`]: state files under a local directory, for the demo and
//! local runs.
//!
//! Each value is one file, `{root}/{key}`: a first line `version N` and the
//! bytes after it, replaced whole by an atomic rename (so a reader never sees
//! half a write and needs no lock). Writers serialize on an exclusive lock on
//! `{key}.lock` (flock, so it holds between processes and between handles in
//! one process), check the version under it, and write `N + 1`.

use std::path::{Path, PathBuf};

use super::{StateStore, StoreError, Version, validate_key};

pub(crate) const LOCK_SUFFIX: &str = ".lock";
const HEADER: &str = "version ";

pub struct FileStateStore {
    root: PathBuf,
}

/// What a locked write found, decided inside the blocking task.
enum Outcome {
    Written(u64),
    Conflict,
}

impl FileStateStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn url(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    /// Under the key's lock: reads the current version, asks `decide` whether
    /// to write (`Some(new_version)`), and writes atomically if so.
    async fn write_locked(
        &self,
        key: &str,
        bytes: &[u8],
        decide: impl FnOnce(Option<u64>) -> Option<u64> + Send + 'static,
    ) -> Result<Version, StoreError> {
        validate_key(key)?;
        let location = self.url(key);
        let path = self.root.join(key);
        let bytes = bytes.to_vec();
        let loc = location.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome, StoreError> {
            let io = |source| StoreError::Io { location: loc.clone(), source };
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(io)?;
            let mut lock_path = path.clone().into_os_string();
            lock_path.push(LOCK_SUFFIX);
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io)?;
            lock.lock().map_err(io)?;
            let current = read(&path, &loc)?.map(|(version, _)| version);
            let Some(next) = decide(current) else { return Ok(Outcome::Conflict) };
            let mut text = format!("{HEADER}{next}\n").into_bytes();
            text.extend_from_slice(&bytes);
            crate::spill::write_atomic(&path, &text).map_err(io)?;
            // The lock is released when `lock` is dropped, after the rename.
            drop(lock);
            Ok(Outcome::Written(next))
        })
        .await
        .map_err(|_| StoreError::Cancelled)??;
        match outcome {
            Outcome::Written(v) => Ok(Version(v.to_string())),
            Outcome::Conflict => Err(StoreError::Conflict { location }),
        }
    }
}

/// The version and bytes stored at `path`, `None` if there is no file.
fn read(path: &Path, location: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Io { location: location.to_string(), source }),
    };
    let corrupt =
        |why: &str| StoreError::Corrupt { location: location.to_string(), why: why.into() };
    let newline = text.iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("no header line"))?;
    let (head, rest) = text.split_at(newline);
    let version = std::str::from_utf8(head)
        .ok()
        .and_then(|h| h.strip_prefix(HEADER))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| corrupt("first line is not `version N`"))?;
    Ok(Some((version, rest.get(1..).unwrap_or_default().to_vec())))
}

#[async_trait::async_trait]
impl StateStore for FileStateStore {
    async fn load(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        validate_key(key)?;
        let path = self.root.join(key);
        let location = self.url(key);
        let found = tokio::task::spawn_blocking(move || read(&path, &location))
            .await
            .map_err(|_| StoreError::Cancelled)??;
        Ok(found.map(|(version, bytes)| (bytes, Version(version.to_string()))))
    }

    async fn create(&self, key: &str, bytes: &[u8]) -> Result<Version, StoreError> {
        self.write_locked(key, bytes, |current| current.is_none().then_some(1)).await
    }

    async fn replace(
        &self,
        key: &str,
        bytes: &[u8],
        expected: &Version,
    ) -> Result<Version, StoreError> {
        // A version this store did not issue (an S3 ETag) never matches.
        let expected = expected.as_str().parse::<u64>().ok();
        self.write_locked(key, bytes, move |current| match (current, expected) {
            (Some(c), Some(e)) if c == e => c.checked_add(1),
            _ => None,
        })
        .await
    }

    async fn check(&self) -> Result<String, StoreError> {
        let root = self.root.clone();
        let location = format!("file://{}", self.root.display());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)?;
            tempfile::NamedTempFile::new_in(&root).map(drop)
        })
        .await
        .map_err(|_| StoreError::Cancelled)?
        .map_err(|source| StoreError::Io { location, source })?;
        Ok(format!("state directory {} is writable", self.root.display()))
    }

    fn location(&self, key: &str) -> String {
        self.url(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_count_up_and_stale_writers_lose() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path().to_path_buf());
        assert!(store.load("t/shard.json").await.unwrap().is_none());
        let v1 = store.create("t/shard.json", b"{\"a\":1}").await.unwrap();
        assert!(matches!(
            store.create("t/shard.json", b"x").await,
            Err(StoreError::Conflict { .. })
        ));
        let v2 = store.replace("t/shard.json", b"{\"a\":2}", &v1).await.unwrap();
        assert_ne!(v1, v2);
        let stale = store.replace("t/shard.json", b"{\"a\":3}", &v1).await;
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        let (bytes, v) = store.load("t/shard.json").await.unwrap().unwrap();
        assert_eq!((bytes.as_slice(), v), (&b"{\"a\":2}"[..], v2));
        let foreign = Version("\"etag\"".into());
        assert!(store.replace("t/shard.json", b"x", &foreign).await.is_err());
        assert!(store.replace("missing", b"x", &v1).await.is_err());
        let raw = std::fs::read_to_string(dir.path().join("t/shard.json")).unwrap();
        assert_eq!(raw, "version 2\n{\"a\":2}");
    }
}
