//! `arca key`: manage the passwords (key slots) of the repository.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::output::{self, print_json, Table};
use crate::repo;

const LONG_ABOUT: &str = "\
Manage the passwords that open the repository.

Each password is a key slot holding the repository's master key, sealed under a key derived from
that password. Adding or removing a password re-encrypts nothing. The current password (the one
given to this command) opens the repository; the new one comes from ARCA_NEW_PASSWORD,
--new-password-file, or a prompt.

Examples:
  arca key list
  ARCA_NEW_PASSWORD_FILE=~/.new-pass arca key add --label laptop
  arca key remove 1a2b3c4d
  arca key passwd";

/// `arca key` flags.
#[derive(Debug, Args)]
#[command(about = "Manage passwords (key slots)", long_about = LONG_ABOUT)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// The new password's sources.
#[derive(Debug, Args, Clone)]
pub struct NewPassword {
    /// Read the new password from this file (else ARCA_NEW_PASSWORD or a prompt)
    #[arg(long, env = "ARCA_NEW_PASSWORD_FILE", value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// `arca key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key slots (`*` marks the one the current password opens)
    #[command(long_about = "List the key slots: id, creating user and host, time and label. \
        The slot that the given password opens is marked with `*`.\n\nExample:\n  arca key list")]
    List,
    /// Add a new password (or, with --provider, grant the provider's recovery service)
    #[command(long_about = "Add a password: a new key slot for the same master key. Both the \
        old and the new password open the repository afterwards.\n\nWith --provider (a repository \
        on an arca server whose provider offers a recovery service): add a slot sealed to the \
        provider's public recovery key instead, so its staff can restore for you if every password \
        is lost. No password is asked; every use by the provider is audited and shown to you in the \
        portal. Remove the slot (`arca key remove`) to revoke it.\n\nExamples:\n  \
        arca key add\n  ARCA_NEW_PASSWORD=secret arca key add --label backup-server\n  arca key add --provider")]
    Add {
        #[command(flatten)]
        new: NewPassword,
        /// A free-form label stored with the slot
        #[arg(long, default_value = "")]
        label: String,
        /// Seal the slot to the provider's recovery key instead of a new password
        #[arg(long)]
        provider: bool,
    },
    /// Remove a key slot by id (prefix)
    #[command(long_about = "Remove a key slot, given its id or a unique prefix of it (see \
        `arca key list`). The slot of the password in use and the last slot cannot be removed.\n\n\
        Example:\n  arca key remove 1a2b3c4d")]
    Remove {
        /// The key slot id or a unique prefix of it
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Change the current password (add the new one, remove the old slot)
    #[command(long_about = "Change the password in use: add a key slot for the new password, \
        then remove the slot of the current one. Other passwords stay valid.\n\nExample:\n  \
        arca key passwd --new-password-file ~/.new-pass")]
    Passwd {
        #[command(flatten)]
        new: NewPassword,
        /// A free-form label stored with the new slot
        #[arg(long, default_value = "")]
        label: String,
    },
}

fn new_password(n: &NewPassword) -> Result<Vec<u8>> {
    let pw = repo::password(n.new_password_file.as_deref(), "ARCA_NEW_PASSWORD", "enter the new password: ", true)?;
    repo::check_new_password(&pw)?;
    Ok(pw)
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Runs `arca key`.
pub fn run(g: &GlobalOpts, a: &KeyArgs) -> Result<i32> {
    let opened = repo::open(g)?;
    let repo = &opened.repo;
    match &a.command {
        KeyCommand::List => {
            let current = repo.slot_for_password(&opened.password)?;
            let keys = repo.list_keys(Some(&current))?;
            if g.json {
                print_json(&keys)?;
            } else {
                let mut t = Table::new(&[" ", "ID", "User", "Host", "Created", "Label"]);
                for k in &keys {
                    t.row(vec![
                        if k.current { "*".into() } else { " ".into() },
                        short(&k.id).to_string(),
                        k.slot.username.clone(),
                        k.slot.hostname.clone(),
                        output::local_time(k.slot.created),
                        if k.slot.is_provider_slot() {
                            format!("{} (provider recovery, key {})", k.slot.label, k.slot.recipient)
                        } else {
                            k.slot.label.clone()
                        },
                    ]);
                }
                print!("{}", t.render());
            }
        }
        KeyCommand::Add { provider: true, label, .. } => {
            let location = repo::location(g)?;
            if !location.starts_with("http://") && !location.starts_with("https://") {
                bail!("--provider needs a repository on an arca server (http(s)://HOST/v1/repos/NAME)");
            }
            let token = std::env::var("ARCA_TOKEN").unwrap_or_default();
            let public = arca_store::HttpStore::new(&location, &token)
                .and_then(|s| s.provider_recovery_key())
                .context("fetching the provider's recovery key")?;
            let public: [u8; 32] = hex::decode(&public)
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("the provider's recovery key is not 32 bytes of hex")?;
            let label = if label.is_empty() { "provider recovery" } else { label.as_str() };
            let id = repo.add_provider_slot(&public, label)?;
            if g.json {
                print_json(&json!({ "message_type": "key_added", "id": id, "provider": true }))?;
            } else {
                say!(
                    g,
                    "saved provider recovery key slot {} (fingerprint {}): the provider can now restore for you; \
                     `arca key remove {}` revokes it",
                    short(&id),
                    arca_core::keys::fingerprint(&public),
                    short(&id)
                );
            }
        }
        KeyCommand::Add { new, label, .. } => {
            let pw = new_password(new)?;
            let id = repo.add_key(&pw, repo::kdf_params()?, label)?;
            if g.json {
                print_json(&json!({ "message_type": "key_added", "id": id }))?;
            } else {
                say!(g, "saved new key as {}", short(&id));
            }
        }
        KeyCommand::Remove { id } => {
            let name = repo.resolve_key(id)?;
            let current = repo.slot_for_password(&opened.password)?;
            if name == current {
                bail!("refusing to remove the key slot of the password in use (use `arca key passwd` to change it)");
            }
            repo.remove_key(&name)?;
            if g.json {
                print_json(&json!({ "message_type": "key_removed", "id": name }))?;
            } else {
                say!(g, "removed key {}", short(&name));
            }
        }
        KeyCommand::Passwd { new, label } => {
            let current = repo.slot_for_password(&opened.password)?;
            let pw = new_password(new)?;
            let id = repo.add_key(&pw, repo::kdf_params()?, label)?;
            repo.remove_key(&current)?;
            if g.json {
                print_json(&json!({ "message_type": "password_changed", "id": id, "removed": current }))?;
            } else {
                say!(g, "saved new key as {}, removed the old key {}", short(&id), short(&current));
            }
        }
    }
    Ok(crate::exit::OK)
}
