//! A server's own state when it serves many databases (`openkv serve --data-dir`): which
//! databases exist, and the access tokens that reach them.
//!
//! The [`Catalog`] trait is the seam; each storage keeps its catalog next to its databases —
//! `openkv-sqlite`'s in a directory (one file per database, the tokens in a JSON file),
//! `openkv-postgres`'s in tables of its own schema (one schema per database) — so that every
//! server sharing the storage shares the catalog. The core only names things: it hashes no
//! secret and checks no request (the server does both).

use std::fmt;

use async_trait::async_trait;

/// The longest database name: with a PostgreSQL catalog's `kv_` prefix it stays within
/// PostgreSQL's identifier limit and `openkv_schema`'s 48 characters.
pub const MAX_DATABASE_NAME: usize = 40;

/// A database's name: 1 to [`MAX_DATABASE_NAME`] characters of `a-z`, `0-9` and `-`, starting
/// with a letter. It is a path segment of every client URL (`/databases/<name>/connect`), a
/// file name and a PostgreSQL schema name, so it is plain in all three; no `_`, so that the
/// schema name (`-` → `_`) maps back to one name only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatabaseName(String);

impl DatabaseName {
    /// Checks `name` against the rules above.
    pub fn new(name: &str) -> Result<DatabaseName, CatalogError> {
        let plain = !name.is_empty()
            && name.len() <= MAX_DATABASE_NAME
            && name.as_bytes()[0].is_ascii_lowercase()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if plain {
            Ok(DatabaseName(name.to_owned()))
        } else {
            Err(CatalogError::InvalidName(format!(
                "{name:?}: a database name is 1 to {MAX_DATABASE_NAME} characters of a-z, 0-9 \
                 and -, starting with a letter"
            )))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name looks up as its text (maps keyed by `DatabaseName` take a `&str`): the derived
/// `Eq`, `Ord` and `Hash` are those of the one `String` inside, as `Borrow` requires.
impl std::borrow::Borrow<str> for DatabaseName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a token may do. Each scope includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Reads: snapshot reads, watches, the metadata exchange, a replica's log and snapshot.
    Read,
    /// Reads and writes: atomic writes and the queue endpoints.
    Write,
    /// Everything: backups, restores, and (for a token reaching every database) managing
    /// databases and tokens.
    Admin,
}

impl Scope {
    /// The scope's name in the CLI, the admin API and the catalog: `read`, `write`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `text` (see [`Scope::as_str`]).
    pub fn parse(text: &str) -> Result<Scope, CatalogError> {
        match text {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(CatalogError::InvalidToken(format!(
                "scope {other:?}: one of read, write, admin"
            ))),
        }
    }
}

/// The databases a token reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reach {
    /// Every database, present and future.
    All,
    /// These (at least one).
    Only(Vec<DatabaseName>),
}

impl Reach {
    /// Whether a token with this reach may use `database`.
    pub fn includes(&self, database: &DatabaseName) -> bool {
        match self {
            Reach::All => true,
            Reach::Only(names) => names.contains(database),
        }
    }
}

/// A token as the catalog keeps it: never its secret, only the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRecord {
    /// The public half of the token (printed in lists and logs).
    pub id: String,
    /// SHA-256 of the secret half; the server compares hashes in constant time.
    pub secret_hash: [u8; 32],
    /// The databases it reaches.
    pub reach: Reach,
    /// What it may do there.
    pub scope: Scope,
    /// When it stops working (ms since the epoch); `None`: never.
    pub expires_at_ms: Option<u64>,
    /// When it was revoked (ms since the epoch); a revoked token is kept, refused, and listed
    /// as revoked, so that a log line naming its id still finds it.
    pub revoked_at_ms: Option<u64>,
    /// When it was made (ms since the epoch).
    pub created_at_ms: u64,
    /// A note for people (`--description`); may be empty.
    pub description: String,
}

impl TokenRecord {
    /// A new token record, not revoked.
    pub fn new(
        id: impl Into<String>,
        secret_hash: [u8; 32],
        reach: Reach,
        scope: Scope,
        created_at_ms: u64,
    ) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            secret_hash,
            reach,
            scope,
            expires_at_ms: None,
            revoked_at_ms: None,
            created_at_ms,
            description: String::new(),
        }
    }
}

/// Why a catalog call failed; a server answers each with its own status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A name that breaks [`DatabaseName`]'s rules (400).
    #[error("invalid database name {0}")]
    InvalidName(String),
    /// A token record or request that cannot be stored as given (400).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The database (or token id) exists already (409).
    #[error("{0} exists already")]
    Exists(String),
    /// No such database or token (404).
    #[error("no {0}")]
    NotFound(String),
    /// The storage under the catalog failed (503/500 by the error's class).
    #[error(transparent)]
    Storage(#[from] crate::Error),
}

/// Which databases exist and which tokens reach them, shared by every server on one storage.
///
/// Implementations make each call atomic on their storage: a database is listed only once it
/// can be opened, and is unlisted before its storage is removed. Tokens are records the
/// server reads in full and caches (a catalog holds tens to thousands, not millions).
#[async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// The databases, by name.
    async fn databases(&self) -> Result<Vec<DatabaseName>, CatalogError>;

    /// Creates an empty database; [`CatalogError::Exists`] if there is one by that name.
    async fn create_database(&self, name: &DatabaseName) -> Result<(), CatalogError>;

    /// Unlists the database, then removes its storage. The caller has closed its handle.
    async fn delete_database(&self, name: &DatabaseName) -> Result<(), CatalogError>;

    /// What `openkv::OpenOptions::open` takes to open the database (a path or a URL).
    fn database_location(&self, name: &DatabaseName) -> String;

    /// Every token, revoked and expired ones included.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, CatalogError>;

    /// Stores a new token; [`CatalogError::Exists`] if its id is taken.
    async fn add_token(&self, token: TokenRecord) -> Result<(), CatalogError>;

    /// Marks the token revoked at `at_ms`; [`CatalogError::NotFound`] if there is none by that
    /// id. Revoking a revoked token keeps the first time.
    async fn revoke_token(&self, id: &str, at_ms: u64) -> Result<(), CatalogError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_in_urls_files_and_schemas() {
        for good in ["a", "app-prod", "x1", &"a".repeat(MAX_DATABASE_NAME)] {
            assert_eq!(DatabaseName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "1app", "-app", "App", "app_prod", "app/x", "app.x", &"a".repeat(41), "é"]
        {
            let err = DatabaseName::new(bad).unwrap_err();
            assert!(matches!(err, CatalogError::InvalidName(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn scopes_include_the_lower_ones() {
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        for scope in [Scope::Read, Scope::Write, Scope::Admin] {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
        }
        assert!(Scope::parse("root").is_err());
    }

    #[test]
    fn reach_only_lists_its_databases() {
        let prod = DatabaseName::new("prod").unwrap();
        let staging = DatabaseName::new("staging").unwrap();
        assert!(Reach::All.includes(&prod));
        let only = Reach::Only(vec![prod.clone()]);
        assert!(only.includes(&prod));
        assert!(!only.includes(&staging));
    }
}
