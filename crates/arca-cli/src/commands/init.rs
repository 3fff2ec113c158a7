//! `arca init`: create a repository.

use std::path::PathBuf;

use anyhow::{Context, Result};
use arca_core::config::Config;
use arca_core::repository::Repository;
use clap::Args;
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::output::print_json;
use crate::repo;

const LONG_ABOUT: &str = "\
Create a new, empty repository at the location given by -r/--repo (or ARCA_REPOSITORY).

The repository is protected by a password, asked for twice on the terminal unless ARCA_PASSWORD
or --password-file gives it. Everything in the repository is encrypted with a key that only this
password (or other passwords added later with `arca key add`) can unlock: losing every password
means losing the data.

With --copy-key-from, the new repository uses the same master key and chunking parameters as an
existing one, so `arca copy` between them moves packs without re-encrypting or re-chunking.

The environment variables ARCA_KDF_MEMORY_KIB and ARCA_KDF_ITERATIONS lower the password hashing
cost. They exist for tests only: never use them for a real repository.

Examples:
  arca -r /srv/backup init
  arca -r /mnt/usb/backup init --copy-key-from /srv/backup --from-password-file ~/.arca-pass";

/// `arca init` flags.
#[derive(Debug, Args)]
#[command(about = "Create a new repository", long_about = LONG_ABOUT)]
pub struct InitArgs {
    /// Use the master key (and chunking parameters) of this existing repository
    #[arg(long, value_name = "REPOSITORY")]
    pub copy_key_from: Option<String>,

    /// Password file of the --copy-key-from repository (else ARCA_FROM_PASSWORD or a prompt)
    #[arg(long, env = "ARCA_FROM_PASSWORD_FILE", value_name = "FILE", requires = "copy_key_from")]
    pub from_password_file: Option<PathBuf>,
}

/// Runs `arca init`.
pub fn run(g: &GlobalOpts, a: &InitArgs) -> Result<i32> {
    let loc = repo::location(g)?;
    let store = repo::store_for(&loc)?;
    if store.exists()? {
        return Err(arca_core::Error::new(
            arca_core::ErrorKind::AlreadyExists,
            format!("a repository already exists at {loc}"),
        )
        .into());
    }
    let kdf = repo::kdf_params()?;
    let mut config = Config::new();
    let source = match &a.copy_key_from {
        Some(from) => {
            let opened = repo::open_at(
                from,
                a.from_password_file.as_deref(),
                "ARCA_FROM_PASSWORD",
                &format!("enter password for the source repository {from}: "),
            )
            .with_context(|| format!("opening the repository {from} to copy its key"))?;
            config.chunker = opened.repo.config().chunker;
            Some(opened)
        }
        None => None,
    };
    let password = repo::password(
        g.password_file.as_deref(),
        "ARCA_PASSWORD",
        &format!("enter a password for the new repository {loc}: "),
        true,
    )?;
    repo::check_new_password(&password)?;
    let created = match &source {
        Some(src) => {
            let key = (**src.repo.key()).clone();
            Repository::init_with_key(store, &password, kdf, config, key)?
        }
        None => Repository::init(store, &password, kdf, config)?,
    };
    let id = created.config().id.clone();
    if g.json {
        print_json(&json!({
            "message_type": "initialized",
            "id": id,
            "repository": loc,
            "copied_key_from": a.copy_key_from,
        }))?;
    } else if !g.quiet {
        println!("created arca repository {id} at {loc}");
        if let Some(from) = &a.copy_key_from {
            println!("it shares its master key with {from}, so `arca copy` between them needs no re-encryption");
        }
        println!();
        println!("Please note that knowledge of your password is required to access the repository.");
        println!("Losing your password means that your data is irrecoverably lost.");
    }
    Ok(crate::exit::OK)
}
