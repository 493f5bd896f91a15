//! Keep-warm and timeouts: a sandbox idle past its `keep_warm_seconds`, or alive past its
//! `timeout_seconds`, is stopped (reason `idle` / `timeout`).

use super::entry::deadline;
use super::manager::{DEFAULT_GRACE, Manager};
use crate::api::{ExitReason, SandboxState};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

/// Stop idle and timed-out sandboxes, once a second.
pub fn spawn(mgr: &Arc<Manager>) {
    let mgr = mgr.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Utc::now();
            for e in mgr.entries() {
                if e.state() != SandboxState::Running {
                    continue;
                }
                let v = mgr.view(&e);
                let timed_out = v.timeout_seconds.and_then(|t| deadline(v.created_at, t)).is_some_and(|d| now >= d);
                let idle = v.expires_at.is_some_and(|x| now >= x);
                let reason = if timed_out {
                    ExitReason::Timeout
                } else if idle {
                    ExitReason::Idle
                } else {
                    continue;
                };
                let m = mgr.clone();
                tokio::spawn(async move {
                    m.stop(&e, reason, DEFAULT_GRACE).await;
                });
            }
        }
    });
}
