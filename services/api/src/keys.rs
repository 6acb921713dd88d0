//! API keys: generation, hashing, the ClickHouse table, and the in-memory cache every request
//! authenticates against.
//!
//! A key looks like `pt_<12 hex public prefix>_<43 chars of base64url secret>`: 48 random bits
//! of public prefix (the lookup id, safe to show and log) and 256 random bits of secret. Only
//! the SHA-256 of the whole key is stored; a presented key is hashed and compared with the
//! stored hash in constant time (`subtle`). Keys have 256 bits of entropy, so a fast hash is
//! enough: there is nothing to brute-force that a slow KDF would protect.
//!
//! Each replica keeps every key in memory and reloads the table every
//! `api_key_refresh_interval` (2 s by default): a revocation made anywhere reaches every
//! replica within one interval plus one query.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::{error::ApiError, store::Store};

/// Keys we generate start with this.
pub const KEY_MARKER: &str = "pt_";
const PREFIX_HEX_CHARS: usize = 12;
const SECRET_BYTES: usize = 32;
/// Presented keys longer than this are refused without hashing.
const MAX_PRESENTED_KEY_LEN: usize = 256;
/// A bootstrap key chosen by an operator must be at least this long.
pub const MIN_BOOTSTRAP_KEY_LEN: usize = 32;

pub use polytape_clickhouse::rows::ApiKeyRow;

const STATUS_ACTIVE: i8 = ApiKeyRow::STATUS_ACTIVE;
const STATUS_REVOKED: i8 = ApiKeyRow::STATUS_REVOKED;

/// A freshly generated key: the plaintext is shown once and never stored.
#[derive(Clone)]
pub struct GeneratedKey {
    pub plaintext: String,
    pub prefix: String,
    pub hash_hex: String,
}

impl std::fmt::Debug for GeneratedKey {
    // The plaintext must never reach a log line, even through `{:?}`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GeneratedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A new random key.
pub fn generate_key() -> GeneratedKey {
    let mut prefix_bytes = [0_u8; PREFIX_HEX_CHARS / 2];
    let mut secret_bytes = [0_u8; SECRET_BYTES];
    let mut random = rand::rng();
    random.fill_bytes(&mut prefix_bytes);
    random.fill_bytes(&mut secret_bytes);
    let prefix = format!("{KEY_MARKER}{}", hex::encode(prefix_bytes));
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    let plaintext = format!("{prefix}_{secret}");
    GeneratedKey {
        hash_hex: hex::encode(hash_key(&plaintext)),
        prefix,
        plaintext,
    }
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The public lookup prefix of a presented key: the embedded one for keys we generated,
/// else (an operator's bootstrap key in another format) `bs_` + 12 hex of its hash.
pub fn lookup_prefix(key: &str) -> String {
    if let Some(rest) = key.strip_prefix(KEY_MARKER)
        && rest.len() > PREFIX_HEX_CHARS
        && rest.as_bytes()[PREFIX_HEX_CHARS] == b'_'
        && rest[..PREFIX_HEX_CHARS]
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit())
    {
        return format!("{KEY_MARKER}{}", &rest[..PREFIX_HEX_CHARS]);
    }
    format!("bs_{}", &hex::encode(hash_key(key))[..PREFIX_HEX_CHARS])
}

/// Whether `text` is a lookup prefix (as opposed to a whole key).
pub fn is_prefix(text: &str) -> bool {
    (text.starts_with(KEY_MARKER) || text.starts_with("bs_"))
        && text.len() == 3 + PREFIX_HEX_CHARS
        && text[3..].bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// A plan's default limits and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDefaults {
    pub rps: u32,
    pub daily_cap: u64,
    pub length_ms: Option<i64>,
}

/// The built-in plans; `custom` has no defaults (rps and daily cap must be given).
pub fn plan_defaults(plan: &str) -> Option<PlanDefaults> {
    const DAY_MS: i64 = 86_400_000;
    match plan {
        "weekly" => Some(PlanDefaults {
            rps: 10,
            daily_cap: 100_000,
            length_ms: Some(7 * DAY_MS),
        }),
        "monthly" => Some(PlanDefaults {
            rps: 20,
            daily_cap: 250_000,
            length_ms: Some(30 * DAY_MS),
        }),
        _ => None,
    }
}

/// What a new key should be.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub plan: String,
    pub rps: Option<u32>,
    pub daily_cap: Option<u64>,
    /// Overrides the plan's length; `None` keeps the plan's (custom keys then never expire).
    pub expires_in_ms: Option<i64>,
}

