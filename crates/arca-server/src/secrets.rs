//! Secrets the server must read back (two-factor TOTP seeds), sealed at rest in the metadata
//! database with a key kept outside it.
//!
//! A copy of the database (a backup of it, a PostgreSQL replica, a stolen disk image of the
//! database host) must not hand out every user's second factor. So seeds are sealed with
//! AES-256-GCM under the server key, which lives in the object store beside the repositories
//! (`server/keys/secret-key`; a file readable by its owner only on local disk), or comes from
//! `ARCA_SERVER_SECRET` (64 hex digits) when the operator keeps it elsewhere. Every server of a
//! scale-out group reads the same key from the shared store; the first to start creates it while
//! holding the database's schema lock, so two cannot create different keys.
//!
//! Sealed values read `sealed:v1:` + hex(nonce ‖ ciphertext ‖ tag); a value without that prefix is
//! a plaintext seed from before sealing, accepted on read and sealed at the next start.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";

/// The name of the server key in the store's `server` area.
pub const KEY_OBJECT: &str = "secret-key";

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(String);

/// Seals and opens short secrets under the server key.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    /// A box under `key`.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox { key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key")) }
    }

    /// A box under a new random key (tests, and databases opened without a server key).
    pub fn ephemeral() -> SecretBox {
        Self::new(&new_key())
    }

    /// Seals `plain`; an empty value stays empty (it means "none").
    pub fn seal(&self, plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source");
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(PREFIX), &mut buf)
            .expect("sealing a short value");
        format!("{PREFIX}{}{}", hex::encode(nonce), hex::encode(buf))
    }

    /// Opens a value from [`SecretBox::seal`]; a value without the prefix is returned as it is.
    pub fn open(&self, stored: &str) -> Result<String, SealError> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = hex::decode(sealed).map_err(|_| SealError("a sealed secret is not hex".into()))?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SealError("a sealed secret is truncated".into()));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut buf = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError("bad nonce".into()))?;
        let plain = self.key.open_in_place(nonce, Aad::from(PREFIX), &mut buf).map_err(|_| {
            SealError(
                "a sealed secret does not open with this server's key: every server must use the same key \
                 (ARCA_SERVER_SECRET, or the store's server/keys/secret-key)"
                    .into(),
            )
        })?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError("a sealed secret is not text".into()))
    }

    /// Whether `stored` is sealed already.
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

/// A new random 32-byte key.
pub fn new_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).expect("the system's random source");
    key
}

/// The key from `ARCA_SERVER_SECRET`, if set; `Err` if it is set but not 64 hex digits.
pub fn key_from_env() -> Result<Option<[u8; 32]>, String> {
    match std::env::var("ARCA_SERVER_SECRET") {
        Err(_) => Ok(None),
        Ok(v) => {
            let bytes = hex::decode(v.trim()).map_err(|_| "ARCA_SERVER_SECRET must be 64 hex digits".to_string())?;
            let key: [u8; 32] =
                bytes.try_into().map_err(|_| "ARCA_SERVER_SECRET must be 64 hex digits (32 bytes)".to_string())?;
            Ok(Some(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_another_key() {
        let b = SecretBox::new(&[1; 32]);
        let sealed = b.seal("JBSWY3DPEHPK3PXP");
        assert!(SecretBox::is_sealed(&sealed) && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(b.open(&sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        assert_ne!(b.seal("x"), b.seal("x"), "a fresh nonce each time");
        assert!(SecretBox::new(&[2; 32]).open(&sealed).is_err());
        assert_eq!(b.open("LEGACYPLAINTEXT").unwrap(), "LEGACYPLAINTEXT");
        assert_eq!(b.seal(""), "");
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('0');
        assert!(b.open(&damaged).is_err() || damaged == sealed);
    }
}
