//! `beam run`: pull the image, create a sandbox, follow its entrypoint's output.

use crate::args::{parse_env, parse_memory, parse_publish, parse_tags, split};
use crate::client::{self, Client, Error, usage};
use crate::output::{err_out, exit_status, reason_str, stream_to_stdout};
use beam::api::{self, CreateSandbox, ImageList, PullProgress, PullRequest, Sandbox};
use clap::Args;
use hyper::Method;

#[derive(Args)]
pub struct RunArgs {
    /// Image reference or id (pulled when missing).
    #[arg(long)]
    image: String,
    /// Entrypoint command line, split like a shell would: --entrypoint "python3 -m http.server 8888".
    #[arg(long, value_name = "CMD ARGS")]
    entrypoint: Option<String>,
    /// Ports the sandbox serves (repeatable or comma-separated).
    #[arg(long, alias = "port", short = 'p', value_delimiter = ',', value_name = "PORT")]
    ports: Vec<u16>,
    /// Forward a sandbox port as raw TCP from a host port: [HOST_IP:]HOST_PORT:PORT (repeatable; the host
    /// address defaults to 127.0.0.1).
    #[arg(long, value_name = "[IP:]HOST_PORT:PORT")]
    publish: Vec<String>,
    /// Require a token at the gateway for the ports' URLs (printed with them).
    #[arg(long)]
    authorized: bool,
    /// CPU cores, fractional (default 1).
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory: MiB (1024) or with a unit (512Mi, 1Gi, 2G); default 1Gi.
    #[arg(long)]
    memory: Option<String>,
    /// Maximum number of processes (default 1024).
    #[arg(long)]
    pids: Option<u32>,
    /// Environment variable KEY=VALUE; KEY alone passes on this shell's value (repeatable).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory of the entrypoint and of execs.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// uid[:gid] or name[:group] in the image.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Idle seconds before the sandbox is stopped (default 600; -1 never).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    keep_warm_seconds: Option<i64>,
    /// Maximum lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// A name to use instead of the id.
    #[arg(long)]
    name: Option<String>,
    /// A tag KEY=VALUE (repeatable), for beam ps --filter tag=KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Vec<String>,
    /// Run the image's own Entrypoint and Cmd.
    #[arg(long)]
    image_cmd: bool,
    /// Don't follow the entrypoint's output; print the id and return.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Run without a user namespace (container root is host root).
    #[arg(long)]
    insecure_no_userns: bool,
    /// Run without the seccomp filter.
    #[arg(long)]
    insecure_no_seccomp: bool,
    /// Run without landlock.
    #[arg(long)]
    insecure_no_landlock: bool,
    /// A landlock preset: writable-root (the default: the whole root filesystem writable) or
    /// read-only-system (/, /usr, /bin, /lib… read-only).
    #[arg(long, value_parser = ["writable-root", "read-only-system"], value_name = "PRESET")]
    landlock: Option<String>,
    /// Add a capability to the default set (repeatable or comma-separated): NET_RAW, MKNOD, AUDIT_WRITE.
    #[arg(long, value_delimiter = ',', value_name = "CAP")]
    cap_add: Vec<String>,
    /// `bridge` (an address on beamd's bridge, NAT egress) or `none` (loopback only); default: beamd's.
    #[arg(long, value_parser = ["bridge", "none"])]
    network: Option<String>,
    /// No egress at all (bridge network).
    #[arg(long)]
    block_network: bool,
    /// Egress only to these CIDRs (bridge network), comma-separated: 10.0.0.0/8,1.1.1.1/32.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    cidr_allowlist: Option<Vec<String>>,
    /// Arguments after `--`: the command (Docker's CMD; appended to the image's entrypoint unless --entrypoint).
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// The create request for these flags (checked here as far as the client can).
fn create_request(a: &RunArgs, lookup: impl Fn(&str) -> Option<String>) -> Result<CreateSandbox, Error> {
    let entrypoint = match &a.entrypoint {
        Some(e) => {
            let v = split(e).map_err(|m| usage(format!("--entrypoint {m}")))?;
            if v.is_empty() {
                return Err(usage("--entrypoint is empty; give a command, e.g. --entrypoint \"python3 -m http.server\""));
            }
            Some(v)
        }
        None => None,
    };
    if let Some(c) = a.cpu
        && !(c.is_finite() && c > 0.0)
    {
        return Err(usage(format!("--cpu {c}: give a positive number of cores, e.g. 0.5 or 2")));
    }
    if a.keep_warm_seconds.is_some_and(|k| k < -1) {
        return Err(usage("--keep-warm-seconds: give seconds, or -1 for never"));
    }
    if a.pids == Some(0) {
        return Err(usage("--pids 0: a sandbox needs at least one process"));
    }
    if a.ports.contains(&0) {
        return Err(usage("--ports 0: give ports between 1 and 65535"));
    }
    if a.image.trim().is_empty() {
        return Err(usage("--image is empty"));
    }
    let memory = a.memory.as_deref().map(parse_memory);
    Ok(CreateSandbox {
        image: a.image.clone(),
        entrypoint,
        cmd: if a.cmd.is_empty() { None } else { Some(a.cmd.clone()) },
        image_command: a.image_cmd,
        env: parse_env(&a.env, lookup)?,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        cpu: a.cpu,
        memory,
        pids: a.pids,
        ports: a.ports.clone(),
        publish: a.publish.iter().map(|p| parse_publish(p)).collect::<Result<_, _>>()?,
        authorized: a.authorized,
        keep_warm_seconds: a.keep_warm_seconds,
        timeout_seconds: a.timeout,
        name: a.name.clone(),
        tags: parse_tags(&a.tag)?,
        landlock: a.landlock.as_deref().map(|p| beam::api::LandlockPolicy {
            preset: Some(if p == "read-only-system" {
                beam::api::LandlockPreset::ReadOnlySystem
            } else {
                beam::api::LandlockPreset::WritableRoot
            }),
            ..Default::default()
        }),
        capabilities: a.cap_add.clone(),
        insecure_no_userns: a.insecure_no_userns,
        insecure_no_seccomp: a.insecure_no_seccomp,
        insecure_no_landlock: a.insecure_no_landlock,
        network: match a.network.as_deref() {
            Some("bridge") => Some(beam::api::NetworkMode::Bridge),
            Some(_) => Some(beam::api::NetworkMode::None),
            None => None,
        },
        block_network: a.block_network,
        cidr_allowlist: a.cidr_allowlist.clone(),
    })
}

/// Whether `image` names one of these (by name, with docker.io's defaults, or by id/prefix).
fn image_present(l: &ImageList, image: &str) -> bool {
    let mut names = vec![image.to_string()];
    let tagged = image.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')) || image.contains('@');
    if !tagged {
        names.push(format!("{image}:latest"));
    }
    for n in names.clone() {
        if !n.contains('/') {
            names.push(format!("docker.io/library/{n}"));
            // beamd's embedded recipes (busybox) are named beam.local/NAME.
            names.push(format!("beam.local/{n}"));
        } else if n.split('/').next().is_some_and(|h| !h.contains('.') && !h.contains(':') && h != "localhost") {
            names.push(format!("docker.io/{n}"));
        }
    }
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    let by_id = hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit());
    l.images.iter().any(|i| {
        i.names.iter().any(|n| names.contains(n)) || (by_id && i.id.strip_prefix("sha256:").unwrap_or(&i.id).starts_with(hex))
    })
}