/// Why a key could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no API key with prefix {0}")]
    NotFound(String),
    #[error("clickhouse query failed ({context}): {source}")]
    Storage {
        context: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Invalid(message) => ApiError::invalid(message),
            KeyError::NotFound(prefix) => {
                ApiError::not_found(format!("no API key with prefix {prefix}"))
            }
            KeyError::Storage { source, .. } => ApiError::Storage { source },
        }
    }
}

fn storage(context: &'static str) -> impl FnOnce(clickhouse::error::Error) -> KeyError {
    move |source| KeyError::Storage { context, source }
}

/// Checks a spec and turns it into the row to store for `key`.
pub fn row_for(spec: &KeySpec, key: &GeneratedKey, now_ms: i64) -> Result<ApiKeyRow, KeyError> {
    let name = spec.name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "name must be 1 to 200 printable characters".to_owned(),
        ));
    }
    let plan = spec.plan.trim();
    let defaults = match plan {
        "custom" => None,
        other => Some(plan_defaults(other).ok_or_else(|| {
            KeyError::Invalid(format!(
                "unknown plan {other:?}; use weekly, monthly or custom"
            ))
        })?),
    };
    let rps = spec
        .rps
        .or(defaults.as_ref().map(|plan| plan.rps))
        .ok_or_else(|| KeyError::Invalid("a custom plan needs --rps".to_owned()))?;
    let daily_cap = spec
        .daily_cap
        .or(defaults.as_ref().map(|plan| plan.daily_cap))
        .ok_or_else(|| KeyError::Invalid("a custom plan needs --daily-cap".to_owned()))?;
    if rps == 0 || rps > 100_000 {
        return Err(KeyError::Invalid("rps must be 1 to 100000".to_owned()));
    }
    if daily_cap == 0 {
        return Err(KeyError::Invalid("daily cap must be at least 1".to_owned()));
    }
    let length_ms = spec
        .expires_in_ms
        .or(defaults.and_then(|plan| plan.length_ms));
    if length_ms.is_some_and(|length| length <= 0) {
        return Err(KeyError::Invalid("expiry must be in the future".to_owned()));
    }
    Ok(ApiKeyRow {
        key_prefix: key.prefix.clone(),
        key_hash: key.hash_hex.clone(),
        name: name.to_owned(),
        plan: plan.to_owned(),
        status: STATUS_ACTIVE,
        rps,
        daily_cap,
        created_at: now_ms,
        expires_at: length_ms.map(|length| now_ms.saturating_add(length)),
        updated_at: now_ms,
    })
}

/// Keys in ClickHouse.
#[derive(Debug, Clone)]
pub struct KeyStore {
    store: Store,
}

