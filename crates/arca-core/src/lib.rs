//! The arca repository and the engines over it.
//!
//! Layers, bottom up (each module names the `docs/format.md` section it implements):
//! - [`id`], [`crypto`], [`keys`], [`config`]: identifiers, keys, the plaintext config;
//! - [`chunker`], [`pack`], [`envelope`], [`index`], [`tree`], [`snapshot`]: the stored formats;
//! - [`repository`]: an opened repository (store + key + index) with typed reads and writes;
//! - [`browse`], [`archive`]: paths inside snapshots, a file's bytes, directories as tar or zip;
//! - engines: [`backup`], [`restore`], [`check`], [`forget`], [`prune`], [`copy`], [`image`], [`drill`];
//! - [`reader`]: random access to one stored file through a bounded blob cache (NBD, mount).
//!
//! This crate never speaks HTTP and never touches a database: the server and the appliance build
//! on it, not the other way round.
#![warn(missing_docs)]

pub mod archive;
pub mod backup;
pub mod browse;
pub mod check;
pub mod chunker;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod drill;
pub mod envelope;
mod error;
pub mod forget;
pub mod fsmeta;
pub mod id;
pub mod image;
pub mod index;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod packer;
pub mod pending;
pub mod prune;
pub mod qcow2;
pub mod reader;
pub mod repair;
pub mod repository;
pub mod restore;
pub mod snapshot;
pub mod stats;
pub mod sys;
pub mod throttle;
pub mod tree;
pub mod units;
pub mod walk;

pub use error::{Error, ErrorKind, Result};
