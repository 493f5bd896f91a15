//! Arbitrary request bodies (and query strings, path segments) through beamd's own parsing and validation,
//! then through what the handler does next with an accepted request, short of making anything:
//!
//! byte 0 picks the route, the rest is the body —
//! 0 `POST /v1/sandboxes`: `http::parse_json::<CreateSandbox>` → `Offer::validate` → `pending_record` →
//!   the `Sandbox` view of it as running, serialized as the response is;
//! 1 `PATCH /v1/sandboxes/{ref}`: `UpdateSandbox` → `Manager::update` on a running sandbox (bridge or none
//!   network, by byte 1) → view;
//! 2 `POST …/exec`: `ExecRequest` → `exec::check_request` (upgraded or not, by byte 1) → `exec::exec_spec`
//!   (users resolved in the fuzzer's own root, read-only) → the init packet it would send;
//! 3 `POST …/ports`: `ExposePort` without `host_port` (that would bind a host port) → `ports::expose` → view;
//! 4 `POST …/stop`, 5 `POST …/processes/{pid}/signal` (`parse_signal`), 6 `POST /v1/images/pull`
//!   (reference normalization, store lookup — never a pull), 7 `POST …/files/mkdir` (the mode check);
//! 8 a query string (`http::query`, `flag`, `number`), 9 a path (`/`-split, `http::decode` per segment).
//!
//! Never panics, and every response body serializes. The manager is opened once on a scratch root with
//! `--network none` (nothing on the host network is touched).
#![no_main]
#[path = "common.rs"]
mod common;

use beam::api::{
    CreateSandbox, ExecRequest, ExposePort, Mkdir, NetworkMode, PullRequest, SandboxState, SignalRequest,
    StopSandbox, UpdateSandbox,
};
use beam::daemon::{exec, http};
use beam::image::digest::Digest;
use beam::image::store::ImageRecord;
use beam::sandbox::initproto::Request as InitRequest;
use beam::sandbox::manager::{Config, Manager};
use beam::sandbox::Entry;
use beam::sandbox::record::Record;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};

struct Fixture {
    mgr: Arc<Manager>,
    img: ImageRecord,
    /// A running sandbox's record, as a create with defaults makes it.
    running: Record,
}

static FIX: LazyLock<Fixture> = LazyLock::new(|| {
    let work = common::scratch("api_requests");
    let cfg = Config { root: work.join("root"), run_dir: work.join("run"), network: None, public: None };
    let mgr = Manager::open(cfg).expect("opening a manager on the scratch root");
    let img = ImageRecord {
        id: Digest::of(b"config"),
        manifest: Digest::of(b"manifest"),
        manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        layers: Vec::new(),
        names: vec!["beam.local/busybox:latest".into()],
        added: chrono::Utc::now(),
    };
    let req = CreateSandbox { image: "busybox".into(), ..Default::default() };
    let v = mgr.offer().validate(&req).expect("the default request is valid");
    let mut running = mgr.offer().pending_record(&req, &img, v).expect("a record for it");
    running.sandbox.state = SandboxState::Running;
    running.sandbox.pid = Some(std::process::id() as i32);
    running.sandbox.started_at = Some(chrono::Utc::now());
    Fixture { mgr, img, running }
});

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    http::parse_json(b).ok()
}

fn respond(s: &beam::api::Sandbox) {
    // What http::json_response does with a handler's answer.
    serde_json::to_vec(s).expect("response serializes");
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, rest)) = data.split_first() else { return };
    let f = &*FIX;
    let flag = rest.first().is_some_and(|b| b & 1 == 1);
    match route % 10 {
        0 => {
            let Some(req) = body::<CreateSandbox>(rest) else { return };
            let Ok(v) = f.mgr.offer().validate(&req) else { return };
            let Ok(mut rec) = f.mgr.offer().pending_record(&req, &f.img, v) else { return };
            respond(&f.mgr.view(&Entry::new(rec.clone())));
            rec.sandbox.state = SandboxState::Running;
            respond(&f.mgr.view(&Entry::new(rec)));
        }
        1 => {
            let Some(u) = body::<UpdateSandbox>(&rest[rest.len().min(1)..]) else { return };
            let mut rec = f.running.clone();
            if flag {
                rec.sandbox.network.mode = NetworkMode::Bridge;
            }
            let e = Entry::new(rec);
            if let Ok(s) = f.mgr.update(&e, &u) {
                respond(&s);
                respond(&f.mgr.view(&e));
            }
        }
        2 => {
            let Some(r) = body::<ExecRequest>(&rest[rest.len().min(1)..]) else { return };
            if exec::check_request(&r, flag).is_err() {
                return;
            }
            let e = Entry::new(f.running.clone());
            if let Ok(spec) = exec::exec_spec(&e, &r) {
                let packet = InitRequest::Exec(spec).encode();
                assert!(packet.len() <= beam::sandbox::initproto::MAX_PACKET);
            }
        }
        3 => {
            let Some(mut p) = body::<ExposePort>(rest) else { return };
            p.host_port = None;
            let e = Entry::new(f.running.clone());
            if let Ok(s) = beam::sandbox::ports::expose(&f.mgr, &e, &p) {
                respond(&s);
            }
        }
        4 => {
            let Some(s) = body::<StopSandbox>(rest) else { return };
            let _ = std::time::Duration::from_secs(s.grace_seconds.unwrap_or(10));
        }
        5 => {
            let Some(s) = body::<SignalRequest>(rest) else { return };
            let _ = beam::runtime::verbs::parse_signal(&s.signal);
        }
        6 => {
            let Some(p) = body::<PullRequest>(rest) else { return };
            let _ = beam::image::reference::normalize(&p.image);
            let _ = f.mgr.store().resolve(&p.image);
        }
        7 => {
            let Some(m) = body::<Mkdir>(rest) else { return };
            let _ = m.mode.unwrap_or(0o755) > 0o7777;
        }
        8 => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            if let Ok(q) = http::query(Some(s)) {
                for k in ["follow", "recursive", "state", "path"] {
                    let _ = http::flag(&q, k);
                    let _ = http::one(&q, k);
                }
                let _ = http::number::<f64>(&q, "timeout_seconds");
                let _ = http::number::<u64>(&q, "tail_bytes");
            }
        }
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            for seg in s.split('/') {
                let _ = http::decode(seg);
            }
        }
    }
});