impl KeyStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn insert(&self, row: &ApiKeyRow) -> Result<(), KeyError> {
        self.store
            .write_api_key(row)
            .await
            .map_err(storage("insert api key"))
    }

    /// Every key, newest version of each.
    pub async fn load_all(&self) -> Result<Vec<ApiKeyRow>, KeyError> {
        self.store
            .api_keys()
            .await
            .map_err(storage("load api keys"))
    }

    pub async fn find(&self, prefix: &str) -> Result<Option<ApiKeyRow>, KeyError> {
        self.store
            .api_key(prefix)
            .await
            .map_err(storage("find api key"))
    }

    /// A new key whose prefix no stored key has: a reused prefix would replace that key's
    /// row (the table keeps the newest row per prefix). With 48 random bits a retry is
    /// practically never needed; it is cheap insurance.
    async fn unused_key(&self) -> Result<GeneratedKey, KeyError> {
        for _ in 0..3 {
            let key = generate_key();
            if self.find(&key.prefix).await?.is_none() {
                return Ok(key);
            }
        }
        Err(KeyError::Invalid(
            "could not draw an unused key prefix; try again".to_owned(),
        ))
    }

    /// Creates a key; returns the plaintext (to show once) and the stored row.
    pub async fn create(
        &self,
        spec: &KeySpec,
        now_ms: i64,
    ) -> Result<(GeneratedKey, ApiKeyRow), KeyError> {
        let key = self.unused_key().await?;
        let row = row_for(spec, &key, now_ms)?;
        self.insert(&row).await?;
        tracing::info!(key_prefix = %row.key_prefix, plan = %row.plan, "api key created");
        Ok((key, row))
    }

    /// Marks a key revoked (a newer row wins in `FINAL`).
    pub async fn revoke(&self, prefix: &str, now_ms: i64) -> Result<ApiKeyRow, KeyError> {
        let mut row = self
            .find(prefix)
            .await?
            .ok_or_else(|| KeyError::NotFound(prefix.to_owned()))?;
        row.status = STATUS_REVOKED;
        // The version must grow even if the clock did not move since the last change.
        row.updated_at = now_ms.max(row.updated_at + 1);
        self.insert(&row).await?;
        tracing::info!(key_prefix = %row.key_prefix, "api key revoked");
        Ok(row)
    }

    /// Revokes a key and creates its successor with the same name, plan and limits.
    pub async fn rotate(
        &self,
        prefix: &str,
        now_ms: i64,
    ) -> Result<(GeneratedKey, ApiKeyRow), KeyError> {
        let old = self
            .find(prefix)
            .await?
            .ok_or_else(|| KeyError::NotFound(prefix.to_owned()))?;
        if old.status == STATUS_REVOKED {
            // A revoked key's holder must not be able to obtain a successor through it.
            return Err(KeyError::Invalid(format!(
                "key {prefix} is revoked; create a new key instead"
            )));
        }
        let key = self.unused_key().await?;
        let mut row = old.clone();
        row.key_prefix = key.prefix.clone();
        row.key_hash = key.hash_hex.clone();
        row.status = STATUS_ACTIVE;
        row.created_at = now_ms;
        row.updated_at = now_ms;
        // The successor keeps the remaining validity of the old key.
        row.expires_at = old.expires_at;
        self.insert(&row).await?;
        self.revoke(prefix, now_ms).await?;
        tracing::info!(old_key_prefix = %old.key_prefix, key_prefix = %row.key_prefix, "api key rotated");
        Ok((key, row))
    }

    /// Stores an operator-chosen bootstrap key unless its prefix is already known (a revoked
    /// bootstrap key stays revoked across restarts).
    pub async fn ensure_bootstrap(&self, key: &str, now_ms: i64) -> Result<bool, KeyError> {
        if key.len() < MIN_BOOTSTRAP_KEY_LEN
            || key.len() > MAX_PRESENTED_KEY_LEN
            || !key.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(KeyError::Invalid(format!(
                "POLYTAPE_API_BOOTSTRAP_KEY must be {MIN_BOOTSTRAP_KEY_LEN} to {MAX_PRESENTED_KEY_LEN} printable ASCII characters without spaces; generate one with `polytape-api keys generate`"
            )));
        }
        let prefix = lookup_prefix(key);
        if self.find(&prefix).await?.is_some() {
            return Ok(false);
        }
        let row = ApiKeyRow {
            key_prefix: prefix,
            key_hash: hex::encode(hash_key(key)),
            name: "bootstrap".to_owned(),
            plan: "custom".to_owned(),
            status: STATUS_ACTIVE,
            rps: 100,
            daily_cap: 1_000_000,
            created_at: now_ms,
            expires_at: None,
            updated_at: now_ms,
        };
        self.insert(&row).await?;
        tracing::info!(key_prefix = %row.key_prefix, "bootstrap api key stored");
        Ok(true)
    }
}

/// A key as the cache holds it.
#[derive(Debug, Clone)]
struct CachedKey {
    row: ApiKeyRow,
    hash: [u8; 32],
}

/// The key a request authenticated with.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub prefix: String,
    pub rps: u32,
    pub daily_cap: u64,
}

/// Every key in memory, replaced wholesale at each refresh.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: RwLock<Arc<HashMap<String, CachedKey>>>,
}

