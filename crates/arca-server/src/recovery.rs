//! The recovery service: a customer who opts in lets provider staff restore for them.
//!
//! - The provider makes one X25519 key pair (`arca admin recovery-key --create`); the private half is
//!   kept only sealed under a recovery passphrase (Argon2id, as a repository key slot), so the
//!   database alone opens nothing and every use needs a person who knows the passphrase.
//! - A customer grants access to one repository from the portal (after unlocking it with the
//!   repository password) or with `arca key add --provider`: a key slot sealed to the provider's
//!   public key is added beside the password slots (docs/format.md §"Keys"). Revoking deletes it.
//! - Provider staff restoring for the customer type the recovery passphrase; the server unseals
//!   the private key, opens the repository's provider slot with it, and holds the repository key
//!   in that staff session's memory only, as for a customer's own unlock.
//! - Every grant, revocation, staff unlock and staff download is audited under the customer's
//!   tenant and shown to the customer on the repository's restore page.

use arca_core::crypto::MasterKey;
use arca_core::keys::{fingerprint, KdfParams, KeySlot};
use arca_store::{ObjectKind, Store};

use crate::db::accounts::Repository;
use crate::db::catalog::NewObject;
use crate::db::DbError;
use crate::state::AppState;

/// How audit details of staff actions with the recovery key begin (the customer's trail finds
/// them by it).
pub const TRAIL_MARK: &str = "provider recovery";

/// Errors of the recovery service.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The provider has not made a recovery key.
    #[error("the provider has no recovery key yet (`arca admin recovery-key --create`)")]
    NoKey,
    /// The passphrase does not open the provider's recovery key.
    #[error("that is not the recovery passphrase")]
    WrongPassphrase,
    /// The repository has no slot for the provider's key.
    #[error("the customer has not granted recovery access to this repository")]
    NotGranted,
    /// Something stored is damaged or unreadable.
    #[error("{0}")]
    Engine(#[from] arca_core::Error),
    /// The object store failed.
    #[error("{0}")]
    Store(#[from] arca_store::Error),
    /// The database failed.
    #[error("{0}")]
    Db(#[from] DbError),
}

/// The provider's public recovery key and its fingerprint, if one was made.
pub async fn public_key(state: &AppState) -> Result<Option<([u8; 32], String)>, RecoveryError> {
    let Some(k) = state.db().recovery_key().await? else { return Ok(None) };
    let public = decode_public(&k.public_key)?;
    Ok(Some((public, fingerprint(&public))))
}

fn decode_public(hex_key: &str) -> Result<[u8; 32], RecoveryError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| RecoveryError::Engine(arca_core::Error::corrupt("the stored recovery public key is damaged")))
}

/// Makes the provider's recovery key pair, its private half sealed under `passphrase` with
/// `kdf`. Returns the public key's fingerprint.
pub async fn create_key(
    state: &AppState,
    passphrase: &str,
    kdf: KdfParams,
    actor: &str,
) -> Result<String, RecoveryError> {
    let passphrase = passphrase.as_bytes().to_vec();
    let (public, sealed) = tokio::task::spawn_blocking(move || {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        let slot = KeySlot::seal_secret(&secret.to_bytes(), &passphrase, kdf, "provider recovery key")?;
        Ok::<_, arca_core::Error>((public, slot.to_bytes()))
    })
    .await
    .map_err(|e| RecoveryError::Engine(arca_core::Error::invalid(format!("key generation failed: {e}"))))??;
    let sealed = String::from_utf8(sealed).expect("key slots are JSON");
    state.db().create_recovery_key(&hex::encode(public), &sealed, actor).await?;
    Ok(fingerprint(&public))
}

/// The provider slots of a repository (sealed to the provider's current key), by object name.
pub fn grants(store: &dyn Store, fingerprint: &str) -> Result<Vec<(String, KeySlot)>, RecoveryError> {
    let mut out = Vec::new();
    for info in store.list(ObjectKind::Key)? {
        let Ok(slot) = store
            .get(ObjectKind::Key, &info.name)
            .map_err(arca_core::Error::from)
            .and_then(|b| KeySlot::from_bytes(&b))
        else {
            continue;
        };
        if slot.is_provider_slot() && slot.recipient == fingerprint {
            out.push((info.name, slot));
        }
    }
    Ok(out)
}

