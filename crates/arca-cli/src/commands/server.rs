//! `arca server`: host repositories for `arca` clients over HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arca_server::auth::{hash_token, new_token};
use arca_server::{AppState, FileTokenStore};
use clap::Args;

use crate::cli::GlobalOpts;

const LONG_ABOUT: &str = "\
Serve repositories to arca clients over HTTP (the repository hosting API, /v1/repos/REPO/...).

Repositories live under DATA_DIR/repos/REPO/. Every request needs a bearer token listed in the
token file, stored as the BLAKE3 hash of the token (`arca server --new-token` makes a token and
prints its hash; `arca server --hash-token < FILE` hashes an existing one):

  [[token]]
  hash = \"<64 hex digits>\"
  repo = \"acme\"
  role = \"device\"      # read, add objects; never delete (except its own locks) or overwrite

  [[token]]
  hash = \"<64 hex digits>\"
  role = \"admin\"       # everything, in every repository

Clients use it with `arca -r http://HOST:PORT/v1/repos/REPO` and the token in ARCA_TOKEN; the
first `arca init` creates the repository.

This build speaks plain HTTP only: TLS is a later step. Until then, listen on loopback or put the
server behind a TLS-terminating reverse proxy; never send tokens over an untrusted network.

SIGINT or SIGTERM stops the server after the requests in flight have finished. The log (standard
error) has one line per request with its request id, which internal errors also show the client.

Example:
  arca server --listen 127.0.0.1:8420 --data-dir /srv/arca --tokens /etc/arca/tokens.toml";

/// `arca server` flags.
#[derive(Debug, Args)]
#[command(about = "Serve repositories over HTTP (plain HTTP for now; TLS is a later step)", long_about = LONG_ABOUT)]
pub struct ServerArgs {
    /// Address and port to listen on (port 0 picks a free one; the address is printed)
    #[arg(long, env = "ARCA_LISTEN", default_value = "127.0.0.1:8420", value_name = "ADDR:PORT")]
    pub listen: String,

    /// Directory holding the repositories (DIR/repos/REPO)
    #[arg(long, env = "ARCA_DATA_DIR", value_name = "DIR", required_unless_present_any = ["new_token", "hash_token"])]
    pub data_dir: Option<PathBuf>,

    /// TOML file of hashed tokens (see above)
    #[arg(long, env = "ARCA_TOKENS_FILE", value_name = "FILE", required_unless_present_any = ["new_token", "hash_token"])]
    pub tokens: Option<PathBuf>,

    /// Print a new random token and the hash to put in the token file, then exit
    #[arg(long, conflicts_with = "hash_token")]
    pub new_token: bool,

    /// Read a token from standard input (one line) and print its hash, then exit
    #[arg(long)]
    pub hash_token: bool,
}

/// Runs `arca server` until SIGINT or SIGTERM.
pub fn run(_g: &GlobalOpts, a: &ServerArgs) -> Result<i32> {
    if a.new_token {
        let token = new_token();
        println!("token: {token}");
        println!("hash:  {}", hash_token(&token));
        return Ok(crate::exit::OK);
    }
    if a.hash_token {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the token from standard input")?;
        let token = line.trim_end_matches(['\n', '\r']);
        if token.is_empty() {
            anyhow::bail!("no token on standard input");
        }
        println!("{}", hash_token(token));
        return Ok(crate::exit::OK);
    }
    let (Some(data_dir), Some(tokens_file)) = (&a.data_dir, &a.tokens) else {
        anyhow::bail!("--data-dir and --tokens are required");
    };
    let tokens = FileTokenStore::load(tokens_file).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(data_dir.join("repos"))
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let state = AppState::new(data_dir, Arc::new(tokens));
    // The command-line SIGINT handler exits at once; the server stops gracefully instead.
    // SAFETY: restoring the default action before any handler of the runtime is installed.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arca-server")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("listening on {}", a.listen))?;
        let addr = listener.local_addr().context("reading the listening address")?;
        println!("arca server listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!("serving repositories from {} on http://{addr}", data_dir.display());
        arca_server::serve(listener, state, arca_server::shutdown_signal()).await.context("serving")?;
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(crate::exit::OK)
}
