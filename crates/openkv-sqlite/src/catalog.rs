//! A directory of databases (`openkv serve --data-dir DIR`): one Deno-format SQLite file per
//! database, `DIR/<name>.sqlite3`, and the tokens in `DIR/openkv-tokens.json`.
//!
//! Invariants: a database exists exactly when its file does (the listing reads the
//! directory, so a file copied in is served after the next refresh); a new database starts
//! without a `-wal`/`-shm` of an earlier one of that name (SQLite would replay a stale WAL
//! into the new file); the token file is replaced whole (write, fsync, rename, fsync the
//! directory), so a reader — this process or another server on the same directory — sees the
//! old list or the new one, never half of one. Changes to the token file are serialized
//! within a process; two processes changing tokens at the same instant may lose one change
//! (one server per directory is the supported setup: SQLite files are one writer's anyway).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use openkv_core::catalog::{Catalog, CatalogError, DatabaseName, Reach, Scope, TokenRecord};
use openkv_core::Error;

/// The token file's name inside the directory.
pub const TOKENS_FILE: &str = "openkv-tokens.json";
/// A database file's extension.
pub const DATABASE_EXTENSION: &str = "sqlite3";

/// The catalog of a directory of SQLite databases.
#[derive(Debug)]
pub struct DirCatalog {
    dir: PathBuf,
    /// Serializes read-modify-write of the token file.
    tokens_lock: tokio::sync::Mutex<()>,
}

