//! Re-adoption after a beamd restart: every sandbox a previous beamd left is loaded from disk; live ones
//! are watched again (and their forwards bound again), dead ones finished, half-made ones removed, and
//! the network of sandboxes that are gone released.

use super::entry::Entry;
use super::manager::{DEFAULT_GRACE, Manager, sandbox_cgroup};
use super::ports;
use super::record::{self, Record};
use crate::api::{ExitReason, SandboxState};
use crate::image::bundle;
use crate::runtime::state::pid_start_time;
use crate::runtime::verbs;
use nix::sys::signal::Signal;
use std::sync::Arc;

/// Load every sandbox a previous beamd left: adopt the live ones, finish the dead ones.
pub async fn recover(mgr: &Arc<Manager>) {
    let dirs = match std::fs::read_dir(&mgr.sandboxes_dir) {
        Ok(d) => d.flatten().map(|d| d.path()).collect::<Vec<_>>(),
        Err(err) => {
            tracing::error!("reading {}: {err}", mgr.sandboxes_dir.display());
            return;
        }
    };
    for dir in dirs {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if !name.starts_with("sbx-") {
            continue;
        }
        let rec = match Record::load(&dir) {
            Ok(r) => r,
            Err(err) => {
                // A create that died before its first save: nothing but the dir (and maybe a bundle).
                tracing::warn!("{err}: removing the half-made sandbox {name}");
                let _ = verbs::delete::delete(&mgr.runtime, &name, true);
                // Without its runtime state too (a wiped run dir), its processes are still found by
                // their cgroup, which is named after the sandbox.
                if let Some(cg) = sandbox_cgroup(&name) {
                    let _ = cg.kill_all(Signal::SIGKILL);
                    let _ = cg.destroy();
                }
                let _ = bundle::remove_stale(&mgr.store, &dir.join(record::BUNDLE_DIR));
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
        };
        let e = Entry::new(rec.clone());
        mgr.insert(e.clone());
        if rec.sandbox.state == SandboxState::Exited {
            continue;
        }
        let alive = rec.sandbox.pid.zip(rec.pid_start).is_some_and(|(pid, start)| pid_start_time(pid) == Some(start));
        if alive && rec.sandbox.state != SandboxState::Pending {
            let pid = rec.sandbox.pid.expect("alive implies a pid");
            tracing::info!(sandbox = %name, pid, "re-adopted a running sandbox");
            mgr.watch(e.clone(), pid);
            for p in &rec.sandbox.published {
                match ports::bind(p) {
                    Ok(l) => ports::serve(mgr.dialer(), e.clone(), l, p.port),
                    Err(err) => tracing::warn!(sandbox = %name, "forward from {}:{}: {err}", p.host_ip, p.host_port),
                }
            }
            if rec.sandbox.state == SandboxState::Stopping {
                let (m, e) = (mgr.clone(), e.clone());
                let reason = rec.stop_reason.unwrap_or(ExitReason::Stopped);
                tokio::spawn(async move {
                    // The first SIGTERM went out before the restart; send it again.
                    m.update_record(&e, |r| r.stop_reason = None);
                    m.stop(&e, reason, DEFAULT_GRACE).await;
                });
            }
            continue;
        }
        if rec.sandbox.state == SandboxState::Pending {
            mgr.update_record(&e, |r| {
                r.stop_reason = None;
                r.sandbox.pid = None;
            });
            let m = mgr.clone();
            let e2 = e.clone();
            let _ = tokio::task::spawn_blocking(move || {
                m.finish(&e2);
                m.update_record(&e2, |r| {
                    r.sandbox.reason = Some(ExitReason::Error);
                    r.sandbox.error = Some("beamd stopped while creating this sandbox".into());
                });
            })
            .await;
            continue;
        }
        tracing::info!(sandbox = %name, "exited while beamd was not running");
        let m = mgr.clone();
        let _ = tokio::task::spawn_blocking(move || m.finish(&e)).await;
    }
    // Leases, veths and firewall entries of sandboxes that are gone (e.g. deleted while beamd was down).
    if let Some(net) = mgr.net.clone() {
        let live: Vec<String> =
            mgr.entries().iter().filter(|e| e.state() != SandboxState::Exited).map(|e| e.id.clone()).collect();
        let r = tokio::task::spawn_blocking(move || {
            let ids: Vec<&str> = live.iter().map(String::as_str).collect();
            net.reconcile(&ids)
        })
        .await;
        match r {
            Ok(Ok(r)) if !r.leases.is_empty() || !r.veths.is_empty() => {
                tracing::info!(leases = r.leases.len(), veths = r.veths.len(), "released the network of sandboxes that are gone")
            }
            Ok(Err(err)) => tracing::error!("reconciling sandbox networks: {err}"),
            _ => {}
        }
    }
}
