//! One sandbox in memory: its record behind a lock, whether it has exited, and its activity (API calls
//! and operations in flight) for keep-warm.

use super::ports::PublicUrls;
use super::record::{Record, ViewParts};
use crate::api::{Sandbox, SandboxState};
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One sandbox in memory.
pub struct Entry {
    pub id: String,
    pub(super) rec: Mutex<Record>,
    pub(super) exited: watch::Sender<bool>,
    /// Operations in flight (exec streams, file transfers, log follows): the sandbox is not idle.
    inflight: AtomicUsize,
    /// Unix milliseconds of the last API call on it.
    last_activity: AtomicI64,
    /// Held for a snapshot: one at a time per sandbox (each freezes and thaws its cgroup).
    pub(super) snapshotting: tokio::sync::Mutex<()>,
}

/// Counts an operation as activity for as long as it lives.
pub struct ActiveGuard(Arc<Entry>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Entry {
    #[doc(hidden)] // pub for fuzz/api_requests
    pub fn new(rec: Record) -> Arc<Entry> {
        let exited = rec.sandbox.state == SandboxState::Exited;
        Arc::new(Entry {
            id: rec.sandbox.id.clone(),
            rec: Mutex::new(rec),
            exited: watch::channel(exited).0,
            inflight: AtomicUsize::new(0),
            last_activity: AtomicI64::new(Utc::now().timestamp_millis()),
            snapshotting: tokio::sync::Mutex::new(()),
        })
    }

    pub fn record(&self) -> Record {
        self.rec.lock().expect("record lock").clone()
    }

    /// Read the record in place (no clone; for hot paths). `f` runs under the record's lock: keep it short.
    pub fn with_record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.rec.lock().expect("record lock"))
    }

    pub fn state(&self) -> SandboxState {
        self.rec.lock().expect("record lock").sandbox.state
    }

    /// It never came to be (a failed create): wake whoever waits for its exit.
    pub(crate) fn gone(&self) {
        self.exited.send_replace(true);
    }

    /// An API call touched it: push its idle deadline out.
    pub fn touch(&self) {
        self.last_activity.store(Utc::now().timestamp_millis(), Ordering::SeqCst);
    }

    pub fn active(self: &Arc<Self>) -> ActiveGuard {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ActiveGuard(self.clone())
    }

    /// Resolves when the sandbox has exited.
    pub async fn exited(&self) {
        let mut rx = self.exited.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// The API view, with the gateway URLs of its ports when a gateway serves them
    /// ([`super::manager::Manager::view`] passes beamd's).
    pub fn view(&self, public: Option<&PublicUrls>) -> Sandbox {
        let rec = self.rec.lock().expect("record lock");
        let s = &rec.sandbox;
        let last = chrono::DateTime::from_timestamp_millis(self.last_activity.load(Ordering::SeqCst)).unwrap_or_else(Utc::now);
        let expires_at = if s.state == SandboxState::Running {
            let idle = u64::try_from(s.keep_warm_seconds).ok().and_then(|k| deadline(last, k));
            let idle = idle.filter(|_| self.inflight.load(Ordering::SeqCst) == 0);
            let timeout = s.timeout_seconds.and_then(|t| deadline(s.created_at, t));
            match (idle, timeout) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        } else {
            None
        };
        let urls = match public {
            Some(p) if s.state != SandboxState::Exited => p.urls(&s.id, &s.ports),
            _ => BTreeMap::new(),
        };
        s.view(ViewParts { urls, last_activity_at: last, expires_at })
    }
}

/// `at` plus `secs` seconds; None when that is past what a timestamp holds: a deadline that never comes
/// (`keep_warm_seconds`/`timeout_seconds` take any i64/u64; found by fuzz/api_requests — the unchecked sum
/// panicked under the record's lock, poisoning it).
pub(crate) fn deadline(at: chrono::DateTime<Utc>, secs: u64) -> Option<chrono::DateTime<Utc>> {
    at.checked_add_signed(chrono::TimeDelta::try_seconds(i64::try_from(secs).ok()?)?)
}
