//! The sandbox management verbs: `beam container list`, `stop`, `rm`, `inspect`, `update`, `wait`,
//! `logs`, `top`, `kill`, `port` (most also as `beam ps`, `beam stop`, …), and `beam version`.

use crate::args::{list_query, parse_publish};
use crate::client::{self, Client, Error, sandbox_path, usage};
use crate::human;
use crate::output::{duration, exit_status, out, status, stream_to_stdout, table};
use beam::api::{self, ProcessList, Sandbox, SandboxList, SandboxState, SignalRequest, StopSandbox, UpdateSandbox};
use clap::Args;
use hyper::Method;

#[derive(Args)]
pub struct PortArgs {
    /// Sandbox id or name.
    pub id: String,
    /// A port to expose through the gateway (a URL); without it, list what is exposed.
    pub port: Option<u16>,
    /// Also forward PORT as raw TCP from a host port: [HOST_IP:]HOST_PORT (host address 127.0.0.1 unless given).
    #[arg(long, value_name = "[IP:]HOST_PORT", requires = "port")]
    pub publish: Option<String>,
}

#[derive(Args)]
pub struct IdArg {
    /// Sandbox id or name.
    pub id: String,
}

#[derive(Args)]
pub struct ListArgs {
    /// Show exited sandboxes too.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// state=STATE, name=NAME or tag=KEY=VALUE (repeatable).
    #[arg(long, short = 'f', value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL (default 10).
    #[arg(long, short = 't', value_name = "SECONDS")]
    pub time: Option<u64>,
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Stop running sandboxes first.
    #[arg(long, short = 'f')]
    pub force: bool,
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Sandbox id or name.
    pub id: String,
    /// Idle seconds before the sandbox is stopped (-1: never).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub keep_warm_seconds: Option<i64>,
    /// Maximum lifetime in seconds, counted from creation (0: none).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Block (true) or allow (false) all egress of a bridge-network sandbox.
    #[arg(long, value_name = "BOOL")]
    pub block_network: Option<bool>,
    /// Egress only to these CIDRs, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "CIDR", conflicts_with = "no_cidr_allowlist")]
    pub cidr_allowlist: Option<Vec<String>>,
    /// Remove the CIDR allowlist (egress to anywhere again, unless --block-network true).
    #[arg(long)]
    pub no_cidr_allowlist: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing until the sandbox exits.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last BYTES bytes.
    #[arg(long, value_name = "BYTES")]
    pub tail: Option<u64>,
    /// Sandbox id or name.
    pub id: String,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(long, short = 's', default_value = "TERM")]
    pub signal: String,
    /// Sandbox id or name.
    pub id: String,
    /// Pid inside the sandbox (see beam top).
    pub pid: i32,
}

fn list_row(sb: &Sandbox, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let uptime = match (sb.state, sb.started_at) {
        (SandboxState::Running, Some(t)) => duration((now - t).num_seconds()),
        _ => "-".into(),
    };
    vec![sb.id.clone(), status(sb), sb.image.clone(), human::age(sb.created_at), uptime]
}

pub async fn list(c: &Client, a: ListArgs) -> Result<i32, Error> {
    if a.format != "table" && a.format != "json" {
        return Err(usage(format!("--format {:?}: use table or json", a.format)));
    }
    let (qs, by_state) = list_query(&a.filter)?;
    let mut l: SandboxList = c.get(&format!("{}/sandboxes{qs}", api::PREFIX)).await?;
    if !a.all && !by_state {
        l.sandboxes.retain(|s| s.state != SandboxState::Exited);
    }
    l.sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    if a.format == "json" {
        out(format!("{}\n", serde_json::to_string_pretty(&l.sandboxes).expect("json")).as_bytes())?;
    } else {
        let now = chrono::Utc::now();
        let rows: Vec<Vec<String>> = l.sandboxes.iter().map(|s| list_row(s, now)).collect();
        out(table(&["ID", "STATUS", "IMAGE", "CREATED", "UPTIME"], &rows).as_bytes())?;
    }
    Ok(0)
}

