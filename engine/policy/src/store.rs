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

use crate::{Outcome, Policy, PolicyError, Request};

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
        match Policy::load(path) {
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
    /// mtime tick are seen), checking every `interval`. A policy that does
    /// not compile leaves the running one in force (its error in
    /// [`PolicyStore::last_error`]); a path that is gone, or holds no
    /// file, removes the policy: every request is then denied "no policy"
    /// until it comes back. `on_change` hears of every change.
    pub fn watch(
        self: &Arc<Self>,
        path: PathBuf,
        interval: Duration,
        on_change: impl Fn(&Result<Arc<Policy>, String>) + Send + 'static,
    ) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::clone(self);
        let flag = Arc::clone(&stop);
        // Taken before the thread starts, so no change after `watch`
        // returns can be missed.
        let mut seen = fingerprint(&path);
        let handle = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    let now = fingerprint(&path);
                    // A path that exists but could not be read (permissions,
                    // no file descriptors, I/O) changes nothing: only a
                    // policy that is really gone is removed.
                    let gone = matches!(
                        std::fs::metadata(&path),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound
                    ) || (path.is_dir() && now.is_empty());
                    if now.is_empty() && !gone {
                        continue;
                    }
                    if now != seen {
                        seen = now;
                        let result = if gone {
                            store.clear();
                            let e = format!(
                                "policy `{}` is gone: every intent is denied \"no policy\"",
                                path.display()
                            );
                            store.set_error(Some(e.clone()));
                            Err(e)
                        } else {
                            // The error, if any, is kept in last_error.
                            store.reload(&path).map_err(|e| e.to_string())
                        };
                        on_change(&result);
                    }
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

fn fingerprint(path: &Path) -> Vec<(PathBuf, [u8; 32])> {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut add = |p: PathBuf| {
        if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, sha2::Sha256::digest(&bytes).into()));
        }
    };
    if path.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                add(e.path());
            }
        }
    } else {
        add(path.to_path_buf());
    }
    out.sort();
    out
}
