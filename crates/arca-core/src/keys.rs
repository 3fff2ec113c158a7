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

impl KeySlot {
    /// Wraps `master` under `password`.
    pub fn seal(master: &MasterKey, password: &[u8], params: KdfParams, label: &str) -> Result<KeySlot> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let kek = derive_kek(password, &salt, params)?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kek).expect("32-byte key"));
        let mut buf = master.secret().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(SLOT_AAD), &mut buf)
            .expect("small message");
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
        })
    }

    /// Unwraps the master key with `password`: `Ok(None)` if the password does not fit this slot.
    pub fn open(&self, password: &[u8]) -> Result<Option<MasterKey>> {
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("unsupported key slot (version {}, kdf {})", self.version, self.kdf),
            ));
        }
        let bad = |what: &str| Error::corrupt(format!("key slot field {what} is damaged"));
        let salt = b64().decode(&self.salt).map_err(|_| bad("salt"))?;
        let nonce: [u8; 12] =
            b64().decode(&self.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(|| bad("nonce"))?;
        let mut sealed = b64().decode(&self.sealed).map_err(|_| bad("sealed"))?;
        let kek = derive_kek(password, &salt, self.params)?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kek).expect("32-byte key"));
        match key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(SLOT_AAD), &mut sealed) {
            Ok(plain) if plain.len() == 32 => {
                let secret: [u8; 32] = plain[..32].try_into().expect("length checked");
                Ok(Some(MasterKey::from_secret(secret)))
            }
            Ok(_) => Err(bad("sealed")),
            Err(_) => Ok(None),
        }
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
}
