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
    let opts = beam::daemon::Options {
        socket: args.socket.clone().unwrap_or_else(|| args.run_dir.join("beamd.sock")),
        root: args.root,
        run_dir: args.run_dir,
        listen: args.listen,
        token,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(beam::daemon::run(opts)) {
        eprintln!("beamd: {e}");
        std::process::exit(1);
    }
    // Leave at once: sandboxes are not ours to wait for, and stray blocking tasks must not hold us.
    rt.shutdown_background();
}
