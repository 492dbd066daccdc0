//! Every Spoki action as a queued command (docs/actions.md, docs/admin-api.md): typed params checked before
//! anything is queued (`params`, `types`), a durable queue in SQLite (`store::commands`), and
//! a worker that runs it under the per-action budgets (`worker`).

pub mod automation;
pub mod describe;
pub mod params;
pub mod replaced;
pub mod types;
pub mod worker;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

pub use describe::{ParamDoc, describe};
pub use params::{ParamError, Prepared, prepare};
pub use worker::{CommandWorker, WorkerSettings};

use crate::store::{Enqueued, Store, StoreError};

/// What `submit_once` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Queued now.
    Queued(String),
    /// The idempotency key was used before for this same command: nothing queued; the
    /// first command's id and current status.
    Repeated { id: String, status: String },
    /// The idempotency key was used before for another action or other params: nothing
    /// queued; the first command's id.
    KeyReused { id: String },
}

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
        match self.submit_once(action, params, None).await? {
            Submitted::Queued(id)
            | Submitted::Repeated { id, .. }
            | Submitted::KeyReused { id } => Ok(id),
        }
    }

    /// Like `submit`, but a command already queued with the same idempotency `key` is
    /// returned instead of queueing another (the params are checked first either way).
    ///
    /// # Errors
    /// Params that do not fit the action (nothing is queued), or the database.
    pub async fn submit_once(
        &self,
        action: &str,
        params: Value,
        key: Option<&str>,
    ) -> Result<Submitted, SubmitError> {
        let prepared = prepare(action, params)?;
        let request = serde_json::to_value(&prepared.request)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a request: {e}")))?;
        let name = prepared.action.name();
        match self
            .store
            .enqueue_command_once(name, &prepared.params, &request, key)
            .await?
        {
            Enqueued::New(id) => {
                tracing::info!(command = %id, action = name, "command queued");
                self.wake.notify_one();
                Ok(Submitted::Queued(id))
            }
            Enqueued::Existing {
                id,
                action,
                params,
                status,
            } => {
                if action == name && params == prepared.params {
                    tracing::info!(command = %id, action = name, "repeated Idempotency-Key: the first command stands");
                    Ok(Submitted::Repeated { id, status })
                } else {
                    Ok(Submitted::KeyReused { id })
                }
            }
        }
    }
}
