//! Access tokens: the server's all-powerful `--access-token`, and the scoped tokens of a
//! catalog (`openkv token create`), checked against a copy of the catalog's tokens that
//! [`Tokens::refresh`] renews every [`TOKEN_REFRESH`]. A bottom module: it imports none of
//! the server's others.
//!
//! A scoped token reads `okv_<id>_<secret>`: 12 hex digits of id (public: lists and logs
//! show it) and 32 random bytes of secret in unpadded base64url. The catalog keeps only the
//! secret's SHA-256 — a fast hash is enough for a 256-bit random secret, which no dictionary
//! holds — and the check compares hashes in constant time.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use openkv::catalog::{Catalog, CatalogError, DatabaseName, Reach, Scope, TokenRecord};
use openkv::Clock;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How often a server reads the catalog's tokens (and databases) again: a token revoked
/// through one server is refused by every other server on the same catalog within this long
/// (plus the time one read takes).
pub const TOKEN_REFRESH: Duration = Duration::from_secs(2);

/// The prefix of every scoped token.
const PREFIX: &str = "okv_";
/// The id shown for the server's own `--access-token` in logs.
pub(crate) const ROOT_ID: &str = "access-token";

/// Who made a request, once its token checked out: the catalog's record of its token, or
/// `None` for the access token. (An `Arc`: checking a token allocates nothing.)
#[derive(Clone, Debug)]
pub(crate) struct Principal(Option<Arc<TokenRecord>>);

impl Principal {
    /// The token's id ([`ROOT_ID`] for the access token).
    pub(crate) fn id(&self) -> &str {
        self.0.as_ref().map_or(ROOT_ID, |t| t.id.as_str())
    }

    /// Whether it reaches `database`.
    pub(crate) fn reaches(&self, database: &DatabaseName) -> bool {
        self.0.as_ref().is_none_or(|t| t.reach.includes(database))
    }

    /// What it may do (the access token: everything).
    pub(crate) fn scope(&self) -> Scope {
        self.0.as_ref().map_or(Scope::Admin, |t| t.scope)
    }

    /// Whether it may manage databases and tokens: an admin token reaching every database.
    pub(crate) fn manages(&self) -> bool {
        self.0.as_ref().is_none_or(|t| t.scope == Scope::Admin && t.reach == Reach::All)
    }
}

/// Why a request was refused, from the most basic failure on: each has its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No `Authorization: Bearer …` (401).
    Missing,
    /// Not a token this server knows (401).
    Invalid,
    /// Past its expiry (401).
    Expired,
    /// Revoked (401).
    Revoked,
    /// The token reaches the database but lacks the scope (403).
    Forbidden,
    /// No such database, or one the token does not reach (404: whether it exists is not
    /// the caller's business).
    Unreachable,
}

impl Denied {
    /// The reason's name in logs and metrics.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Invalid => "invalid",
            Denied::Expired => "expired",
            Denied::Revoked => "revoked",
            Denied::Forbidden => "forbidden",
            Denied::Unreachable => "unknown_database",
        }
    }
}

/// A new scoped token: the text to hand out once, and the record the catalog keeps.
pub(crate) struct Minted {
    pub(crate) token: String,
    pub(crate) record: TokenRecord,
}

/// Makes a token with a fresh id and secret.
pub(crate) fn mint(reach: Reach, scope: Scope, now_ms: u64) -> Minted {
    use rand::RngCore;
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let record = TokenRecord::new(id.clone(), hash(&secret), reach, scope, now_ms);
    Minted { token: format!("{PREFIX}{id}_{secret}"), record }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// `okv_<id>_<secret>` split, or `None` for anything else.
fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some((id, secret))
}

/// The server's tokens.
pub(crate) struct Tokens {
    root: String,
    /// The catalog's tokens by id; `None` on a single-database server (no catalog).
    scoped: Option<RwLock<HashMap<String, Arc<TokenRecord>>>>,
    clock: Arc<dyn Clock>,
}

impl Tokens {
    /// Only the access token (a single-database server).
    pub(crate) fn root_only(root: String) -> Tokens {
        Tokens { root, scoped: None, clock: Arc::new(openkv::SystemClock) }
    }

    /// The access token and a catalog's tokens (filled by [`Tokens::refresh`]).
    pub(crate) fn with_catalog(root: String, clock: Arc<dyn Clock>) -> Tokens {
        Tokens { root, scoped: Some(RwLock::new(HashMap::new())), clock }
    }

