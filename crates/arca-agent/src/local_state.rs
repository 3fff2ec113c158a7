//! What the agent remembers between runs (`STATE_DIR/state.json`): the last schedule slot it ran,
//! the run under way (so a restart after a crash reports it as interrupted), jobs it finished,
//! a finished run's report not yet delivered, and the last configuration (so it keeps its
//! schedule while the server is unreachable).

use std::path::{Path, PathBuf};

use arca_api::agent::{AgentConfig, AgentReport};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A run under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// `backup` or `restore`.
    pub kind: String,
    /// The console's job, if it asked.
    pub job: Option<i64>,
    /// Start (Unix seconds).
    pub started_at: i64,
}

/// The agent's memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalState {
    /// The time the last scheduled run started (its slot is done); 0: never ran.
    pub last_slot: i64,
    /// The last backup that succeeded.
    pub last_success: i64,
    /// The run under way.
    pub running: Option<Running>,
    /// Jobs finished here (the newest 100), so a stale configuration does not run them twice.
    pub done_jobs: Vec<i64>,
    /// Finished-run reports the server has not acknowledged yet, oldest first.
    pub unsent: Vec<AgentReport>,
    /// The last configuration received.
    pub config: Option<AgentConfig>,
}

/// [`LocalState`] and where it lives.
pub struct StateFile {
    path: PathBuf,
    /// The state.
    pub state: LocalState,
}

impl StateFile {
    /// Loads `dir/state.json` (a missing file is a fresh state; a damaged one is set aside and
    /// replaced, since everything in it can be relearned).
    pub fn load(dir: &Path) -> Result<StateFile> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{} is damaged ({e}): starting afresh", path.display());
                let _ = std::fs::rename(&path, dir.join("state.json.damaged"));
                LocalState::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LocalState::default(),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(StateFile { path, state })
    }

    /// Writes the state (atomically).
    pub fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| Error::Config(e.to_string()))?;
        crate::config::write_private(&self.path, &bytes)
    }

    /// Remembers that job `id` is done.
    pub fn job_done(&mut self, id: i64) {
        self.state.done_jobs.push(id);
        let n = self.state.done_jobs.len();
        if n > 100 {
            self.state.done_jobs.drain(..n - 100);
        }
    }
}
