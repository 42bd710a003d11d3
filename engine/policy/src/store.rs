//! Live policy: compiled off the hot path, swapped in atomically.
//!
//! [`PolicyStore::evaluate`] reads the current policy with one lock-free
//! `arc-swap` load. [`PolicyStore::reload`] compiles a new version on the
//! caller's thread; only a policy that compiled is swapped in. If it does
//! not compile, the last good version stays in force and the error is kept
//! for [`PolicyStore::last_error`] (and logged by the caller). With no
//! policy loaded, every request is denied with reason "no policy".

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::{Outcome, Policy, PolicyError, PolicyFiles, Request};

/// The result of evaluating against the store.
#[derive(Debug, Clone)]
pub enum Decided {
    /// No policy is loaded: deny, reason "no policy".
    NoPolicy,
    /// Evaluated against `policy`.
    Evaluated {
        /// The policy version that decided (carry its hash and version).
        policy: Arc<Policy>,
        /// The outcome.
        outcome: Outcome,
    },
}

/// Holds the policy in force.
#[derive(Debug, Default)]
pub struct PolicyStore {
    current: ArcSwapOption<Policy>,
    last_error: Mutex<Option<String>>,
}

impl PolicyStore {
    /// An empty store: everything is denied until a policy loads.
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluates against the policy in force.
    pub fn evaluate(&self, request: &Request<'_>) -> Decided {
        match self.current.load_full() {
            None => Decided::NoPolicy,
            Some(policy) => {
                let outcome = policy.evaluate(request);
                Decided::Evaluated { policy, outcome }
            }
        }
    }

    /// The policy in force, if any.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current.load_full()
    }

    /// Installs a compiled policy.
    pub fn install(&self, policy: Policy) {
        self.current.store(Some(Arc::new(policy)));
        self.set_error(None);
    }

    /// Removes the policy: everything is denied ("no policy").
    pub fn clear(&self) {
        self.current.store(None);
    }

    /// Compiles `path` and swaps it in; on failure keeps the last good
    /// policy, records the error and returns it.
    pub fn reload(&self, path: &Path) -> Result<Arc<Policy>, PolicyError> {
        self.swap_in(Policy::load(path))
    }

    /// Swaps in a compiled policy, or keeps the last good one and records
    /// the error.
    fn swap_in(&self, compiled: Result<Policy, PolicyError>) -> Result<Arc<Policy>, PolicyError> {
        match compiled {
            Ok(p) => {
                let p = Arc::new(p);
                self.current.store(Some(Arc::clone(&p)));
                self.set_error(None);
                Ok(p)
            }
            Err(e) => {
                self.set_error(Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// The error of the last failed reload, cleared by a successful one.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_error(&self, e: Option<String>) {
        match self.last_error.lock() {
            Ok(mut g) => *g = e,
            Err(p) => *p.into_inner() = e,
        }
    }

    /// Watches `path` (file or directory) and reloads when any file's
    /// content changes (compared by SHA-256, so same-size edits within one
    /// mtime tick are seen), checking every `interval`. A change is
    /// applied once two checks in a row see the same content, and exactly
    /// the content read at the second check is compiled, so a file caught
    /// half written, or a directory caught between two of its files'
    /// updates, is never compiled into the running policy (replace files
    /// atomically all the same: write aside, then rename). A path that
    /// cannot be read (a file of it included) changes nothing until it can
    /// be. A policy that does not compile leaves the running one in force
    /// (its error in [`PolicyStore::last_error`]); a path that is gone, or
    /// a directory left with no `*.toml` file, removes the policy: every
    /// request is then denied "no policy" until it comes back. `on_change`
    /// hears of every change.
    ///
    /// Changes are counted from the content as it is when `watch` is
    /// called; to count them from when the policy in force was read, take
    /// a [`Fingerprint`] before reading it and use
    /// [`PolicyStore::watch_since`].
    pub fn watch(
        self: &Arc<Self>,
        path: PathBuf,
        interval: Duration,
        on_change: impl Fn(&Result<Arc<Policy>, String>) + Send + 'static,
    ) -> Watcher {
        let baseline = Fingerprint::of(&path);
        self.watch_since(path, interval, baseline, on_change)
    }

    /// Like [`PolicyStore::watch`], with changes counted from `baseline`:
    /// content that differs from it when the watcher starts (an edit made
    /// between reading the policy and starting the watcher) is loaded at
    /// the first checks, not taken as the starting point and missed.
    pub fn watch_since(
        self: &Arc<Self>,
        path: PathBuf,
        interval: Duration,
        baseline: Fingerprint,
        on_change: impl Fn(&Result<Arc<Policy>, String>) + Send + 'static,
    ) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::clone(self);
        let flag = Arc::clone(&stop);
        let mut settle = Settle::new(baseline);
        let handle = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                let mut unreadable: Option<String> = None;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    // A path that is gone, or a directory left with no
                    // `*.toml` file, removes the policy. One that exists
                    // but cannot be read (permissions, no file descriptors,
                    // a dangling symlink, I/O) changes nothing, and is
                    // read again at the next check.
                    let files = match PolicyFiles::read(&path) {
                        Ok(f) => {
                            unreadable = None;
                            f
                        }
                        Err(_) if !exists(&path) => PolicyFiles::default(),
                        Err(e) => {
                            // Said once per distinct error, and kept in
                            // `last_error`: edits wait until it is read.
                            let e = format!("{e}: the policy in force stays until it can be read");
                            if unreadable.as_ref() != Some(&e) {
                                store.set_error(Some(e.clone()));
                                on_change(&Err(e.clone()));
                                unreadable = Some(e);
                            }
                            continue;
                        }
                    };
                    if !settle.changed(Fingerprint::from_files(&files)) {
                        continue;
                    }
                    // Compile exactly the content that settled, not what
                    // is on disk by now.
                    let result = if files.files.is_empty() {
                        store.clear();
                        let e = format!(
                            "policy `{}` is gone: every intent is denied \"no policy\"",
                            path.display()
                        );
                        store.set_error(Some(e.clone()));
                        Err(e)
                    } else {
                        // The error, if any, is kept in last_error.
                        store
                            .swap_in(Policy::from_files(&files))
                            .map_err(|e| e.to_string())
                    };
                    on_change(&result);
                }
            })
            .ok();
        Watcher { stop, handle }
    }
}

