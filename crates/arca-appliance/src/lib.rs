//! The arca office appliance: one process on a machine in the customer's office that
//!
//! - serves folders as WebDAV shares to the office, with users of its own ([`share`], [`users`]);
//! - snapshots each share on a cron schedule into a local arca repository and applies its
//!   retention policy ([`schedule`], [`snapshot`]);
//! - serves the same folders over SMB through Samba, snapshots as Windows Previous Versions
//!   ([`smb`], [`versions_mount`]);
//! - shows every snapshot read-only as "previous versions" inside the share, under
//!   `/.snapshots/<time>/` ([`snapshots_fs`], [`catalog`]);
//! - replicates the repository to the tenant's repository at the provider, byte for byte,
//!   resumable, throttled and verified ([`replicate`], [`throttle`]);
//! - offers a local backup target to the office's machines, the provider's hosting API in-process
//!   ([`target`]);
//! - reports what it does on a status page ([`status`]), and offers a local admin page
//!   ([`admin`]) to take snapshots and manage users;
//! - serves everything over HTTPS when configured ([`tls`]);
//! - after a disaster, pulls the repository back from the provider and restores the shares
//!   ([`recover`]).
//!
//! The configuration is one TOML file ([`config`]); [`start`] runs everything it names.
#![warn(missing_docs)]

pub mod admin;
mod app;
pub mod catalog;
pub mod config;
pub mod drill;
mod error;
mod files;
pub mod managed;
pub mod recover;
pub mod replicate;
pub mod schedule;
pub mod share;
pub mod smb;
pub mod snapshot;
pub mod snapshots_fs;
pub mod status;
pub mod target;
pub mod throttle;
pub mod tls;
pub mod users;
pub mod versions_mount;

pub use app::{start, Running};
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use users::{hash_password, nt_hash};
