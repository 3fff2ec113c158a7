//! The local backup target: office machines run `arca backup` to the appliance, at LAN speed, with
//! device tokens of the appliance's own, over the same hosting API as the provider's server.
//!
//! This is `arca_server`'s hosting router ([`arca_server::hosting_app`]: the repository and
//! account APIs, no web console, billing or metrics), run in-process on a second listener over a data directory of
//! the appliance (SQLite for accounts and the object catalogue, local disk for objects). Accounts
//! are managed with `arca admin --server http://APPLIANCE:PORT …` as on a provider's server; the
//! first admin (user `admin`) is created from the configured password. The provider-side upkeep
//! (scheduled retention, garbage collection, scrub) does not run here: these repositories are
//! pruned by their own clients (`arca forget --prune` with a tenant admin's token).

use std::net::SocketAddr;

use arca_server::db::accounts::Role;
use arca_server::db::Db;
use arca_server::state::Backend;
use arca_server::AppState;

use crate::config::TargetConfig;
use crate::error::{Error, ErrorKind, Result};

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// Opens the target's database and storage and binds its listener; returns its address and the
/// future that serves it.
pub async fn start(
    cfg: &TargetConfig,
) -> Result<(SocketAddr, std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>)> {
    std::fs::create_dir_all(cfg.data_dir.join("repos"))
        .map_err(io(format!("creating the backup target's directory {}", cfg.data_dir.display())))?;
    let url = format!("sqlite://{}", cfg.data_dir.join("arca.db").display());
    let db = Db::connect(&url)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("opening the backup target's database {url}: {e}")))?;
    let backend = Backend::from_url(&format!("file://{}", cfg.data_dir.display())).map_err(Error::config)?;
    let key = backend.server_key(&db).await.map_err(|e| Error::new(ErrorKind::Io, format!("backup target: {e}")))?;
    db.set_secret_box(arca_server::secrets::SecretBox::new(&key));
    let has_admin =
        db.has_provider_admin().await.map_err(|e| Error::new(ErrorKind::Io, format!("backup target database: {e}")))?;
    if !has_admin {
        let password = cfg.admin_password()?;
        db.create_user("admin", &password, Role::ProviderAdmin, None)
            .await
            .map_err(|e| Error::config(format!("creating the backup target's admin: {e}")))?;
        tracing::info!("backup target: created its admin user \"admin\"");
    }
    let state = AppState::new(db, backend);
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.map_err(io(format!("listening on {}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(io("reading the backup target's address".into()))?;
    let server = Box::pin(arca_server::serve_hosting(listener, state, std::future::pending()));
    Ok((addr, server))
}
