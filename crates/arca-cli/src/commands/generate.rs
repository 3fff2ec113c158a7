//! `arca generate`: man pages and shell completions, made from the same clap grammar that parses
//! the command line, so they can never describe flags the binary does not have.
//!
//! Packagers run it at build time (`packaging/build-deb.sh`); nothing here touches a repository.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Subcommand};
use clap_complete::Shell;

use crate::cli::{Cli, GlobalOpts};

const ABOUT: &str = "\
Write the man pages or a shell's completion script for arca, generated from the command line's
own grammar (the text of every page is the command's --help).

Distribution packages run this at build time; `packaging/build-deb.sh` installs the results
under /usr/share/man/man1/ and the shells' completion folders.

Examples:
  arca generate man --out target/man               # arca.1, arca-backup.1, arca-admin-tenant.1, ...
  arca generate completions bash > /usr/share/bash-completion/completions/arca
  arca generate completions zsh > /usr/share/zsh/vendor-completions/_arca
  arca generate completions fish > /usr/share/fish/vendor_completions.d/arca.fish";

/// `arca generate`.
#[derive(Debug, Args)]
#[command(about = "Write man pages or shell completions (for packagers)", long_about = ABOUT)]
pub struct GenerateArgs {
    /// What to generate.
    #[command(subcommand)]
    pub what: GenerateCommand,
}

/// What `arca generate` writes.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write one man page (section 1, roff) per command and subcommand into a directory: arca.1,
    /// arca-backup.1, arca-appliance-status.1, ...
    Man {
        /// The directory to write the pages into (created if missing; pages already there are
        /// replaced). The pages are not compressed: packagers gzip them
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the completion script for a shell on standard output
    Completions {
        /// The shell to complete for (bash, zsh and fish are what the Debian package installs)
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
}

/// Runs `arca generate`.
pub fn run(g: &GlobalOpts, a: &GenerateArgs) -> Result<i32> {
    match &a.what {
        GenerateCommand::Man { out } => {
            let pages = man_pages(out)?;
            if g.json {
                crate::output::print_json(&serde_json::json!({
                    "message_type": "man_pages",
                    "dir": out,
                    "pages": pages,
                }))?;
            } else {
                say!(g, "wrote {} man pages to {}", pages.len(), out.display());
            }
        }
        GenerateCommand::Completions { shell } => {
            // Rendered into memory first: clap_complete panics on a failed write, and a closed
            // standard output (`arca generate completions bash | head`) must not be a panic.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "arca", &mut script);
            let mut stdout = crate::output::stdout();
            stdout.write_all(&script).context("writing the completion script")?;
            stdout.flush().context("writing the completion script")?;
        }
    }
    Ok(crate::exit::OK)
}

/// Writes a page for `arca` and for every visible subcommand at any depth; returns the file names,
/// parents after their children (the order of the walk).
fn man_pages(out: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating the man page directory {}", out.display()))?;
    // `help` is a subcommand clap adds to every command with subcommands; it has no page of its own
    // worth reading (each page already is the help). `build` names each subcommand `arca-backup`
    // etc. (its display name), which becomes the page's name and title.
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    write_pages(&root, out, &mut pages)?;
    Ok(pages)
}

fn write_pages(cmd: &clap::Command, out: &Path, pages: &mut Vec<String>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, out, pages)?;
    }
    // The footer names the program and its version, not the subcommand (clap_mangen's default).
    let man =
        clap_mangen::Man::new(cmd.clone()).source(format!("arca {}", env!("CARGO_PKG_VERSION"))).manual("arca manual");
    let name = man.get_filename();
    man.generate_to(out).with_context(|| format!("writing the man page {}", out.join(&name).display()))?;
    pages.push(name);
    Ok(())
}
