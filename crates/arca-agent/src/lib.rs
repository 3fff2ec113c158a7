//! The managed backup agent: a customer's machine enrolled once with a one-time code, then run
//! from the provider's console.
//!
//! `arca agent run` is a long-running service. It holds a configuration poll open on the server
//! (outbound HTTPS only, so it works through NAT and proxies) and learns its protection plan and
//! the console's jobs from it; it runs the plan's backup on schedule (each agent at an offset of
//! its own inside the plan's start window), catches up after sleep or downtime, never runs two
//! backups at once, and reports every run's start, progress and end.
//!
//! Backups and restores run as child processes of the same `arca` binary (`arca backup
//! --progress-json`): a crash or a killed backup leaves the agent running, the repository's own
//! guarantees (nothing acknowledged is lost, a half-finished backup leaves only unreferenced
//! packs) cover the interrupted run, and the child dies with the agent ([`platform`]).
//!
//! The repository password is the customer's: it is kept in the agent's root-only configuration
//! file and passed to the child in its environment; it never goes to the server.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod client;
pub mod config;
pub mod error;
pub mod local_state;
pub mod platform;
pub mod runner;
pub mod service;
pub mod timetable;

pub use config::AgentFile;
pub use error::{Error, Result};
pub use service::Agent;