/// Stops the watcher thread when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The content of a policy path (each policy file's name and SHA-256), to
/// tell whether it changed since it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(String, [u8; 32])>);

impl Fingerprint {
    /// The content of `path` (a file, or every `*.toml` file of a
    /// directory) now; empty if it cannot be read.
    pub fn of(path: &Path) -> Fingerprint {
        PolicyFiles::read(path)
            .map(|f| Fingerprint::from_files(&f))
            .unwrap_or_default()
    }

    /// The content of files already read.
    pub fn from_files(files: &PolicyFiles) -> Fingerprint {
        use sha2::Digest;
        Fingerprint(
            files
                .files
                .iter()
                .map(|(name, text)| (name.clone(), sha2::Sha256::digest(text).into()))
                .collect(),
        )
    }
}

/// Whether `path` exists (an error other than "not found" counts as yes:
/// only a policy that is really gone is removed).
fn exists(path: &Path) -> bool {
    !matches!(
        std::fs::metadata(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    )
}

/// Decides when a watched path's content counts as changed: when it
/// differs from the content last applied and two checks in a row saw it
/// the same. A state seen only once (a file half written, a directory
/// between two files' updates) is never applied.
#[derive(Debug)]
struct Settle<T> {
    applied: T,
    pending: Option<T>,
}

impl<T: PartialEq> Settle<T> {
    fn new(applied: T) -> Self {
        Settle {
            applied,
            pending: None,
        }
    }

    /// Whether `now`, the content at this check, is a settled change to
    /// apply (it then becomes the applied content).
    fn changed(&mut self, now: T) -> bool {
        if now == self.applied {
            self.pending = None;
            false
        } else if self.pending.as_ref() == Some(&now) {
            self.pending = None;
            self.applied = now;
            true
        } else {
            self.pending = Some(now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Settle;

    #[test]
    fn a_state_seen_once_is_never_applied() {
        let mut s = Settle::new("v1");
        assert!(!s.changed("v1"));
        // Half-way through an update: seen once, then gone.
        assert!(!s.changed("half"));
        assert!(!s.changed("v2"));
        // The same new content twice in a row: applied, once.
        assert!(s.changed("v2"));
        assert!(!s.changed("v2"));
        // A change that is undone before it settles is never applied.
        assert!(!s.changed("v3"));
        assert!(!s.changed("v2"));
        assert!(!s.changed("v2"));
    }
}