    /// Reads the catalog's tokens again. On failure the last good copy stays in force (a
    /// catalog that cannot be read revokes nothing and grants nothing new).
    pub(crate) async fn refresh(&self, catalog: &dyn Catalog) -> Result<(), CatalogError> {
        let Some(scoped) = &self.scoped else { return Ok(()) };
        let tokens = catalog.tokens().await?;
        let map = tokens.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect();
        *scoped.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    /// Checks `presented` for a request to `database` (`None`: the server's own endpoints, or
    /// the one database of a single-database server) that needs `needed`.
    pub(crate) fn check(
        &self,
        presented: Option<&str>,
        database: Option<&DatabaseName>,
        needed: Scope,
    ) -> Result<Principal, Denied> {
        let presented = presented.ok_or(Denied::Missing)?;
        // Constant time in the token's content; the length is not secret.
        if bool::from(presented.as_bytes().ct_eq(self.root.as_bytes())) {
            return Ok(Principal(None));
        }
        let (Some(scoped), Some((id, secret))) = (&self.scoped, split(presented)) else {
            return Err(Denied::Invalid);
        };
        let record = {
            let scoped = scoped.read().unwrap_or_else(PoisonError::into_inner);
            scoped.get(id).cloned().ok_or(Denied::Invalid)?
        };
        if !bool::from(hash(secret).ct_eq(&record.secret_hash)) {
            return Err(Denied::Invalid);
        }
        if record.revoked_at_ms.is_some() {
            return Err(Denied::Revoked);
        }
        let now = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        if record.expires_at_ms.is_some_and(|at| at <= now) {
            return Err(Denied::Expired);
        }
        if let Some(database) = database {
            if !record.reach.includes(database) {
                return Err(Denied::Unreachable);
            }
        }
        if record.scope < needed {
            return Err(Denied::Forbidden);
        }
        Ok(Principal(Some(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> DatabaseName {
        DatabaseName::new(n).unwrap()
    }

    fn tokens_with(records: Vec<TokenRecord>, clock: Arc<openkv::ManualClock>) -> Tokens {
        let tokens = Tokens::with_catalog("root-token-0123".into(), clock);
        let map = records.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect();
        *tokens.scoped.as_ref().unwrap().write().unwrap() = map;
        tokens
    }

    #[test]
    fn a_minted_token_checks_out_with_its_reach_and_scope_only() {
        let clock = Arc::new(openkv::ManualClock::new(1_000));
        let writer = mint(Reach::Only(vec![name("prod")]), Scope::Write, 1_000);
        let mut expiring = mint(Reach::All, Scope::Read, 1_000);
        expiring.record.expires_at_ms = Some(2_000);
        let mut revoked = mint(Reach::All, Scope::Admin, 1_000);
        revoked.record.revoked_at_ms = Some(1_500);
        let tokens = tokens_with(
            vec![writer.record.clone(), expiring.record.clone(), revoked.record.clone()],
            clock.clone(),
        );
        let prod = name("prod");
        let staging = name("staging");
        let ok = tokens.check(Some(&writer.token), Some(&prod), Scope::Write).unwrap();
        assert_eq!(ok.id(), writer.record.id);
        assert!(!ok.manages());
        assert_eq!(
            tokens.check(Some(&writer.token), Some(&prod), Scope::Admin).unwrap_err(),
            Denied::Forbidden
        );
        assert_eq!(
            tokens.check(Some(&writer.token), Some(&staging), Scope::Read).unwrap_err(),
            Denied::Unreachable
        );
        assert!(tokens.check(Some(&expiring.token), Some(&staging), Scope::Read).is_ok());
        clock.advance(Duration::from_millis(1_000));
        assert_eq!(
            tokens.check(Some(&expiring.token), Some(&staging), Scope::Read).unwrap_err(),
            Denied::Expired
        );
        assert_eq!(
            tokens.check(Some(&revoked.token), None, Scope::Read).unwrap_err(),
            Denied::Revoked
        );
        assert_eq!(tokens.check(None, None, Scope::Read).unwrap_err(), Denied::Missing);
        // The right id with another secret, a malformed token, an unknown id.
        let forged = format!("{PREFIX}{}_{}", writer.record.id, "A".repeat(43));
        for bad in [forged.as_str(), "okv_zz_x", "okv_0123456789ab_", "Bearer", ""] {
            assert_eq!(
                tokens.check(Some(bad), Some(&prod), Scope::Read).unwrap_err(),
                Denied::Invalid,
                "{bad}"
            );
        }
        let root = tokens.check(Some("root-token-0123"), Some(&staging), Scope::Admin).unwrap();
        assert!(root.manages());
    }

    #[test]
    fn a_single_database_server_knows_its_access_token_only() {
        let tokens = Tokens::root_only("root-token-0123".into());
        let minted = mint(Reach::All, Scope::Admin, 0);
        assert_eq!(
            tokens.check(Some(&minted.token), None, Scope::Read).unwrap_err(),
            Denied::Invalid
        );
        assert!(tokens.check(Some("root-token-0123"), None, Scope::Admin).is_ok());
    }
}
