//! `beam`: the beam command line. Image commands (`beam image …`) work on the local store directly;
//! the sandbox commands (`beam run`, `exec`, `shell`, `container …`, `ps`, `stop`, `rm`, `logs`,
//! `cp`, `version`, …) only talk to beamd over its HTTP/JSON API, on its unix socket (`--socket`) or
//! over TCP (`--url`, with a token).

mod args;
mod client;
mod container;
mod cp;
mod exec;
mod human;
mod image;
mod output;
mod run;
mod sandbox;
mod snapshot;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "beam", about = "beam: sandboxes for code you don't trust", version)]
struct Cli {
    /// State root (image store, containers).
    #[arg(long, global = true, help_heading = "Global options", env = "BEAM_ROOT", default_value = "/var/lib/beam")]
    root: PathBuf,
    /// Log debug messages.
    #[arg(long, global = true, help_heading = "Global options")]
    debug: bool,
    #[command(flatten)]
    daemon: client::DaemonArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of the larger variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Manage images: pull, push, import, build, ls, inspect, rm, gc, run.
    Image {
        #[command(subcommand)]
        cmd: image::ImageCmd,
    },
    #[command(flatten)]
    Sandbox(sandbox::Cmd),
}

fn main() {
    let cli = Cli::parse();
    let level = if cli.debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
    let code = match cli.cmd {
        Cmd::Image { cmd } => image::run(&cli.root, cmd).map_err(|e| e.to_string()),
        Cmd::Sandbox(cmd) => sandbox::main(&cli.daemon, cmd).map_err(|e| e.to_string()),
    };
    std::process::exit(match code {
        Ok(c) => c,
        Err(e) => {
            eprintln!("beam: {e}");
            1
        }
    });
}
