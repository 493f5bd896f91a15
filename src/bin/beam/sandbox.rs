//! The sandbox commands: `beam run`, `exec`, `shell`, `container …` (`ps`, `stop`, `rm`, …), `cp`,
//! `version`. They only talk to beamd over its API (see [`crate::client`]).

use crate::client::{self, Client, DaemonArgs, Error, q, sandbox_path, usage};
use crate::{cp, exec, human, run};
use beam::api::{self, ProcessList, Sandbox, SandboxList, SandboxState, SignalRequest, StopSandbox, UpdateSandbox};
use clap::{Args, Subcommand};
use hyper::Method;
use std::io::Write;

// Parsed once per process: the size difference between variants doesn't matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Cmd {
    /// Create a sandbox from an image; follow its entrypoint's output unless --detach.
    Run(run::RunArgs),
    /// Run a command in a running sandbox.
    Exec(exec::ExecArgs),
    /// An interactive shell in a sandbox (bash when it has /bin/bash, else sh).
    Shell {
        /// Sandbox id or name.
        id: String,
    },
    /// Manage sandboxes: list, stop, rm, inspect, update, wait, logs, top, kill.
    #[command(alias = "sandbox")]
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// List sandboxes (beam container list).
    Ps(ListArgs),
    /// Stop sandboxes (beam container stop).
    Stop(StopArgs),
    /// Remove sandboxes (beam container rm).
    Rm(RmArgs),
    /// Show a sandbox as JSON (beam container inspect).
    Inspect(IdArg),
    /// Wait for a sandbox to exit; print and exit with its exit code.
    Wait(IdArg),
    /// Print a sandbox's entrypoint output.
    Logs(LogsArgs),
    /// List the processes running in a sandbox.
    Top(IdArg),
    /// Send a signal to a process in a sandbox.
    Kill(KillArgs),
    /// Copy files between a sandbox and the host: beam cp SRC DST, one of them SANDBOX:PATH.
    Cp(cp::CpArgs),
    /// List a sandbox's URLs and TCP forwards, or expose one more port (beam container port).
    Port(PortArgs),
    /// Print the versions of beam and beamd.
    Version,
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// List sandboxes (running ones unless --all).
    #[command(visible_alias = "ls", alias = "ps")]
    List(ListArgs),
    /// Stop sandboxes: SIGTERM, then SIGKILL after --time seconds.
    Stop(StopArgs),
    /// Remove sandboxes and their logs.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Show a sandbox as JSON.
    Inspect(IdArg),
    /// Change a running sandbox's idle timeout or maximum lifetime.
    Update(UpdateArgs),
    /// Wait for a sandbox to exit; print and exit with its exit code.
    Wait(IdArg),
    /// Print a sandbox's entrypoint output.
    Logs(LogsArgs),
    /// List the processes running in a sandbox.
    Top(IdArg),
    /// Send a signal to a process in a sandbox.
    Kill(KillArgs),
    /// List a sandbox's URLs and TCP forwards, or expose one more port of a running sandbox.
    Port(PortArgs),
}

#[derive(Args)]
pub struct PortArgs {
    /// Sandbox id or name.
    id: String,
    /// A port to expose through the gateway (a URL); without it, list what is exposed.
    port: Option<u16>,
    /// Also forward PORT as raw TCP from a host port: [HOST_IP:]HOST_PORT (host address 127.0.0.1 unless given).
    #[arg(long, value_name = "[IP:]HOST_PORT", requires = "port")]
    publish: Option<String>,
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
    all: bool,
    /// table or json.
    #[arg(long, default_value = "table")]
    format: String,
    /// state=STATE, name=NAME or tag=KEY=VALUE (repeatable).
    #[arg(long, short = 'f', value_name = "FILTER")]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL (default 10).
    #[arg(long, short = 't', value_name = "SECONDS")]
    time: Option<u64>,
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Stop running sandboxes first.
    #[arg(long, short = 'f')]
    force: bool,
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Sandbox id or name.
    id: String,
    /// Idle seconds before the sandbox is stopped (-1: never).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    keep_warm_seconds: Option<i64>,
    /// Maximum lifetime in seconds, counted from creation (0: none).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Block (true) or allow (false) all egress of a bridge-network sandbox.
    #[arg(long, value_name = "BOOL")]
    block_network: Option<bool>,
    /// Egress only to these CIDRs, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "CIDR", conflicts_with = "no_cidr_allowlist")]
    cidr_allowlist: Option<Vec<String>>,
    /// Remove the CIDR allowlist (egress to anywhere again, unless --block-network true).
    #[arg(long)]
    no_cidr_allowlist: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing until the sandbox exits.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the last BYTES bytes.
    #[arg(long, value_name = "BYTES")]
    tail: Option<u64>,
    /// Sandbox id or name.
    id: String,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(long, short = 's', default_value = "TERM")]
    signal: String,
    /// Sandbox id or name.
    id: String,
    /// Pid inside the sandbox (see beam top).
    pid: i32,
}

