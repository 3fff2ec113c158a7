//! Key slots: the master secret wrapped under keys derived from passwords (docs/format.md §"Keys").
//!
//! Each slot is a small JSON object under `keys/`, named by the BLAKE3 of its bytes. Opening a
//! repository tries every slot with the given password; adding a password adds a slot; removing
//! one deletes its slot. The master secret never changes, so no data is re-encrypted.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};

const SLOT_AAD: &[u8] = b"arca key slot v1";

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about 0.1 s on the reference machine (OWASP's first choice).
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

/// One stored key slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySlot {
    /// Slot format version (1).
    pub version: u32,
    /// Always `argon2id` in version 1.
    pub kdf: String,
    /// The KDF's cost.
    pub params: KdfParams,
    /// KDF salt, base64.
    pub salt: String,
    /// AES-256-GCM nonce, base64.
    pub nonce: String,
    /// The sealed master secret, base64.
    pub sealed: String,
    /// When the slot was made.
    pub created: DateTime<Utc>,
    /// Host that made it.
    pub hostname: String,
    /// User that made it.
    pub username: String,
    /// Free-form label (`--label`).
    #[serde(default)]
    pub label: String,
    /// For a provider recovery slot (`kdf` = `x25519`): the fingerprint of the provider's public
    /// key it is sealed to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recipient: String,
}

/// `kdf` of a slot sealed to a provider's X25519 public key instead of a password.
pub const PROVIDER_SLOT: &str = "x25519";
const PROVIDER_AAD: &[u8] = b"arca provider recovery slot v1";

/// The fingerprint of a provider recovery public key, as slots and pages show it.
pub fn fingerprint(public: &[u8; 32]) -> String {
    blake3::derive_key("arca provider recovery key fingerprint v1", public)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The AES-256-GCM key of a provider slot: BLAKE3 key derivation from the X25519 shared secret,
/// bound to both public keys.
fn provider_kek(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut input = Vec::with_capacity(96);
    input.extend_from_slice(shared);
    input.extend_from_slice(ephemeral);
    input.extend_from_slice(recipient);
    blake3::derive_key("arca provider recovery slot v1 key", &input)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn derive_kek(password: &[u8], salt: &[u8], params: KdfParams) -> Result<[u8; 32]> {
    let p = Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|e| Error::corrupt(format!("key slot has unusable KDF parameters: {e}")))?;
    if params.memory_kib > 4 * 1024 * 1024 || params.iterations > 100 {
        return Err(Error::corrupt("key slot asks for an unreasonable KDF cost (refusing to run it)"));
    }
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::invalid(format!("password hashing failed: {e}")))?;
    Ok(out)
}

/// Seals a 32-byte secret under `kek` with a fresh random nonce: the nonce, and the ciphertext
/// followed by the tag (both slot kinds use it; they differ in `kek` and `aad`).
fn seal_32(kek: &[u8; 32], aad: &'static [u8], secret: &[u8; 32]) -> ([u8; 12], Vec<u8>) {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
    let mut buf = secret.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf).expect("small message");
    (nonce, buf)
}

impl KeySlot {
    /// Wraps `master` under `password`.
    pub fn seal(master: &MasterKey, password: &[u8], params: KdfParams, label: &str) -> Result<KeySlot> {
        Self::seal_secret(master.secret(), password, params, label)
    }