impl DirCatalog {
    /// The catalog of `dir`, created (with its parents) if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<DirCatalog, CatalogError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::storage_caused(format!("creating the data directory {}", dir.display()), e)
        })?;
        if !dir.is_dir() {
            return Err(
                Error::InvalidOption(format!("{} is not a directory", dir.display())).into()
            );
        }
        Ok(DirCatalog { dir, tokens_lock: tokio::sync::Mutex::new(()) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &DatabaseName) -> PathBuf {
        self.dir.join(format!("{name}.{DATABASE_EXTENSION}"))
    }

    fn companions(&self, name: &DatabaseName) -> [PathBuf; 2] {
        let main = self.path_of(name).into_os_string();
        let with = |suffix: &str| {
            let mut path = main.clone();
            path.push(suffix);
            PathBuf::from(path)
        };
        [with("-wal"), with("-shm")]
    }

    fn read_tokens(&self) -> Result<Vec<TokenRecord>, CatalogError> {
        let path = self.dir.join(TOKENS_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::storage_caused(format!("reading {}", path.display()), e).into())
            }
        };
        let stored: Vec<StoredToken> = serde_json::from_slice(&text)
            .map_err(|e| Error::corrupt(format!("{} is not a token list: {e}", path.display())))?;
        stored.into_iter().map(StoredToken::into_record).collect()
    }

    fn write_tokens(&self, tokens: &[TokenRecord]) -> Result<(), CatalogError> {
        let stored: Vec<StoredToken> = tokens.iter().map(StoredToken::from_record).collect();
        let text = serde_json::to_vec_pretty(&stored)
            .map_err(|e| Error::Internal(format!("encoding the token list: {e}")))?;
        let path = self.dir.join(TOKENS_FILE);
        let io = |what: &str, e: std::io::Error| {
            Error::storage_caused(format!("{what} {}", path.display()), e)
        };
        let mut file =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| io("replacing", e))?;
        file.write_all(&text).map_err(|e| io("writing", e))?;
        file.as_file().sync_all().map_err(|e| io("syncing", e))?;
        // Only the owner reads secrets' hashes: they are not secrets, but they are not public.
        file.persist(&path).map_err(|e| io("replacing", e.error))?;
        sync_dir(&self.dir).map_err(|e| io("syncing the directory of", e))?;
        Ok(())
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Catalog for DirCatalog {
    async fn databases(&self) -> Result<Vec<DatabaseName>, CatalogError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::storage_caused(format!("listing {}", self.dir.display()), e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::storage_caused("listing the data directory", e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(DATABASE_EXTENSION) {
                continue;
            }
            // Files that are not databases by our rules (`Notes.sqlite3`) are left alone.
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            if let Ok(name) = DatabaseName::new(stem) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn create_database(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let path = self.path_of(name);
        if path.exists() {
            return Err(CatalogError::Exists(format!("database {name}")));
        }
        for stale in self.companions(name) {
            match std::fs::remove_file(&stale) {
                Ok(()) => tracing::warn!("removed {} left by an earlier database", stale.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(
                        Error::storage_caused(format!("removing {}", stale.display()), e).into()
                    )
                }
            }
        }
        // An empty file is an empty SQLite database; the first open gives it Deno's schema.
        // `create_new` makes two creations of one name race safely: one of them fails.
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => {
                file.sync_all().map_err(|e| Error::storage_caused("syncing the new database", e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(CatalogError::Exists(format!("database {name}")))
            }
            Err(e) => {
                return Err(Error::storage_caused(format!("creating {}", path.display()), e).into())
            }
        }
        sync_dir(&self.dir).map_err(|e| Error::storage_caused("syncing the data directory", e))?;
        Ok(())
    }

    async fn delete_database(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let path = self.path_of(name);
        // The main file first: once it is gone the database is unlisted; the WAL and shared
        // memory files go after (a crash in between leaves them, and creation removes them).
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CatalogError::NotFound(format!("database {name}")))
            }
            Err(e) => {
                return Err(Error::storage_caused(format!("removing {}", path.display()), e).into())
            }
        }
        for companion in self.companions(name) {
            match std::fs::remove_file(&companion) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::storage_caused(
                        format!("removing {}", companion.display()),
                        e,
                    )
                    .into())
                }
            }
        }
        sync_dir(&self.dir).map_err(|e| Error::storage_caused("syncing the data directory", e))?;
        Ok(())
    }

    fn database_location(&self, name: &DatabaseName) -> String {
        self.path_of(name).to_string_lossy().into_owned()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, CatalogError> {
        self.read_tokens()
    }

    async fn add_token(&self, token: TokenRecord) -> Result<(), CatalogError> {
        let _serialized = self.tokens_lock.lock().await;
        let mut tokens = self.read_tokens()?;
        if tokens.iter().any(|t| t.id == token.id) {
            return Err(CatalogError::Exists(format!("token {}", token.id)));
        }
        tokens.push(token);
        self.write_tokens(&tokens)
    }

    async fn revoke_token(&self, id: &str, at_ms: u64) -> Result<(), CatalogError> {
        let _serialized = self.tokens_lock.lock().await;
        let mut tokens = self.read_tokens()?;
        let Some(token) = tokens.iter_mut().find(|t| t.id == id) else {
            return Err(CatalogError::NotFound(format!("token {id}")));
        };
        if token.revoked_at_ms.is_none() {
            token.revoked_at_ms = Some(at_ms);
            self.write_tokens(&tokens)?;
        }
        Ok(())
    }
}

/// A token in the JSON file: the hash in hex, the reach as `"*"` or a list of names.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredToken {
    id: String,
    secret_sha256: String,
    databases: Vec<String>,
    scope: String,
    #[serde(default)]
    expires_at_ms: Option<u64>,
    #[serde(default)]
    revoked_at_ms: Option<u64>,
    created_at_ms: u64,
    #[serde(default)]
    description: String,
}

impl StoredToken {
    fn from_record(t: &TokenRecord) -> StoredToken {
        let databases = match &t.reach {
            Reach::All => vec!["*".to_owned()],
            Reach::Only(names) => names.iter().map(|n| n.to_string()).collect(),
            // `Reach` may grow; a reach this file cannot say is stored as nothing (reaches no
            // database), never as more.
            _ => Vec::new(),
        };
        StoredToken {
            id: t.id.clone(),
            secret_sha256: hex::encode(t.secret_hash),
            databases,
            scope: t.scope.as_str().to_owned(),
            expires_at_ms: t.expires_at_ms,
            revoked_at_ms: t.revoked_at_ms,
            created_at_ms: t.created_at_ms,
            description: t.description.clone(),
        }
    }