/// Run a sandbox command; its exit status.
pub fn main(d: &DaemonArgs, cmd: Cmd) -> Result<i32, Error> {
    let c = Client::new(d)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| usage(format!("tokio runtime: {e}")))?;
    let r = rt.block_on(dispatch(&c, cmd));
    // Threads reading our stdin may still be blocked in read(2): don't wait for them.
    rt.shutdown_background();
    match r {
        Err(Error::BrokenPipe) => Ok(141),
        r => r,
    }
}

async fn dispatch(c: &Client, cmd: Cmd) -> Result<i32, Error> {
    match cmd {
        Cmd::Run(a) => run::run(c, a).await,
        Cmd::Exec(a) => exec::exec(c, a).await,
        Cmd::Shell { id } => exec::shell(c, &id).await,
        Cmd::Container { cmd } => container(c, cmd).await,
        Cmd::Ps(a) => list(c, a).await,
        Cmd::Stop(a) => stop(c, a).await,
        Cmd::Rm(a) => rm(c, a).await,
        Cmd::Inspect(a) => inspect(c, &a.id).await,
        Cmd::Wait(a) => wait(c, &a.id).await,
        Cmd::Logs(a) => logs(c, a).await,
        Cmd::Top(a) => top(c, &a.id).await,
        Cmd::Kill(a) => kill(c, a).await,
        Cmd::Cp(a) => cp::cp(c, a).await,
        Cmd::Port(a) => port(c, a).await,
        Cmd::Version => version(c).await,
    }
}

async fn container(c: &Client, cmd: ContainerCmd) -> Result<i32, Error> {
    match cmd {
        ContainerCmd::List(a) => list(c, a).await,
        ContainerCmd::Stop(a) => stop(c, a).await,
        ContainerCmd::Rm(a) => rm(c, a).await,
        ContainerCmd::Inspect(a) => inspect(c, &a.id).await,
        ContainerCmd::Update(a) => update(c, a).await,
        ContainerCmd::Wait(a) => wait(c, &a.id).await,
        ContainerCmd::Logs(a) => logs(c, a).await,
        ContainerCmd::Top(a) => top(c, &a.id).await,
        ContainerCmd::Kill(a) => kill(c, a).await,
        ContainerCmd::Port(a) => port(c, a).await,
    }
}

/// Write to our stdout now (streams: logs, exec output, downloads).
pub fn out(b: &[u8]) -> Result<(), Error> {
    let mut o = std::io::stdout().lock();
    o.write_all(b).and_then(|_| o.flush()).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Error::BrokenPipe,
        _ => usage(format!("writing to stdout: {e}")),
    })
}

/// Write to our stderr now; errors are ignored (nowhere left to report them).
pub fn err_out(b: &[u8]) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(b);
    let _ = e.flush();
}

