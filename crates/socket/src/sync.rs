//! The one way Frameway takes a lock, in this crate and the ones above it.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, even if a panic poisoned it.
///
/// Every critical section in Frameway leaves its data consistent at each
/// step (a connection's state between polls, a pool's list, a counter, a
/// log file), so a panic elsewhere must not take down every later user of
/// the lock: one connection's panic must not fail every later connection.
///
/// ```
/// use std::sync::Mutex;
///
/// let counter = Mutex::new(0);
/// *frameway::sync::lock(&counter) += 1;
/// assert_eq!(*frameway::sync::lock(&counter), 1);
/// ```
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `rwlock`, even if a panic poisoned it (see [`lock`]).
pub fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `rwlock`, even if a panic poisoned it (see [`lock`]).
pub fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock.write().unwrap_or_else(PoisonError::into_inner)
}
