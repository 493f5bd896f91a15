//! `beam`: the beam command line. Image commands work on the local store directly; sandbox commands
//! (`beam run`, `beam exec`, …) arrive with beamd and will go through its API.

mod human;
mod image;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "beam", about = "beam: sandboxes for code you don't trust", version)]
struct Cli {
    /// State root (image store, containers).
    #[arg(long, global = true, env = "BEAM_ROOT", default_value = "/var/lib/beam")]
    root: PathBuf,
    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage images: pull, push, import, build, ls, inspect, rm, gc, run.
    Image {
        #[command(subcommand)]
        cmd: image::ImageCmd,
    },
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
        Cmd::Image { cmd } => image::run(&cli.root, cmd),
    };
    std::process::exit(match code {
        Ok(c) => c,
        Err(e) => {
            eprintln!("beam: {e}");
            1
        }
    });
}