/// A table with columns sized to their contents (the last one unpadded).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// `1m 20s`, `2h 5m`, `3d 4h`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// An exit reason as the API spells it (`oom-killed`).
pub fn reason_str(r: api::ExitReason) -> String {
    serde_json::to_value(r).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// `running`, `exited (0)`, `exited (137) stopped`.
pub fn status(sb: &Sandbox) -> String {
    if sb.state != SandboxState::Exited {
        return sb.state.as_str().to_string();
    }
    let mut s = "exited".to_string();
    if let Some(c) = sb.exit_code {
        s.push_str(&format!(" ({c})"));
    }
    match sb.reason {
        Some(api::ExitReason::Exited) | None => {}
        Some(r) => {
            s.push(' ');
            s.push_str(&reason_str(r));
        }
    }
    s
}

fn list_row(sb: &Sandbox, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let uptime = match (sb.state, sb.started_at) {
        (SandboxState::Running, Some(t)) => duration((now - t).num_seconds()),
        _ => "-".into(),
    };
    vec![sb.id.clone(), status(sb), sb.image.clone(), human::age(sb.created_at), uptime]
}

/// The query string for `--filter`s; whether one names a state.
fn list_query(filters: &[String]) -> Result<(String, bool), Error> {
    let mut qs = Vec::new();
    let mut state = false;
    for f in filters {
        let bad = || usage(format!("--filter {f:?}: use state=STATE, name=NAME or tag=KEY=VALUE"));
        let (k, v) = f.split_once('=').ok_or_else(bad)?;
        match k {
            "state" | "status" => {
                if !["pending", "running", "stopping", "exited"].contains(&v) {
                    return Err(usage(format!("--filter {f:?}: the states are pending, running, stopping and exited")));
                }
                state = true;
                qs.push(format!("state={}", q(v)));
            }
            "name" if !v.is_empty() => qs.push(format!("name={}", q(v))),
            "tag" | "label" if v.split_once('=').is_some_and(|(k, _)| !k.is_empty()) => qs.push(format!("tag={}", q(v))),
            _ => return Err(bad()),
        }
    }
    let s = if qs.is_empty() { String::new() } else { format!("?{}", qs.join("&")) };
    Ok((s, state))
}

async fn list(c: &Client, a: ListArgs) -> Result<i32, Error> {
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

async fn stop(c: &Client, a: StopArgs) -> Result<i32, Error> {
    let body = StopSandbox { grace_seconds: a.time };
    each(&a.ids, |id| {
        let body = body.clone();
        async move { c.json::<_, Sandbox>(Method::POST, &sandbox_path(&id, "/stop"), Some(&body)).await.map(|_| ()) }
    })
    .await
}

async fn rm(c: &Client, a: RmArgs) -> Result<i32, Error> {
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

async fn inspect(c: &Client, id: &str) -> Result<i32, Error> {
    let v: serde_json::Value = c.get(&sandbox_path(id, "")).await?;
    out(format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes())?;
    Ok(0)
}

/// `beam port`: expose a port (and forward it) when one is given, then list the URLs and forwards.
async fn port(c: &Client, a: PortArgs) -> Result<i32, Error> {
    let sb: Sandbox = match a.port {
        None => c.get(&sandbox_path(&a.id, "")).await?,
        Some(0) => return Err(usage("port 0: give a port between 1 and 65535")),
        Some(port) => {
            let (host_port, host_ip) = match &a.publish {
                None => (None, None),
                Some(spec) => {
                    let p = run::parse_publish(&format!("{spec}:{port}"))?;
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

async fn update(c: &Client, a: UpdateArgs) -> Result<i32, Error> {
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

/// Wait until the sandbox has exited (in rounds, so no connection sits idle for long).
pub async fn wait_exited(c: &Client, id: &str) -> Result<Sandbox, Error> {
    loop {
        let sb: Sandbox = c.json(Method::POST, &sandbox_path(id, "/wait?timeout_seconds=60"), None::<&()>).await?;
        if sb.state == SandboxState::Exited {
            return Ok(sb);
        }
    }
}

/// The exit status to give for an exited sandbox.
pub fn exit_status(sb: &Sandbox) -> i32 {
    sb.exit_code.unwrap_or(1)
}

async fn wait(c: &Client, id: &str) -> Result<i32, Error> {
    let sb = wait_exited(c, id).await?;
    let code = exit_status(&sb);
    println!("{code}");
    Ok(code)
}

/// Copy a streamed body to our stdout as it arrives.
pub async fn stream_to_stdout(c: &Client, path: &str) -> Result<(), Error> {
    let resp = c.call(Method::GET, path, None::<&()>).await?;
    let mut body = resp.into_body();
    while let Some(chunk) = client::next_chunk(&mut body).await? {
        out(&chunk)?;
    }
    Ok(())
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

async fn logs(c: &Client, a: LogsArgs) -> Result<i32, Error> {
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

async fn top(c: &Client, id: &str) -> Result<i32, Error> {
    let l: ProcessList = c.get(&sandbox_path(id, "/processes")).await?;
    out(top_table(&l).as_bytes())?;
    Ok(0)
}

async fn kill(c: &Client, a: KillArgs) -> Result<i32, Error> {
    let sig = a.signal.trim();
    if sig.is_empty() {
        return Err(usage("--signal: give a name (TERM, SIGKILL) or a number"));
    }
    let body = SignalRequest { signal: sig.to_string() };
    c.no_content(Method::POST, &sandbox_path(&a.id, &format!("/processes/{}/signal", a.pid)), Some(&body)).await?;
    Ok(0)
}

async fn version(c: &Client) -> Result<i32, Error> {
    println!("beam  {}", env!("CARGO_PKG_VERSION"));
    let v: api::Version = c.get(&format!("{}/version", api::PREFIX)).await?;
    println!("beamd {} (API {}, cgroup {}, landlock ABI {})", v.version, v.api, v.cgroup, v.landlock_abi);
    Ok(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    pub struct T {
        #[command(subcommand)]
        pub cmd: Cmd,
    }

    pub fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        T::try_parse_from(std::iter::once("beam").chain(args.iter().copied())).map(|t| t.cmd)
    }

    pub fn sandbox(state: SandboxState) -> Sandbox {
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
    fn tables() {
        let t = table(&["ID", "STATUS", "CMD"], &[vec!["a".into(), "running".into(), "sh -c x".into()], vec!["bbbbbb".into(), "x".into(), "".into()]]);
        assert_eq!(t, "ID       STATUS    CMD\na        running   sh -c x\nbbbbbb   x\n");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(80), "1m 20s");
        assert_eq!(duration(3600 * 2 + 300), "2h 5m");
        assert_eq!(duration(86400 * 3 + 3600 * 4 + 7), "3d 4h");
        assert_eq!(duration(-3), "0s");
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
    fn filters() {
        assert_eq!(list_query(&[]).unwrap(), (String::new(), false));
        let f = |v: &[&str]| list_query(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(f(&["state=exited", "tag=team=a b"]).unwrap(), ("?state=exited&tag=team%3Da%20b".into(), true));
        assert_eq!(f(&["name=web"]).unwrap(), ("?name=web".into(), false));
        for bad in ["state=gone", "colour=red", "tag=novalue", "tag==x", "name=", "plain"] {
            assert!(f(&[bad]).is_err(), "{bad}");
        }
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

    #[test]
    fn verbs_parse() {
        assert!(matches!(parse(&["ps", "-a", "--filter", "state=exited"]), Ok(Cmd::Ps(ListArgs { all: true, .. }))));
        assert!(matches!(parse(&["container", "ls"]), Ok(Cmd::Container { cmd: ContainerCmd::List(_) })));
        assert!(matches!(parse(&["container", "list", "--format", "json"]), Ok(Cmd::Container { cmd: ContainerCmd::List(_) })));
        match parse(&["stop", "--time", "3", "a", "b"]) {
            Ok(Cmd::Stop(s)) => assert_eq!((s.time, s.ids), (Some(3), vec!["a".to_string(), "b".to_string()])),
            _ => panic!("stop"),
        }
        assert!(parse(&["stop"]).is_err());
        match parse(&["container", "update", "x", "--keep-warm-seconds", "-1"]) {
            Ok(Cmd::Container { cmd: ContainerCmd::Update(u) }) => assert_eq!(u.keep_warm_seconds, Some(-1)),
            _ => panic!("update"),
        }
        match parse(&["kill", "x", "42"]) {
            Ok(Cmd::Kill(k)) => assert_eq!((k.signal.as_str(), k.pid), ("TERM", 42)),
            _ => panic!("kill"),
        }
        assert!(parse(&["kill", "-s", "KILL", "x", "notapid"]).is_err());
        assert!(matches!(parse(&["rm", "-f", "x"]), Ok(Cmd::Rm(RmArgs { force: true, .. }))));
        assert!(matches!(parse(&["logs", "-f", "--tail", "10", "x"]), Ok(Cmd::Logs(LogsArgs { follow: true, tail: Some(10), .. }))));
    }
}
