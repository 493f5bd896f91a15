//! `beamd`: the sandbox daemon. `sudo beamd` serves the HTTP/JSON API on /run/beam/beamd.sock.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "beamd", about = "beamd: the beam sandbox daemon (HTTP/JSON API on a unix socket)", version)]
struct Args {
    /// State root: the image store and the sandboxes.
    #[arg(long, env = "BEAM_ROOT", default_value = "/var/lib/beam")]
    root: PathBuf,
    /// Runtime state and the socket's default dir (a tmpfs).
    #[arg(long, env = "BEAM_RUN_DIR", default_value = "/run/beam")]
    run_dir: PathBuf,
    /// The API's unix socket (default <run-dir>/beamd.sock).
    #[arg(long, env = "BEAM_SOCKET")]
    socket: Option<PathBuf>,
    /// Also serve the API on this TCP address (e.g. 127.0.0.1:7070); needs --token-file.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// A file holding the bearer token every TCP request must send.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The gateway to sandbox ports: ADDR (host:port) or `none` [default: 127.0.0.1:8790].
    #[arg(long, env = "BEAM_GATEWAY", value_name = "ADDR|none")]
    gateway: Option<String>,
    /// Sandbox networking: `bridge` (each sandbox gets an address on the `beam0` bridge, NAT egress and a
    /// per-sandbox egress policy, in nftables tables `inet beam` and `bridge beam`; turns net.ipv4.ip_forward
    /// on while beam's bridge exists) or `none` (every sandbox loopback only; ports still reach the gateway).
    #[arg(long, env = "BEAM_NETWORK", default_value = "bridge", value_parser = ["bridge", "none"])]
    network: String,
    /// The sandbox subnet for --network bridge (default: the first free /16 of 10.88.0.0/16, 10.89.0.0/16, …).
    #[arg(long)]
    network_subnet: Option<ipnet::Ipv4Net>,
    /// The network namespace the bridge lives in (default: beamd's own); e.g. /proc/<pid>/ns/net.
    #[arg(long)]
    network_netns: Option<PathBuf>,
    /// The MTU of the bridge and sandbox links (default: the host's uplink MTU, i.e. the smallest of the
    /// links its default routes use; 1500 without one).
    #[arg(long, value_parser = clap::value_parser!(u32).range(576..=65535))]
    network_mtu: Option<u32>,
    /// The domain of gateway URLs: http://<sandbox>-<port>.<domain>:<gateway port>/.
    #[arg(long, env = "BEAM_GATEWAY_DOMAIN", default_value = beam::gateway::DEFAULT_DOMAIN)]
    gateway_domain: String,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log debug messages (or set RUST_LOG).
    #[arg(long)]
    debug: bool,
}

fn main() {
    let args = Args::parse();
    let level = if args.debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = if args.log_format == "json" { builder.json().try_init() } else { builder.try_init() };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("beamd: must run as root (it creates namespaces, cgroups and mounts); try: sudo beamd");
        std::process::exit(1);
    }
    let token = match &args.token_file {
        None => None,
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                eprintln!("beamd: token file {} is empty; put a long random token in it", p.display());
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("beamd: reading token file {}: {e}", p.display());
                std::process::exit(1);
            }
        },
    };
    let gateway = match args.gateway.as_deref().map(str::trim) {
        Some("none" | "off") => None,
        given => {
            let addr = given.unwrap_or(beam::gateway::DEFAULT_ADDR);
            let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
                eprintln!("beamd: --gateway {addr:?} is not an address; use host:port (e.g. 127.0.0.1:8790) or none");
                std::process::exit(2);
            };
            let config = beam::gateway::Config { addr, domain: args.gateway_domain.clone() };
            Some(beam::daemon::GatewayOptions { config, required: given.is_some() })
        }
    };
    let opts = beam::daemon::Options {
        socket: args.socket.clone().unwrap_or_else(|| args.run_dir.join("beamd.sock")),
        root: args.root,
        run_dir: args.run_dir,
        listen: args.listen,
        token,
        gateway,
        network: (args.network == "bridge").then(|| beam::sandbox::manager::NetworkConfig {
            host_netns: args.network_netns.clone(),
            subnet: args.network_subnet,
            mtu: args.network_mtu,
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(beam::daemon::run(opts)) {
        eprintln!("beamd: {e}");
        std::process::exit(1);
    }
    // Leave at once: sandboxes are not ours to wait for, and stray blocking tasks must not hold us.
    rt.shutdown_background();
}