impl KeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the cache with `rows` (the newest version of every key).
    pub fn replace(&self, rows: Vec<ApiKeyRow>) {
        let keys: HashMap<String, CachedKey> = rows
            .into_iter()
            .filter_map(|row| {
                let hash: [u8; 32] = hex::decode(&row.key_hash).ok()?.try_into().ok()?;
                Some((row.key_prefix.clone(), CachedKey { row, hash }))
            })
            .collect();
        *self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
    }

    /// Adds or replaces one key now (the replica that made a change sees it at once).
    pub fn upsert(&self, row: ApiKeyRow) {
        let Some(hash) = hex::decode(&row.key_hash)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        else {
            return;
        };
        let mut guard = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut keys = HashMap::clone(&guard);
        keys.insert(row.key_prefix.clone(), CachedKey { row, hash });
        *guard = Arc::new(keys);
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<HashMap<String, CachedKey>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Checks a presented key: unknown or wrong → 401, revoked or expired → 403.
    pub fn authenticate(&self, presented: &str, now_ms: i64) -> Result<AuthenticatedKey, ApiError> {
        if presented.is_empty() || presented.len() > MAX_PRESENTED_KEY_LEN {
            return Err(ApiError::InvalidApiKey);
        }
        let prefix = lookup_prefix(presented);
        let keys = self.snapshot();
        let Some(cached) = keys.get(&prefix) else {
            return Err(ApiError::InvalidApiKey);
        };
        // Constant-time: the time taken does not depend on how much of the hash matched.
        let presented_hash = hash_key(presented);
        if !bool::from(presented_hash.ct_eq(&cached.hash)) {
            return Err(ApiError::InvalidApiKey);
        }
        if cached.row.status == STATUS_REVOKED {
            return Err(ApiError::ApiKeyRevoked);
        }
        if cached
            .row
            .expires_at
            .is_some_and(|expires_at| expires_at <= now_ms)
        {
            return Err(ApiError::ApiKeyExpired);
        }
        Ok(AuthenticatedKey {
            prefix,
            rps: cached.row.rps,
            daily_cap: cached.row.daily_cap,
        })
    }
}

/// Constant-time equality of two secrets of any length (the admin token). Lengths are not
/// secret; contents are compared through their hashes so the work is the same either way.
pub fn secrets_equal(presented: &str, expected: &str) -> bool {
    bool::from(hash_key(presented).ct_eq(&hash_key(expected)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_carry_their_prefix_and_256_secret_bits() {
        let key = generate_key();
        assert!(key.plaintext.starts_with(&format!("{}_", key.prefix)));
        assert_eq!(lookup_prefix(&key.plaintext), key.prefix);
        assert!(is_prefix(&key.prefix));
        let secret = &key.plaintext[key.prefix.len() + 1..];
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret)
                .map(|bytes| bytes.len())
                .ok(),
            Some(32)
        );
        assert_ne!(generate_key().plaintext, key.plaintext);
        assert!(!format!("{key:?}").contains(&key.plaintext));
    }

    #[test]
    fn foreign_keys_get_a_hash_derived_prefix() {
        let prefix = lookup_prefix("operator-chosen-bootstrap-key-0123456789");
        assert!(prefix.starts_with("bs_"), "{prefix}");
        assert!(is_prefix(&prefix));
    }

    #[test]
    fn cache_distinguishes_wrong_revoked_and_expired_keys() {
        let cache = KeyCache::new();
        let key = generate_key();
        let spec = KeySpec {
            name: "t".to_owned(),
            plan: "weekly".to_owned(),
            rps: None,
            daily_cap: None,
            expires_in_ms: None,
        };
        let mut row = row_for(&spec, &key, 1_000)
            .ok()
            .unwrap_or_else(|| unreachable!());
        cache.replace(vec![row.clone()]);
        assert!(cache.authenticate(&key.plaintext, 2_000).is_ok());
        let wrong = format!("{}_{}", key.prefix, "A".repeat(43));
        assert!(matches!(
            cache.authenticate(&wrong, 2_000),
            Err(ApiError::InvalidApiKey)
        ));
        let week = 7 * 86_400_000;
        assert!(matches!(
            cache.authenticate(&key.plaintext, 1_000 + week),
            Err(ApiError::ApiKeyExpired)
        ));
        row.status = STATUS_REVOKED;
        cache.upsert(row);
        assert!(matches!(
            cache.authenticate(&key.plaintext, 2_000),
            Err(ApiError::ApiKeyRevoked)
        ));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_equal("token", "token"));
        assert!(!secrets_equal("token", "tokeN"));
        assert!(!secrets_equal("", "token"));
    }
}
