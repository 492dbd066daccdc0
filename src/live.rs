//! Settings that a configuration reload (SIGHUP, `POST /v1/reload`) changes while the daemon
//! runs. Each task reads its copy when it next needs it.

use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<T>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(Arc::clone(&self.0))
    }
}

impl<T: Clone> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(RwLock::new(value)))
    }

    /// The current value. A poisoned lock only means a writer panicked mid-assignment of plain
    /// data; the value is still whole.
    pub fn get(&self) -> T {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}