/// The repository's provider grants, read off the async threads.
pub async fn repo_grants(state: &AppState, repo: &Repository) -> Result<Vec<(String, KeySlot)>, RecoveryError> {
    let Some((_, fp)) = public_key(state).await? else { return Ok(Vec::new()) };
    grants_for(state, repo, fp).await
}

/// The repository's slots sealed to the key with fingerprint `fp`, read off the async threads.
pub async fn grants_for(
    state: &AppState,
    repo: &Repository,
    fp: String,
) -> Result<Vec<(String, KeySlot)>, RecoveryError> {
    let store = state.store(&repo.name);
    tokio::task::spawn_blocking(move || grants(store.as_ref(), &fp))
        .await
        .map_err(|e| RecoveryError::Engine(arca_core::Error::invalid(format!("reading key slots failed: {e}"))))?
}

/// Adds a slot sealed to the provider's key, wrapping `master` (the customer's unlocked key).
/// Idempotent: an existing grant stays as it is.
pub async fn grant(state: &AppState, repo: &Repository, master: &MasterKey) -> Result<(), RecoveryError> {
    let (public, fp) = public_key(state).await?.ok_or(RecoveryError::NoKey)?;
    if !grants_for(state, repo, fp).await?.is_empty() {
        return Ok(());
    }
    let bytes = KeySlot::seal_to_provider(master, &public, "provider recovery").to_bytes();
    let name = hex::encode(arca_core::id::content_hash(&bytes));
    let store = state.store(&repo.name);
    let (n, b) = (name.clone(), bytes.clone());
    tokio::task::spawn_blocking(move || store.put(ObjectKind::Key, &n, &b))
        .await
        .map_err(|e| RecoveryError::Engine(arca_core::Error::invalid(format!("storing the slot failed: {e}"))))??;
    let object = NewObject {
        kind: ObjectKind::Key.dir(),
        name: &name,
        size: bytes.len() as i64,
        packs: &[],
        ingress: 0,
        logical: 0,
    };
    state.db().commit_object(repo, None, &object).await?;
    Ok(())
}

/// Removes the repository's provider slots. Returns how many went.
pub async fn revoke(state: &AppState, repo: &Repository) -> Result<usize, RecoveryError> {
    let grants = repo_grants(state, repo).await?;
    for (name, _) in &grants {
        state.db().remove_object(repo, ObjectKind::Key.dir(), name).await?;
        let store = state.store(&repo.name);
        let n = name.clone();
        tokio::task::spawn_blocking(move || store.delete(ObjectKind::Key, &n)).await.map_err(|e| {
            RecoveryError::Engine(arca_core::Error::invalid(format!("deleting the slot failed: {e}")))
        })??;
    }
    Ok(grants.len())
}

/// Opens repository `repo` with the provider's recovery key, unsealed with `passphrase`
/// (blocking: Argon2id, then the slot).
pub async fn open_as_provider(
    state: &AppState,
    repo: &Repository,
    passphrase: &str,
) -> Result<MasterKey, RecoveryError> {
    let key = state.db().recovery_key().await?.ok_or(RecoveryError::NoKey)?;
    let grants = grants_for(state, repo, fingerprint(&decode_public(&key.public_key)?)).await?;
    if grants.is_empty() {
        return Err(RecoveryError::NotGranted);
    }
    let passphrase = passphrase.as_bytes().to_vec();
    tokio::task::spawn_blocking(move || {
        let sealed = KeySlot::from_bytes(key.sealed_private.as_bytes())?;
        let Some(private) = sealed.open_secret(&passphrase)? else {
            return Err(RecoveryError::WrongPassphrase);
        };
        for (_, slot) in grants {
            if let Some(master) = slot.open_as_provider(&private)? {
                return Ok(master);
            }
        }
        Err(RecoveryError::NotGranted)
    })
    .await
    .map_err(|e| RecoveryError::Engine(arca_core::Error::invalid(format!("unlocking failed: {e}"))))?
}
