//! The one way this crate takes a lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, even if a panic poisoned it: what the gateway keeps under
/// locks (Lua states, counters, a log file, reload status) stays usable
/// after a panic elsewhere, and one connection's panic must not take down
/// every later connection, scrape or reload.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
