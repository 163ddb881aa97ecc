//! The one way this crate takes a lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, even if a panic poisoned it: every critical section in
/// this crate leaves its data consistent at each step (a connection's state
/// between polls, a pool's list), so a panic elsewhere must not take down
/// every later user of the lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
