//! The route table of beamd's API (docs/api.md, docs/openapi.yaml) and the handlers that fit in a few
//! lines; exec, files and logs have their own modules.

use super::http::{self, HttpError, Resp, flag, no_content, number, ok_json, one};
use crate::api::{
    self, CreateSandbox, ExitReason, ImageList, ImageSummary, ProcessList, PullProgress, PullRequest, SandboxList,
    SandboxState, SignalRequest, StopSandbox, UpdateSandbox,
};
use crate::sandbox::manager::{DEFAULT_GRACE, ListFilter, Manager};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What a route does: [`dispatch`] matches on it exhaustively, so every route in [`ROUTES`] has a
/// handler and no handler exists without a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Version,
    ListImages,
    PullImage,
    ListSandboxes,
    CreateSandbox,
    GetSandbox,
    UpdateSandbox,
    DeleteSandbox,
    StopSandbox,
    WaitSandbox,
    Exec,
    ExposePort,
    ListProcesses,
    SignalProcess,
    Logs,
    SnapshotFilesystem,
    Files(super::files::FilesOp),
}

use super::files::FilesOp;

/// Every route: (method, path pattern, op). `{ref}` and `{pid}` are path parameters. Requests are
/// routed by this table ([`resolve`]: 404 for a path no route has, 405 with `Allow` for a method it
/// lacks), and docs/openapi.yaml must list exactly these (a test checks).
pub const ROUTES: &[(&str, &str, Op)] = &[
    ("GET", "/v1/version", Op::Version),
    ("GET", "/v1/images", Op::ListImages),
    ("POST", "/v1/images/pull", Op::PullImage),
    ("GET", "/v1/sandboxes", Op::ListSandboxes),
    ("POST", "/v1/sandboxes", Op::CreateSandbox),
    ("GET", "/v1/sandboxes/{ref}", Op::GetSandbox),
    ("PATCH", "/v1/sandboxes/{ref}", Op::UpdateSandbox),
    ("DELETE", "/v1/sandboxes/{ref}", Op::DeleteSandbox),
    ("POST", "/v1/sandboxes/{ref}/stop", Op::StopSandbox),
    ("POST", "/v1/sandboxes/{ref}/wait", Op::WaitSandbox),
    ("POST", "/v1/sandboxes/{ref}/exec", Op::Exec),
    ("POST", "/v1/sandboxes/{ref}/ports", Op::ExposePort),
    ("GET", "/v1/sandboxes/{ref}/processes", Op::ListProcesses),
    ("POST", "/v1/sandboxes/{ref}/processes/{pid}/signal", Op::SignalProcess),
    ("GET", "/v1/sandboxes/{ref}/logs", Op::Logs),
    ("POST", "/v1/sandboxes/{ref}/snapshots/filesystem", Op::SnapshotFilesystem),
    ("GET", "/v1/sandboxes/{ref}/files", Op::Files(FilesOp::Download)),
    ("PUT", "/v1/sandboxes/{ref}/files", Op::Files(FilesOp::Upload)),
    ("DELETE", "/v1/sandboxes/{ref}/files", Op::Files(FilesOp::Remove)),
    ("GET", "/v1/sandboxes/{ref}/files/stat", Op::Files(FilesOp::Stat)),
    ("GET", "/v1/sandboxes/{ref}/files/list", Op::Files(FilesOp::List)),
    ("POST", "/v1/sandboxes/{ref}/files/mkdir", Op::Files(FilesOp::Mkdir)),
];

/// Route a request by [`ROUTES`]: its op and its path parameters (percent-decoded, in order).
pub fn resolve(method: &Method, path: &str) -> Result<(Op, Vec<String>), HttpError> {
    if !path.starts_with("/v1/") {
        return Err(HttpError::not_found(format!("no route {path}; the API lives under /v1 (see docs/api.md)")));
    }
    let segs: Vec<String> = path[1..].split('/').map(http::decode).collect::<Result<_, _>>()?;
    let params_of = |pattern: &str| -> Option<Vec<String>> {
        let pat: Vec<&str> = pattern[1..].split('/').collect();
        if pat.len() != segs.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, s) in pat.iter().zip(&segs) {
            if p.starts_with('{') {
                params.push(s.clone());
            } else if p != s {
                return None;
            }
        }
        Some(params)
    };
    let mut allowed: Vec<&str> = Vec::new();
    for (m, pattern, op) in ROUTES {
        if let Some(params) = params_of(pattern) {
            if *m == method.as_str() {
                return Ok((*op, params));
            }
            allowed.push(m);
        }
    }
    if allowed.is_empty() {
        return Err(HttpError::not_found(format!("no route {method} {path}; see docs/api.md for the API")));
    }
    let allowed = allowed.join(", ");
    Err(HttpError {
        allow: Some(allowed.clone()),
        ..HttpError::new(405, "method_not_allowed", format!("{method} is not allowed on {path}; use {allowed}"))
    })
}

