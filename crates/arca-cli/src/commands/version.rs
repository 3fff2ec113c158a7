//! `arca version`.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::output::print_json;

/// `arca version` flags.
#[derive(Debug, Args)]
#[command(
    about = "Print version information",
    long_about = "Print the version of arca and the platform it was built for.\n\n\
                  Examples:\n  arca version\n  arca version --json"
)]
pub struct VersionArgs {}

/// Runs `arca version`.
pub fn run(g: &GlobalOpts, _a: &VersionArgs) -> Result<i32> {
    let version = env!("CARGO_PKG_VERSION");
    if g.json {
        print_json(&json!({
            "message_type": "version",
            "version": version,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        }))?;
    } else {
        println!("arca {version} on {}/{}", std::env::consts::OS, std::env::consts::ARCH);
    }
    Ok(crate::exit::OK)
}