/// One line of pull progress: printed; an error line becomes the error; true for the final success line.
fn pull_line(image: &str, line: &[u8]) -> Result<bool, Error> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let p: PullProgress = serde_json::from_slice(line)
        .map_err(|e| Error::Protocol(format!("pulling {image}: beamd sent an unexpected progress line ({e})")))?;
    if let Some(e) = p.error {
        return Err(usage(format!("pull {image}: {e}")));
    }
    err_out(format!("=> {}\n", p.status).as_bytes());
    Ok(p.id.is_some())
}

/// Pull `image` unless beamd has it, printing progress lines.
async fn pull(c: &Client, image: &str) -> Result<(), Error> {
    let l: ImageList = c.get(&format!("{}/images", api::PREFIX)).await?;
    if image_present(&l, image) {
        return Ok(());
    }
    let resp = c.call(Method::POST, &format!("{}/images/pull", api::PREFIX), Some(&PullRequest { image: image.to_string() })).await?;
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut done = false;
    while let Some(chunk) = client::next_chunk(&mut body).await? {
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            done |= pull_line(image, &line)?;
        }
    }
    done |= pull_line(image, &buf)?;
    if !done {
        return Err(Error::Protocol(format!("pulling {image}: beamd ended the progress stream without a result")));
    }
    Ok(())
}