    fn into_record(self) -> Result<TokenRecord, CatalogError> {
        let corrupt =
            |why: String| CatalogError::from(Error::corrupt(format!("token {}: {why}", self.id)));
        let hash: [u8; 32] = hex::decode(&self.secret_sha256)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| corrupt("secret_sha256 is not 64 hex digits".into()))?;
        let reach = if self.databases.iter().any(|d| d == "*") {
            Reach::All
        } else {
            let names =
                self.databases.iter().map(|d| DatabaseName::new(d)).collect::<Result<Vec<_>, _>>();
            Reach::Only(names.map_err(|e| corrupt(e.to_string()))?)
        };
        let scope = Scope::parse(&self.scope).map_err(|e| corrupt(e.to_string()))?;
        let mut record = TokenRecord::new(self.id.clone(), hash, reach, scope, self.created_at_ms);
        record.expires_at_ms = self.expires_at_ms;
        record.revoked_at_ms = self.revoked_at_ms;
        record.description = self.description;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> DatabaseName {
        DatabaseName::new(n).unwrap()
    }

    #[tokio::test]
    async fn databases_are_the_files_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = DirCatalog::open(dir.path().join("data")).unwrap();
        assert!(catalog.databases().await.unwrap().is_empty());
        catalog.create_database(&name("b")).await.unwrap();
        catalog.create_database(&name("a")).await.unwrap();
        let err = catalog.create_database(&name("a")).await.unwrap_err();
        assert!(matches!(err, CatalogError::Exists(_)), "{err}");
        // Other files are not databases.
        std::fs::write(catalog.dir().join("Notes.sqlite3"), b"").unwrap();
        std::fs::write(catalog.dir().join("x.txt"), b"").unwrap();
        assert_eq!(catalog.databases().await.unwrap(), vec![name("a"), name("b")]);
        // A stale WAL of a deleted database does not reach the next one of its name.
        let wal = PathBuf::from(format!("{}-wal", catalog.database_location(&name("a"))));
        catalog.delete_database(&name("a")).await.unwrap();
        std::fs::write(&wal, b"stale").unwrap();
        catalog.create_database(&name("a")).await.unwrap();
        assert!(!wal.exists());
        catalog.delete_database(&name("a")).await.unwrap();
        let err = catalog.delete_database(&name("a")).await.unwrap_err();
        assert!(matches!(err, CatalogError::NotFound(_)), "{err}");
        assert_eq!(catalog.databases().await.unwrap(), vec![name("b")]);
    }

    #[tokio::test]
    async fn tokens_survive_a_reopen_and_revocation_keeps_the_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = DirCatalog::open(dir.path()).unwrap();
        let mut t = TokenRecord::new("t1", [7; 32], Reach::Only(vec![name("a")]), Scope::Write, 5);
        t.expires_at_ms = Some(99);
        t.description = "ci".into();
        catalog.add_token(t.clone()).await.unwrap();
        catalog
            .add_token(TokenRecord::new("t2", [8; 32], Reach::All, Scope::Admin, 6))
            .await
            .unwrap();
        let err = catalog.add_token(t.clone()).await.unwrap_err();
        assert!(matches!(err, CatalogError::Exists(_)), "{err}");
        catalog.revoke_token("t1", 10).await.unwrap();
        catalog.revoke_token("t1", 20).await.unwrap();
        let err = catalog.revoke_token("nope", 10).await.unwrap_err();
        assert!(matches!(err, CatalogError::NotFound(_)), "{err}");
        let reopened = DirCatalog::open(dir.path()).unwrap();
        let tokens = reopened.tokens().await.unwrap();
        t.revoked_at_ms = Some(10);
        assert_eq!(tokens[0], t);
        assert_eq!(tokens[1].reach, Reach::All);
        assert_eq!(tokens[1].scope, Scope::Admin);
        // A damaged file is an error, not an empty list (that would revoke nothing silently).
        std::fs::write(dir.path().join(TOKENS_FILE), b"[{").unwrap();
        assert!(reopened.tokens().await.is_err());
    }
}
