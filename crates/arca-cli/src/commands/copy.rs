//! `arca copy`: copy snapshots to another repository.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json};
use crate::repo;

const LONG_ABOUT: &str = "\
Copy snapshots, with all the data they need, from the repository (-r/--repo) to another one
(--to). Snapshots already in the destination are skipped, and data the destination already has is
not copied again, so running copy repeatedly keeps a second repository up to date.

When the destination was created with `arca init --copy-key-from SOURCE`, packs are copied
verbatim, without decrypting or re-chunking anything. The destination password comes from
ARCA_TO_PASSWORD, --to-password-file, or a prompt.

Examples:
  arca -r /srv/backup copy --to /mnt/usb/backup
  arca copy latest --to /mnt/offsite --to-password-file ~/.offsite-pass";

/// `arca copy` flags.
#[derive(Debug, Args)]
#[command(about = "Copy snapshots to another repository", long_about = LONG_ABOUT)]
pub struct CopyArgs {
    /// Snapshots to copy (ids or `latest`; default: all passing the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,

    /// The destination repository
    #[arg(long, env = "ARCA_TO_REPOSITORY", value_name = "REPOSITORY")]
    pub to: String,

    /// Password file of the destination (else ARCA_TO_PASSWORD or a prompt)
    #[arg(long, env = "ARCA_TO_PASSWORD_FILE", value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `arca copy`.
pub fn run(g: &GlobalOpts, a: &CopyArgs) -> Result<i32> {
    let mut src = repo::open(g)?;
    let mut dst = repo::open_at(
        &a.to,
        a.to_password_file.as_deref(),
        "ARCA_TO_PASSWORD",
        &format!("enter password for the destination repository {}: ", a.to),
    )
    .with_context(|| format!("opening the destination repository {}", a.to))?;
    let ids: Vec<_> =
        super::snapshots_or_all(&src.repo, &a.snapshots, &a.filter)?.into_iter().map(|(id, _)| id).collect();
    say!(g, "copying {} snapshots to {}", ids.len(), a.to);
    let report = arca_core::copy::copy_snapshots(&mut src.repo, &mut dst.repo, &ids)?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "copy".into();
        print_json(&v)?;
    } else if !g.quiet {
        println!(
            "copied {} snapshots ({} were already there), {} packs ({})",
            report.snapshots_copied,
            report.snapshots_skipped,
            report.packs_copied,
            output::bytes(report.bytes_copied)
        );
    }
    Ok(crate::exit::OK)
}