fn content_type(req: &Request<Incoming>) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, HttpError> {
    let ct = content_type(&req);
    http::read_json(req.into_body(), ct.as_deref()).await
}

/// Dispatch one request.
pub async fn route(mgr: Arc<Manager>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = dispatch(mgr, req).await;
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, status = e.status.as_u16(), "{}", e.message);
            e.into_response()
        }
    }
}

async fn dispatch(mgr: Arc<Manager>, req: Request<Incoming>) -> Result<Resp, HttpError> {
    let q = http::query(req.uri().query())?;
    let (op, params) = resolve(req.method(), req.uri().path())?;
    // `{ref}` is the first parameter of every sandbox route, `{pid}` the second of a signal's.
    let r = params.first().map(String::as_str).unwrap_or_default();
    match op {
        Op::Version => Ok(ok_json(&mgr.version())),
        Op::ListImages => images(&mgr),
        Op::PullImage => pull(mgr, json_body(req).await?).await,
        Op::ListSandboxes => list(&mgr, &q),
        Op::CreateSandbox => {
            let body: CreateSandbox = json_body(req).await?;
            let s = mgr.create(body).await?;
            Ok(http::json_response(StatusCode::CREATED, &s))
        }
        Op::GetSandbox => {
            let e = mgr.get(r)?;
            e.touch();
            Ok(ok_json(&mgr.view(&e)))
        }
        Op::UpdateSandbox => {
            let e = mgr.get(r)?;
            let u: UpdateSandbox = json_body(req).await?;
            // A policy change runs netlink and nft: off the async threads.
            let m = mgr.clone();
            let s = tokio::task::spawn_blocking(move || m.update(&e, &u))
                .await
                .map_err(|err| HttpError::internal(format!("update task: {err}")))??;
            Ok(ok_json(&s))
        }
        Op::DeleteSandbox => {
            let e = mgr.get(r)?;
            mgr.stop(&e, ExitReason::Stopped, DEFAULT_GRACE).await;
            mgr.forget(&e)?;
            Ok(no_content())
        }
        Op::StopSandbox => {
            let e = mgr.get(r)?;
            let s: StopSandbox = json_body(req).await?;
            let grace = Duration::from_secs(s.grace_seconds.unwrap_or(DEFAULT_GRACE.as_secs()));
            Ok(ok_json(&mgr.stop(&e, ExitReason::Stopped, grace).await))
        }
        Op::WaitSandbox => {
            let e = mgr.get(r)?;
            let limit = number::<f64>(&q, "timeout_seconds")?;
            match limit {
                Some(t) if t.is_finite() && t >= 0.0 => {
                    let _ = tokio::time::timeout(Duration::from_secs_f64(t), e.exited()).await;
                }
                Some(t) => return Err(HttpError::bad_request(format!("timeout_seconds {t} must be ≥ 0"))),
                None => e.exited().await,
            }
            Ok(ok_json(&mgr.view(&e)))
        }
        Op::Exec => {
            let e = mgr.get_running(r)?;
            super::exec::exec(mgr.clone(), e, req).await
        }
        Op::ExposePort => {
            let e = mgr.get_running(r)?;
            let p: api::ExposePort = json_body(req).await?;
            Ok(ok_json(&crate::sandbox::ports::expose(&mgr, &e, &p)?))
        }
        Op::ListProcesses => {
            let e = mgr.get_running(r)?;
            let list = mgr.init_client(&e).ps().await.map_err(|err| HttpError::internal(err.to_string()))?;
            let processes = list
                .into_iter()
                .map(|p| api::Process { pid: p.pid, ppid: p.ppid, uid: p.uid, state: p.state, rss_kib: p.rss_kib, cmd: p.cmd })
                .collect();
            Ok(ok_json(&ProcessList { processes }))
        }
        Op::SignalProcess => {
            let e = mgr.get_running(r)?;
            let pid = params.get(1).map(String::as_str).unwrap_or_default();
            let pid: i32 = pid
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| HttpError::bad_request(format!("{pid:?} is not a process id")))?;
            let s: SignalRequest = json_body(req).await?;
            let sig = crate::runtime::verbs::parse_signal(&s.signal).map_err(|err| HttpError::bad_request(err.to_string()))?;
            match mgr.init_client(&e).kill(pid, sig as i32).await {
                Ok(()) => Ok(no_content()),
                Err(crate::sandbox::initclient::InitClientError::Exec { errno, .. }) if errno == libc::ESRCH => Err(
                    HttpError::not_found(format!("no process {pid} in sandbox {}; `beam top {}` lists them", e.id, e.id)),
                ),
                Err(err) => Err(HttpError::bad_request(err.to_string())),
            }
        }
        Op::Logs => {
            let e = mgr.get(r)?;
            super::logs::logs(mgr.clone(), e, flag(&q, "follow")?, number::<u64>(&q, "tail_bytes")?).await
        }
        Op::SnapshotFilesystem => {
            let e = mgr.get_running(r)?;
            let s: api::SnapshotFilesystem = json_body(req).await?;
            let snap = crate::sandbox::snapshots::filesystem(&mgr, &e, &s).await?;
            Ok(http::json_response(StatusCode::CREATED, &snap))
        }
        Op::Files(f) => {
            let e = mgr.get_running(r)?;
            super::files::files(e, f, req, &q).await
        }
    }
}

