//! What every request handler shares: where repositories live and who may use them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_store::LocalStore;

use crate::auth::TokenStore;

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    tokens: Arc<dyn TokenStore>,
    metrics: crate::metrics::Metrics,
}

impl AppState {
    /// Repositories under `data_dir/repos/`, tokens from `tokens`.
    pub fn new(data_dir: impl Into<PathBuf>, tokens: Arc<dyn TokenStore>) -> AppState {
        AppState { inner: Arc::new(Inner { data_dir: data_dir.into(), tokens, metrics: Default::default() }) }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The token store.
    pub fn tokens(&self) -> &dyn TokenStore {
        self.inner.tokens.as_ref()
    }

    /// The store of repository `repo` (its name must already be validated).
    pub fn store(&self, repo: &str) -> LocalStore {
        LocalStore::new(self.inner.data_dir.join("repos").join(repo))
    }
}