/// Run `f` for every id; an API error about one is printed and the rest still go. Exit 1 if any failed.
async fn each<F, Fut>(ids: &[String], mut f: F) -> Result<i32, Error>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let mut code = 0;
    for id in ids {
        match f(id.clone()).await {
            Ok(()) => println!("{id}"),
            Err(e @ (Error::Api { .. } | Error::Usage(_))) => {
                eprintln!("beam: {e}");
                code = 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(code)
}

pub async fn stop(c: &Client, a: StopArgs) -> Result<i32, Error> {
    let body = StopSandbox { grace_seconds: a.time };
    each(&a.ids, |id| {
        let body = body.clone();
        async move { c.json::<_, Sandbox>(Method::POST, &sandbox_path(&id, "/stop"), Some(&body)).await.map(|_| ()) }
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> Result<i32, Error> {
    let force = a.force;
    each(&a.ids, |id| async move {
        if !force {
            let sb: Sandbox = c.get(&sandbox_path(&id, "")).await?;
            if sb.state != SandboxState::Exited {
                return Err(usage(format!(
                    "sandbox {id} is {}; stop it first (beam stop {id}) or remove it anyway with: beam rm -f {id}",
                    sb.state.as_str()
                )));
            }
        }
        c.no_content(Method::DELETE, &sandbox_path(&id, ""), None::<&()>).await
    })
    .await
}

pub async fn inspect(c: &Client, id: &str) -> Result<i32, Error> {
    let v: serde_json::Value = c.get(&sandbox_path(id, "")).await?;
    out(format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes())?;
    Ok(0)
}

/// `beam port`: expose a port (and forward it) when one is given, then list the URLs and forwards.
pub async fn port(c: &Client, a: PortArgs) -> Result<i32, Error> {
    let sb: Sandbox = match a.port {
        None => c.get(&sandbox_path(&a.id, "")).await?,
        Some(0) => return Err(usage("port 0: give a port between 1 and 65535")),
        Some(port) => {
            let (host_port, host_ip) = match &a.publish {
                None => (None, None),
                Some(spec) => {
                    let p = parse_publish(&format!("{spec}:{port}"))?;
                    (Some(i64::from(p.host_port)), Some(p.host_ip))
                }
            };
            let body = beam::api::ExposePort { port: i64::from(port), host_port, host_ip };
            c.json(Method::POST, &sandbox_path(&a.id, "/ports"), Some(&body)).await?
        }
    };
    let mut lines: Vec<String> = sb.ports.iter().map(|p| match sb.urls.get(&p.to_string()) {
        Some(u) => format!("{p} -> {u}"),
        None => format!("{p} -> (no gateway URL: beamd runs without --gateway, or the sandbox has exited)"),
    }).collect();
    lines.extend(sb.published.iter().map(|p| format!("{}/tcp -> {}:{}", p.port, p.host_ip, p.host_port)));
    if !lines.is_empty() {
        out(format!("{}\n", lines.join("\n")).as_bytes())?;
    }
    Ok(0)
}

pub async fn update(c: &Client, a: UpdateArgs) -> Result<i32, Error> {
    if a.keep_warm_seconds.is_none()
        && a.timeout.is_none()
        && a.block_network.is_none()
        && a.cidr_allowlist.is_none()
        && !a.no_cidr_allowlist
    {
        return Err(usage(
            "update: give what to change: --keep-warm-seconds N, --timeout SECONDS, --block-network BOOL, \
             --cidr-allowlist CIDR,… or --no-cidr-allowlist",
        ));
    }
    if a.keep_warm_seconds.is_some_and(|k| k < -1) {
        return Err(usage("--keep-warm-seconds: give seconds, or -1 for never"));
    }
    let body = UpdateSandbox {
        keep_warm_seconds: a.keep_warm_seconds,
        timeout_seconds: a.timeout,
        block_network: a.block_network,
        cidr_allowlist: if a.no_cidr_allowlist { Some(None) } else { a.cidr_allowlist.clone().map(Some) },
    };
    let sb: Sandbox = c.json(Method::PATCH, &sandbox_path(&a.id, ""), Some(&body)).await?;
    println!("{}", sb.id);
    Ok(0)
}

pub async fn wait(c: &Client, id: &str) -> Result<i32, Error> {
    let sb = client::wait_exited(c, id).await?;
    let code = exit_status(&sb);
    println!("{code}");
    Ok(code)
}

fn logs_path(id: &str, follow: bool, tail: Option<u64>) -> String {
    let mut qs = Vec::new();
    if follow {
        qs.push("follow=true".to_string());
    }
    if let Some(t) = tail {
        qs.push(format!("tail_bytes={t}"));
    }
    let qs = if qs.is_empty() { String::new() } else { format!("?{}", qs.join("&")) };
    sandbox_path(id, &format!("/logs{qs}"))
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<i32, Error> {
    stream_to_stdout(c, &logs_path(&a.id, a.follow, a.tail)).await?;
    Ok(0)
}

fn top_table(l: &ProcessList) -> String {
    let rows: Vec<Vec<String>> = l
        .processes
        .iter()
        .map(|p| {
            vec![p.pid.to_string(), p.ppid.to_string(), p.uid.to_string(), p.state.clone(), human::size(p.rss_kib * 1024), p.cmd.clone()]
        })
        .collect();
    table(&["PID", "PPID", "UID", "STATE", "RSS", "CMD"], &rows)
}

pub async fn top(c: &Client, id: &str) -> Result<i32, Error> {
    let l: ProcessList = c.get(&sandbox_path(id, "/processes")).await?;
    out(top_table(&l).as_bytes())?;
    Ok(0)
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<i32, Error> {
    let sig = a.signal.trim();
    if sig.is_empty() {
        return Err(usage("--signal: give a name (TERM, SIGKILL) or a number"));
    }
    let body = SignalRequest { signal: sig.to_string() };
    c.no_content(Method::POST, &sandbox_path(&a.id, &format!("/processes/{}/signal", a.pid)), Some(&body)).await?;
    Ok(0)
}

pub async fn version(c: &Client) -> Result<i32, Error> {
    println!("beam  {}", env!("CARGO_PKG_VERSION"));
    let v: api::Version = c.get(&format!("{}/version", api::PREFIX)).await?;
    println!("beamd {} (API {}, cgroup {}, landlock ABI {})", v.version, v.api, v.cgroup, v.landlock_abi);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(state: SandboxState) -> Sandbox {
        let now = chrono::Utc::now();
        Sandbox {
            id: "sb-1".into(),
            name: None,
            image: "busybox".into(),
            image_id: "abc".into(),
            state,
            reason: None,
            exit_code: None,
            error: None,
            entrypoint: None,
            workdir: "/".into(),
            user: "0:0".into(),
            cpu: 1.0,
            memory_mib: 1024,
            pids: 1024,
            ports: vec![],
            urls: Default::default(),
            published: vec![],
            authorized: false,
            token: None,
            keep_warm_seconds: 600,
            timeout_seconds: None,
            tags: Default::default(),
            created_at: now - chrono::Duration::minutes(2),
            started_at: Some(now - chrono::Duration::seconds(80)),
            exited_at: None,
            last_activity_at: now,
            expires_at: None,
            pid: Some(1234),
            security: api::Security { uid_base: None, seccomp: true, landlock: None, no_new_privs: true, capabilities: vec![] },
            network: api::SandboxNetwork::none(),
        }
    }

    #[test]
    fn statuses_and_rows() {
        let mut sb = sandbox(SandboxState::Running);
        let now = chrono::Utc::now();
        assert_eq!(list_row(&sb, now), vec!["sb-1", "running", "busybox", "2 minutes ago", "1m 20s"]);
        sb.state = SandboxState::Exited;
        sb.exit_code = Some(0);
        sb.reason = Some(api::ExitReason::Exited);
        assert_eq!(status(&sb), "exited (0)");
        sb.exit_code = Some(137);
        sb.reason = Some(api::ExitReason::Stopped);
        assert_eq!(status(&sb), "exited (137) stopped");
        sb.reason = Some(api::ExitReason::OomKilled);
        assert_eq!(status(&sb), "exited (137) oom-killed");
        assert_eq!(list_row(&sb, now)[4], "-");
        sb.exit_code = None;
        sb.reason = Some(api::ExitReason::Error);
        assert_eq!(status(&sb), "exited error");
        assert_eq!(exit_status(&sb), 1);
    }

    #[test]
    fn processes_table() {
        let l = ProcessList {
            processes: vec![api::Process { pid: 1, ppid: 0, uid: 0, state: "S".into(), rss_kib: 1500, cmd: "/sbin/init".into() }],
        };
        assert_eq!(top_table(&l), "PID   PPID   UID   STATE   RSS       CMD\n1     0      0     S       1.54 MB   /sbin/init\n");
    }

    #[test]
    fn logs_paths() {
        assert_eq!(logs_path("web", false, None), "/v1/sandboxes/web/logs");
        assert_eq!(logs_path("web", true, Some(100)), "/v1/sandboxes/web/logs?follow=true&tail_bytes=100");
    }
}
