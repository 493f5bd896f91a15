//! The route table of beamd's API (docs/api.md, docs/openapi.yaml) and the handlers that fit in a few
//! lines; exec, files and logs have their own modules.

use super::http::{self, HttpError, Resp, flag, no_content, number, ok_json, one};
use crate::api::{
    self, CreateSandbox, ExitReason, ImageList, ImageSummary, ProcessList, PullProgress, PullRequest, SandboxList,
    SandboxState, SignalRequest, StopSandbox, UpdateSandbox,
};
use crate::sandbox::manager::{ListFilter, Manager};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Every route: (method, path pattern). `{ref}` and `{pid}` are path parameters. docs/openapi.yaml
/// must list exactly these (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/version"),
    ("GET", "/v1/images"),
    ("POST", "/v1/images/pull"),
    ("GET", "/v1/sandboxes"),
    ("POST", "/v1/sandboxes"),
    ("GET", "/v1/sandboxes/{ref}"),
    ("PATCH", "/v1/sandboxes/{ref}"),
    ("DELETE", "/v1/sandboxes/{ref}"),
    ("POST", "/v1/sandboxes/{ref}/stop"),
    ("POST", "/v1/sandboxes/{ref}/wait"),
    ("POST", "/v1/sandboxes/{ref}/exec"),
    ("POST", "/v1/sandboxes/{ref}/ports"),
    ("GET", "/v1/sandboxes/{ref}/processes"),
    ("POST", "/v1/sandboxes/{ref}/processes/{pid}/signal"),
    ("GET", "/v1/sandboxes/{ref}/logs"),
    ("GET", "/v1/sandboxes/{ref}/files"),
    ("PUT", "/v1/sandboxes/{ref}/files"),
    ("DELETE", "/v1/sandboxes/{ref}/files"),
    ("GET", "/v1/sandboxes/{ref}/files/stat"),
    ("GET", "/v1/sandboxes/{ref}/files/list"),
    ("POST", "/v1/sandboxes/{ref}/files/mkdir"),
];

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
    let path = req.uri().path().to_string();
    let q = http::query(req.uri().query())?;
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(HttpError::not_found(format!("no route {path}; the API lives under /v1 (see docs/api.md)")));
    };
    let segs: Vec<String> = rest.split('/').map(http::decode).collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method().clone();
    let not_allowed = |allowed: &str| HttpError {
        allow: Some(allowed.into()),
        ..HttpError::new(405, "method_not_allowed", format!("{m} is not allowed on {path}; use {allowed}"))
    };
    match segs.as_slice() {
        ["version"] => match m {
            Method::GET => Ok(ok_json(&mgr.version())),
            _ => Err(not_allowed("GET")),
        },
        ["images"] => match m {
            Method::GET => images(&mgr),
            _ => Err(not_allowed("GET")),
        },
        ["images", "pull"] => match m {
            Method::POST => pull(mgr, json_body(req).await?).await,
            _ => Err(not_allowed("POST")),
        },
        ["sandboxes"] => match m {
            Method::GET => list(&mgr, &q),
            Method::POST => {
                let body: CreateSandbox = json_body(req).await?;
                let s = mgr.create(body).await?;
                Ok(http::json_response(StatusCode::CREATED, &s))
            }
            _ => Err(not_allowed("GET, POST")),
        },
        ["sandboxes", r] => match m {
            Method::GET => {
                let e = mgr.get(r)?;
                e.touch();
                Ok(ok_json(&mgr.view(&e)))
            }
            Method::PATCH => {
                let e = mgr.get(r)?;
                let u: UpdateSandbox = json_body(req).await?;
                // A policy change runs netlink and nft: off the async threads.
                let m = mgr.clone();
                let s = tokio::task::spawn_blocking(move || m.update(&e, &u))
                    .await
                    .map_err(|err| HttpError::internal(format!("update task: {err}")))??;
                Ok(ok_json(&s))
            }
            Method::DELETE => {
                let e = mgr.get(r)?;
                mgr.stop(&e, ExitReason::Stopped, crate::sandbox::manager::DEFAULT_GRACE).await;
                mgr.forget(&e)?;
                Ok(no_content())
            }
            _ => Err(not_allowed("GET, PATCH, DELETE")),
        },
        ["sandboxes", r, "stop"] => match m {
            Method::POST => {
                let e = mgr.get(r)?;
                let s: StopSandbox = json_body(req).await?;
                let grace = Duration::from_secs(s.grace_seconds.unwrap_or(crate::sandbox::manager::DEFAULT_GRACE.as_secs()));
                Ok(ok_json(&mgr.stop(&e, ExitReason::Stopped, grace).await))
            }
            _ => Err(not_allowed("POST")),
        },
        ["sandboxes", r, "wait"] => match m {
            Method::POST => {
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
            _ => Err(not_allowed("POST")),
        },
        ["sandboxes", r, "exec"] => match m {
            Method::POST => {
                let e = mgr.get_running(r)?;
                super::exec::exec(mgr.clone(), e, req).await
            }
            _ => Err(not_allowed("POST")),
        },
        ["sandboxes", r, "ports"] => match m {
            Method::POST => {
                let e = mgr.get_running(r)?;
                let p: api::ExposePort = json_body(req).await?;
                Ok(ok_json(&crate::sandbox::ports::expose(&mgr, &e, &p)?))
            }
            _ => Err(not_allowed("POST")),
        },
        ["sandboxes", r, "processes"] => match m {
            Method::GET => {
                let e = mgr.get_running(r)?;
                let list = mgr.init_client(&e).ps().await.map_err(|err| HttpError::internal(err.to_string()))?;
                let processes = list
                    .into_iter()
                    .map(|p| api::Process { pid: p.pid, ppid: p.ppid, uid: p.uid, state: p.state, rss_kib: p.rss_kib, cmd: p.cmd })
                    .collect();
                Ok(ok_json(&ProcessList { processes }))
            }
            _ => Err(not_allowed("GET")),
        },
        ["sandboxes", r, "processes", pid, "signal"] => match m {
            Method::POST => {
                let e = mgr.get_running(r)?;
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
            _ => Err(not_allowed("POST")),
        },
        ["sandboxes", r, "logs"] => match m {
            Method::GET => {
                let e = mgr.get(r)?;
                super::logs::logs(mgr.clone(), e, flag(&q, "follow")?, number::<u64>(&q, "tail_bytes")?).await
            }
            _ => Err(not_allowed("GET")),
        },
        ["sandboxes", r, "files", rest @ ..] => {
            let e = mgr.get_running(r)?;
            super::files::files(mgr.clone(), e, rest, req, &q).await
        }
        _ => Err(HttpError::not_found(format!("no route {m} {path}; see docs/api.md for the API"))),
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