    /// Wraps any 32-byte secret under `password` (the master secret; a provider's recovery
    /// private key at rest).
    pub fn seal_secret(secret: &[u8; 32], password: &[u8], params: KdfParams, label: &str) -> Result<KeySlot> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kek = derive_kek(password, &salt, params)?;
        let (nonce, buf) = seal_32(&kek, SLOT_AAD, secret);
        Ok(KeySlot {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: b64().encode(salt),
            nonce: b64().encode(nonce),
            sealed: b64().encode(buf),
            created: Utc::now(),
            hostname: crate::sys::hostname(),
            username: crate::sys::username(),
            label: label.to_string(),
            recipient: String::new(),
        })
    }

    /// Seals `master` to a provider's X25519 public key (ECIES: an ephemeral key pair, the shared
    /// secret through BLAKE3 key derivation, AES-256-GCM). Only the holder of the matching private
    /// key opens it; no password does.
    pub fn seal_to_provider(master: &MasterKey, provider_public: &[u8; 32], label: &str) -> KeySlot {
        let ephemeral = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral).to_bytes();
        let shared = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(*provider_public));
        let kek = provider_kek(shared.as_bytes(), &ephemeral_public, provider_public);
        let (nonce, buf) = seal_32(&kek, PROVIDER_AAD, master.secret());
        KeySlot {
            version: 1,
            kdf: PROVIDER_SLOT.into(),
            params: KdfParams { memory_kib: 0, iterations: 0, parallelism: 0 },
            salt: b64().encode(ephemeral_public),
            nonce: b64().encode(nonce),
            sealed: b64().encode(buf),
            created: Utc::now(),
            hostname: crate::sys::hostname(),
            username: crate::sys::username(),
            label: label.to_string(),
            recipient: fingerprint(provider_public),
        }
    }

    /// Whether this slot is sealed to a provider's key (opened by [`KeySlot::open_as_provider`],
    /// never by a password).
    pub fn is_provider_slot(&self) -> bool {
        self.kdf == PROVIDER_SLOT
    }

    /// Opens a provider slot with the provider's private key: `Ok(None)` if it was sealed to
    /// another key.
    pub fn open_as_provider(&self, provider_private: &[u8; 32]) -> Result<Option<MasterKey>> {
        if !self.is_provider_slot() {
            return Ok(None);
        }
        let bad = |what: &str| Error::corrupt(format!("provider key slot field {what} is damaged"));
        let secret = x25519_dalek::StaticSecret::from(*provider_private);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        if fingerprint(&public) != self.recipient {
            return Ok(None);
        }
        let ephemeral: [u8; 32] =
            b64().decode(&self.salt).ok().and_then(|n| n.try_into().ok()).ok_or_else(|| bad("salt"))?;
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(ephemeral));
        let kek = provider_kek(shared.as_bytes(), &ephemeral, &public);
        // The slot names this key as its recipient: a tag mismatch is damage, not another key.
        match self.open_32(&kek, PROVIDER_AAD, bad)? {
            Some(plain) => Ok(Some(MasterKey::from_secret(plain))),
            None => Err(bad("sealed")),
        }
    }

    /// Opens `nonce` and `sealed` under `kek`: `Ok(None)` on a tag mismatch (the key does not
    /// fit); undecodable fields or a plaintext that is not 32 bytes are damage.
    fn open_32(&self, kek: &[u8; 32], aad: &'static [u8], bad: impl Fn(&str) -> Error) -> Result<Option<[u8; 32]>> {
        let nonce: [u8; 12] =
            b64().decode(&self.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(|| bad("nonce"))?;
        let mut sealed = b64().decode(&self.sealed).map_err(|_| bad("sealed"))?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
        match key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed) {
            Ok(plain) if plain.len() == 32 => Ok(Some(plain[..32].try_into().expect("length checked"))),
            Ok(_) => Err(bad("sealed")),
            Err(_) => Ok(None),
        }
    }

    /// Unwraps the master key with `password`: `Ok(None)` if the password does not fit this slot
    /// (a provider slot never fits a password).
    pub fn open(&self, password: &[u8]) -> Result<Option<MasterKey>> {
        Ok(self.open_secret(password)?.map(MasterKey::from_secret))
    }

    /// Unwraps the 32-byte secret with `password` (see [`KeySlot::seal_secret`]).
    pub fn open_secret(&self, password: &[u8]) -> Result<Option<[u8; 32]>> {
        if self.is_provider_slot() {
            return Ok(None);
        }
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("unsupported key slot (version {}, kdf {})", self.version, self.kdf),
            ));
        }
        let bad = |what: &str| Error::corrupt(format!("key slot field {what} is damaged"));
        let salt = b64().decode(&self.salt).map_err(|_| bad("salt"))?;
        let kek = derive_kek(password, &salt, self.params)?;
        self.open_32(&kek, SLOT_AAD, bad)
    }

    /// Stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key slot serialises")
    }

    /// Parses a stored slot.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeySlot> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("key slot is damaged: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    #[test]
    fn right_password_opens_wrong_does_not() {
        let master = MasterKey::generate();
        let slot = KeySlot::seal(&master, b"secret", cheap(), "").unwrap();
        let bytes = slot.to_bytes();
        let slot = KeySlot::from_bytes(&bytes).unwrap();
        let opened = slot.open(b"secret").unwrap().unwrap();
        assert_eq!(opened.blob_id(b"a"), master.blob_id(b"a"));
        assert!(slot.open(b"Secret").unwrap().is_none());
    }

    #[test]
    fn a_provider_slot_opens_with_the_provider_key_only() {
        let master = MasterKey::generate();
        let provider = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let public = x25519_dalek::PublicKey::from(&provider).to_bytes();
        let slot = KeySlot::from_bytes(&KeySlot::seal_to_provider(&master, &public, "recovery").to_bytes()).unwrap();
        assert!(slot.is_provider_slot() && slot.recipient == fingerprint(&public));
        let opened = slot.open_as_provider(&provider.to_bytes()).unwrap().unwrap();
        assert_eq!(opened.blob_id(b"a"), master.blob_id(b"a"));
        // No password opens it, and another provider's key is not even tried.
        assert!(slot.open(b"").unwrap().is_none());
        let other = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        assert!(slot.open_as_provider(&other.to_bytes()).unwrap().is_none());
        // A tampered slot is damage, not a silent miss.
        let mut bad = slot.clone();
        let mut sealed = b64().decode(&bad.sealed).unwrap();
        sealed[0] ^= 1;
        bad.sealed = b64().encode(sealed);
        assert!(bad.open_as_provider(&provider.to_bytes()).is_err());
        // A password slot is never a provider slot.
        let pw = KeySlot::seal(&master, b"pw", cheap(), "").unwrap();
        assert!(pw.open_as_provider(&provider.to_bytes()).unwrap().is_none());
    }

    #[test]
    fn any_secret_seals_under_a_password() {
        let secret = [7u8; 32];
        let slot = KeySlot::seal_secret(&secret, b"passphrase", cheap(), "recovery key").unwrap();
        assert_eq!(slot.open_secret(b"passphrase").unwrap(), Some(secret));
        assert_eq!(slot.open_secret(b"wrong").unwrap(), None);
    }
}