/// Port lines: URLs if beamd's answer has them (a `urls` map of port → URL), else a note.
fn port_lines(v: &serde_json::Value, ports: &[u16]) -> Vec<String> {
    if ports.is_empty() {
        return vec![];
    }
    if let Some(urls) = v.get("urls").and_then(|u| u.as_object()).filter(|u| !u.is_empty()) {
        return ports
            .iter()
            .map(|p| match urls.get(&p.to_string()).and_then(|u| u.as_str()) {
                Some(u) => format!("=> Port {p}: {u}"),
                None => format!("=> Port {p}: (no URL)"),
            })
            .collect();
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    vec![format!("=> Ports: {} (reachable once networking is enabled)", list.join(", "))]
}

pub async fn run(c: &Client, a: RunArgs) -> Result<i32, Error> {
    let req = create_request(&a, |k| std::env::var(k).ok())?;
    pull(c, &a.image).await?;
    err_out(b"=> Creating sandbox\n");
    let v: serde_json::Value = c.json(Method::POST, &format!("{}/sandboxes", api::PREFIX), Some(&req)).await?;
    let sb: Sandbox = serde_json::from_value(v.clone())
        .map_err(|e| Error::Protocol(format!("beamd answered the create with an unexpected sandbox ({e}); are beam and beamd the same version?")))?;
    let id = sb.id.clone();
    err_out(format!("=> Container created successfully ===> {id}\n").as_bytes());
    for l in port_lines(&v, &sb.ports) {
        err_out(format!("{l}\n").as_bytes());
    }
    for p in &sb.published {
        err_out(format!("=> Port {} forwarded from {}:{} (TCP)\n", p.port, p.host_ip, p.host_port).as_bytes());
    }
    if let Some(t) = &sb.token {
        err_out(format!("=> Token: {t} (send Authorization: Bearer <token>, or open a URL once with ?beam_token=<token>)\n").as_bytes());
    }
    if sb.entrypoint.is_none() {
        err_out(format!("=> Exec into it: beam exec {id} -- sh\n").as_bytes());
        println!("{id}");
        return Ok(0);
    }
    if a.detach {
        err_out(format!("=> Logs: beam logs -f {id}\n").as_bytes());
        println!("{id}");
        return Ok(0);
    }
    let logs = client::sandbox_path(&id, "/logs?follow=true");
    let follow = stream_to_stdout(c, &logs);
    tokio::select! {
        r = follow => r?,
        _ = tokio::signal::ctrl_c() => {
            err_out(format!("\n=> Still running: beam stop {id}\n").as_bytes());
            return Ok(0);
        }
    }
    let sb = client::wait_exited(c, &id).await?;
    if let Some(r) = sb.reason.filter(|r| *r != api::ExitReason::Exited) {
        let why = sb.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        err_out(format!("=> Sandbox {id} exited: {}{why}\n", reason_str(r)).as_bytes());
    }
    Ok(exit_status(&sb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::tests::parse;
    use beam::api::MemorySize;

    fn sv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse::<RunArgs>(args) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn run_requests() {
        let a = run_args(&[
            "--image", "python:3.12", "--entrypoint", "python3 -m http.server 8888", "--ports", "8888", "-p", "9000,9001",
            "--memory", "1Gi", "--cpu", "0.5", "--env", "A=1", "--keep-warm-seconds", "-1", "--tag", "t=1", "--name", "web", "-d",
        ]);
        assert!(a.detach);
        let r = create_request(&a, |_| None).unwrap();
        assert_eq!(r.entrypoint, Some(sv(&["python3", "-m", "http.server", "8888"])));
        assert_eq!(r.ports, vec![8888, 9000, 9001]);
        assert_eq!(r.memory, Some(MemorySize::Text("1Gi".into())));
        assert_eq!(r.keep_warm_seconds, Some(-1));
        assert_eq!(r.cmd, None);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["name"], "web");
        assert_eq!(j["tags"]["t"], "1");
        assert!(j.get("insecure_no_userns").is_none());

        let r = create_request(&run_args(&["--image", "busybox", "--memory", "512", "--insecure-no-seccomp", "--", "sh", "-c", "echo hi"]), |_| None).unwrap();
        assert_eq!(r.cmd, Some(sv(&["sh", "-c", "echo hi"])));
        assert_eq!(r.memory, Some(MemorySize::MiB(512.0)));
        assert!(r.insecure_no_seccomp);
        assert!(r.capabilities.is_empty() && r.landlock.is_none());

        let r = create_request(&run_args(&["--image", "b", "--cap-add", "NET_RAW,mknod", "--landlock", "read-only-system"]), |_| None).unwrap();
        assert_eq!(r.capabilities, sv(&["NET_RAW", "mknod"]));
        assert_eq!(r.landlock.and_then(|l| l.preset), Some(api::LandlockPreset::ReadOnlySystem));
        assert!(parse::<RunArgs>(&["--image", "b", "--landlock", "strict"]).is_err());

        for bad in [
            &["--image", "b", "--entrypoint", "'open"][..],
            &["--image", "b", "--entrypoint", "  "],
            &["--image", "b", "--cpu", "0"],
            &["--image", "b", "--env", "=x"],
            &["--image", "b", "--tag", "x"],
            &["--image", "b", "--keep-warm-seconds", "-5"],
            &["--image", "b", "--ports", "0"],
        ] {
            assert!(create_request(&run_args(bad), |_| None).is_err(), "{bad:?}");
        }
        assert!(parse::<RunArgs>(&["--image", "b", "--cpu", "lots"]).is_err());
        assert!(parse::<RunArgs>(&["--image", "b", "--ports", "70000"]).is_err());
        assert!(parse::<RunArgs>(&["--entrypoint", "sh"]).is_err());
    }

    #[test]
    fn images_present() {
        let l = ImageList {
            images: vec![api::ImageSummary {
                id: "sha256:0123456789abcdef0123".into(),
                names: vec!["docker.io/library/busybox:latest".into(), "localhost:5000/app:v1".into()],
                size: 1,
                created: None,
            }],
        };
        let recipe = ImageList {
            images: vec![api::ImageSummary { id: "sha256:9da6".into(), names: vec!["beam.local/busybox:latest".into()], size: 1, created: None }],
        };
        assert!(image_present(&recipe, "busybox"));
        for yes in ["busybox", "busybox:latest", "docker.io/library/busybox", "localhost:5000/app:v1", "0123456789ab", "sha256:0123456789abcdef"] {
            assert!(image_present(&l, yes), "{yes}");
        }
        for no in ["busybox:1.36", "alpine", "localhost:5000/app", "0123", "fedcba987654"] {
            assert!(!image_present(&l, no), "{no}");
        }
    }

    #[test]
    fn ports() {
        let v = serde_json::json!({});
        assert_eq!(port_lines(&v, &[8888]), vec!["=> Ports: 8888 (reachable once networking is enabled)"]);
        assert!(port_lines(&v, &[]).is_empty());
        let v = serde_json::json!({"urls": {"8888": "https://x.example"}});
        assert_eq!(port_lines(&v, &[8888]), vec!["=> Port 8888: https://x.example"]);
    }
}
