//! The open handles of one scheme: numbered from 1 (0 is the scheme root, which redox-scheme's
//! `register_sync_scheme` asks for through `scheme_root`), each bound to the process that opened
//! it.

use std::collections::BTreeMap;

use crate::caller::Caller;
use crate::error::SchemeError;

/// The id `scheme_root` answers: `openat` is relative to it.
pub const ROOT: usize = 0;

/// One open handle: who opened it, and what it is.
#[derive(Debug)]
pub struct Handle<K> {
    pub pid: usize,
    pub kind: K,
}

/// The handle table.
#[derive(Debug)]
pub struct Handles<K> {
    open: BTreeMap<usize, Handle<K>>,
    next: usize,
}

impl<K> Default for Handles<K> {
    fn default() -> Self {
        Handles {
            open: BTreeMap::new(),
            next: ROOT + 1,
        }
    }
}

impl<K> Handles<K> {
    /// Opens a handle of `kind` for `caller`; its id is never reused while the scheme lives.
    pub fn insert(&mut self, caller: &Caller, kind: K) -> usize {
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Handle {
                pid: caller.pid,
                kind,
            },
        );
        id
    }

    /// The handle `id`, if `caller` opened it.
    pub fn get(&self, id: usize, caller: &Caller) -> Result<&K, SchemeError> {
        let handle = self.open.get(&id).ok_or(SchemeError::BadHandle)?;
        if handle.pid != caller.pid {
            return Err(SchemeError::NotOwner);
        }
        Ok(&handle.kind)
    }

    /// The handle `id`, mutably, if `caller` opened it.
    pub fn get_mut(&mut self, id: usize, caller: &Caller) -> Result<&mut K, SchemeError> {
        let handle = self.open.get_mut(&id).ok_or(SchemeError::BadHandle)?;
        if handle.pid != caller.pid {
            return Err(SchemeError::NotOwner);
        }
        Ok(&mut handle.kind)
    }

    /// The handle `id` whoever opened it (for the core's answers, which name no caller).
    pub fn by_id_mut(&mut self, id: usize) -> Option<&mut K> {
        self.open.get_mut(&id).map(|handle| &mut handle.kind)
    }

    /// Closes `id`.
    pub fn remove(&mut self, id: usize) -> Option<K> {
        self.open.remove(&id).map(|handle| handle.kind)
    }

    /// Every open handle.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &K)> {
        self.open.iter().map(|(id, handle)| (*id, &handle.kind))
    }

    /// Every open handle, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut K)> {
        self.open
            .iter_mut()
            .map(|(id, handle)| (*id, &mut handle.kind))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ONE: Caller = Caller {
        pid: 10,
        uid: 0,
        gid: 0,
    };
    const OTHER: Caller = Caller {
        pid: 11,
        uid: 0,
        gid: 0,
    };

    /// redox-scheme 0.12 `src/scheme.rs` (`SchemeSync::call`): the kernel fills uid and gid for
    /// `openat` only, so a handle is bound to the pid that opened it.
    #[test]
    fn handles_are_bound_to_their_process_and_never_reused() {
        let mut handles = Handles::default();
        let a = handles.insert(&ONE, "a");
        assert_ne!(a, ROOT);
        assert_eq!(handles.get(a, &ONE), Ok(&"a"));
        // Same uid, another process: not the owner (a handle is not a capability to pass on).
        assert_eq!(handles.get(a, &OTHER), Err(SchemeError::NotOwner));
        assert_eq!(handles.get_mut(a, &OTHER), Err(SchemeError::NotOwner));
        assert_eq!(handles.remove(a), Some("a"));
        assert_eq!(handles.get(a, &ONE), Err(SchemeError::BadHandle));
        let b = handles.insert(&ONE, "b");
        assert_ne!(a, b);
    }
}
