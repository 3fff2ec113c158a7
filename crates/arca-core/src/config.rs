//! The repository's plaintext configuration object (docs/format.md §"Config").
//!
//! It holds nothing secret: the server reads it to know the format version. Its parameters only
//! affect deduplication and speed; every secret lives in the master key.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Content-defined chunking parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is smaller (except a file's last).
    pub min_size: u32,
    /// The normalised average chunk size; a power of two.
    pub avg_size: u32,
    /// No chunk is larger.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min_size: 256 * 1024, avg_size: 1024 * 1024, max_size: 4 * 1024 * 1024 }
    }
}

impl ChunkerParams {
    /// Checks the parameters are usable.
    pub fn validate(&self) -> Result<()> {
        let ok = self.avg_size.is_power_of_two()
            && self.avg_size >= 256
            && self.min_size >= 64
            && self.min_size < self.avg_size
            && self.avg_size < self.max_size
            && self.max_size <= 64 * 1024 * 1024;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!("unusable chunker parameters {self:?}")))
        }
    }
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Random repository id, 64 hex digits.
    pub id: String,
    /// Chunking of file content.
    pub chunker: ChunkerParams,
    /// zstd level for blobs (blobs that do not shrink are stored raw).
    pub compression_level: i32,
    /// Target size of data packs in bytes.
    pub data_pack_size: u32,
    /// Target size of metadata (tree) packs in bytes.
    pub meta_pack_size: u32,
    /// The AEAD in use; only `aes-256-gcm` exists in version 1.
    pub cipher: String,
}

impl Config {
    /// A new configuration with a random id and default parameters.
    pub fn new() -> Self {
        Config {
            version: FORMAT_VERSION,
            id: hex::encode(crate::crypto::random_salt()),
            chunker: ChunkerParams::default(),
            compression_level: 3,
            data_pack_size: 32 * 1024 * 1024,
            meta_pack_size: 8 * 1024 * 1024,
            cipher: "aes-256-gcm".into(),
        }
    }

    /// Parses and validates the stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let config: Config = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("the repository config is damaged: {e}")))?;
        if config.version != FORMAT_VERSION {
            return Err(Error::invalid(format!(
                "repository format version {} is not supported by this arca (it reads version {FORMAT_VERSION}); upgrade arca",
                config.version
            )));
        }
        config.chunker.validate()?;
        if config.cipher != "aes-256-gcm" {
            return Err(Error::invalid(format!("unsupported cipher {:?}", config.cipher)));
        }
        if !(1024..=1 << 30).contains(&config.data_pack_size) || !(1024..=1 << 30).contains(&config.meta_pack_size) {
            return Err(Error::corrupt("the repository config has impossible pack sizes"));
        }
        Ok(config)
    }

    /// The stored form (pretty JSON, so an operator can read it).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data structs to JSON cannot fail.
        serde_json::to_vec_pretty(self).expect("config serialises")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}
