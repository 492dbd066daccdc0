//! Every Spoki action as a queued command (CONTRACT §6, §8): typed params checked before
//! anything is queued (`params`, `types`), a durable queue in SQLite (`store::commands`), and
//! a worker that runs it under the per-action budgets (`worker`).

pub mod params;
pub mod types;
pub mod worker;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

pub use params::{ParamError, Prepared, prepare};
pub use worker::{CommandWorker, WorkerSettings};

use crate::store::{Store, StoreError};

/// Why a command was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid command: {0}")]
    Invalid(#[from] ParamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks and queues commands; wakes the worker.
#[derive(Clone, Debug)]
pub struct Commands {
    store: Store,
    wake: Arc<Notify>,
}

impl Commands {
    pub fn new(store: Store, wake: Arc<Notify>) -> Commands {
        Commands { store, wake }
    }

    /// Checks `params` and queues the command durably; returns its id.
    ///
    /// # Errors
    /// Params that do not fit the action (nothing is queued), or the database.
    pub async fn submit(&self, action: &str, params: Value) -> Result<String, SubmitError> {
        let prepared = prepare(action, params)?;
        let request = serde_json::to_value(&prepared.request)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a request: {e}")))?;
        let id = self
            .store
            .enqueue_command(prepared.action.name(), &prepared.params, &request)
            .await?;
        tracing::info!(command = %id, action = prepared.action.name(), "command queued");
        self.wake.notify_one();
        Ok(id)
    }
}