fn list(mgr: &Manager, q: &std::collections::BTreeMap<String, Vec<String>>) -> Result<Resp, HttpError> {
    let state = match one(q, "state") {
        None | Some("") => None,
        Some(s) => Some(serde_json::from_value::<SandboxState>(serde_json::Value::String(s.into())).map_err(|_| {
            HttpError::bad_request(format!("state {s:?} is not one of pending, running, stopping, exited"))
        })?),
    };
    let mut tags = Vec::new();
    for t in q.get("tag").into_iter().flatten() {
        let (k, v) = t.split_once('=').ok_or_else(|| HttpError::bad_request(format!("tag filter {t:?} must be key=value")))?;
        tags.push((k.to_string(), v.to_string()));
    }
    let f = ListFilter { state, name: one(q, "name").map(str::to_string), tags };
    Ok(ok_json(&SandboxList { sandboxes: mgr.list(&f) }))
}

fn images(mgr: &Manager) -> Result<Resp, HttpError> {
    let imgs = mgr.store().images().map_err(|e| HttpError::internal(e.to_string()))?;
    let images = imgs
        .into_iter()
        .filter(|i| !i.names.iter().all(|n| n.starts_with(crate::image::recipe::CACHE_REPO)) || i.names.is_empty())
        .map(|i| ImageSummary {
            id: i.id.to_string(),
            names: i.names.clone(),
            size: i.layers.iter().map(|l| l.size).sum(),
            created: Some(i.added.to_rfc3339()),
        })
        .collect();
    Ok(ok_json(&ImageList { images }))
}

/// `POST /v1/images/pull`: newline-delimited progress, the last line with `id` or `error`.
async fn pull(mgr: Arc<Manager>, req: PullRequest) -> Result<Resp, HttpError> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let line = |p: &PullProgress| {
        let mut v = serde_json::to_vec(p).expect("progress serializes");
        v.push(b'\n');
        Bytes::from(v)
    };
    tokio::spawn(async move {
        let tx2 = tx.clone();
        let progress = move |status: String| {
            let _ = tx2.try_send(Ok(line(&PullProgress { status, id: None, error: None })));
        };
        let last = match crate::sandbox::images::ensure_image(mgr.store(), &req.image, &progress).await {
            Ok(img) => PullProgress { status: "done".into(), id: Some(img.id.to_string()), error: None },
            Err(e) => PullProgress { status: "failed".into(), id: None, error: Some(e.to_string()) },
        };
        let _ = tx.send(Ok(line(&last))).await;
    });
    Ok(http::streaming(StatusCode::OK, "application/x-ndjson", rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route in the table reaches its own op, with its parameters; another method on the same path
    /// is a 405 whose Allow lists exactly the table's methods for it; anything else is a 404.
    #[test]
    fn the_table_is_the_router() {
        for (i, (m, pattern, op)) in ROUTES.iter().enumerate() {
            let path = pattern.replace("{ref}", "sbx-a%2Db").replace("{pid}", "42");
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            let (got, params) = resolve(&method, &path).unwrap_or_else(|e| panic!("{m} {path}: {}", e.message));
            assert_eq!(got, *op, "{m} {pattern}");
            assert!(ROUTES.iter().enumerate().all(|(j, r)| j == i || r.2 != *op), "{op:?} has two routes");
            let want: Vec<&str> = pattern.matches('{').map(|_| "").collect();
            assert_eq!(params.len(), want.len(), "{pattern}");
            if pattern.contains("{ref}") {
                assert_eq!(params[0], "sbx-a-b");
            }
            if pattern.contains("{pid}") {
                assert_eq!(params[1], "42");
            }
            let allow: Vec<&str> = ROUTES.iter().filter(|r| r.1 == *pattern).map(|r| r.0).collect();
            for other in ["GET", "PUT", "POST", "PATCH", "DELETE"].iter().filter(|o| !allow.contains(o)) {
                let e = resolve(&Method::from_bytes(other.as_bytes()).unwrap(), &path).unwrap_err();
                assert_eq!((e.status.as_u16(), e.code), (405, "method_not_allowed"), "{other} {path}");
                assert_eq!(e.allow.as_deref(), Some(allow.join(", ").as_str()), "{other} {path}");
            }
        }
        for path in ["/v1/nope", "/v1/sandboxes/a/b/c", "/v1/sandboxes/a/files/x", "/version", "/v1/", "/v2/version"] {
            let e = resolve(&Method::GET, path).unwrap_err();
            assert_eq!(e.status.as_u16(), 404, "{path}");
        }
        assert_eq!(resolve(&Method::GET, "/v1/sandboxes/%zz").unwrap_err().status.as_u16(), 400);
    }
}
