//! `beam-oci`: a runc-compatible OCI runtime on beam's runtime library.

use beam::runtime::verbs::{self, Error, Global};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod logging;

#[derive(Parser)]
#[command(name = "beam-oci", about = "beam's OCI runtime (runc-compatible)", disable_version_flag = true)]
struct Cli {
    /// Where container state lives.
    #[arg(long, global = true, default_value = "/run/beam-oci")]
    root: PathBuf,
    /// Write logs (and errors) to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported: an error when asked).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// runc's global `--rootless [true|false|auto]` (accepted; beam-oci detects what it needs). For `spec`,
    /// `--rootless` writes a rootless config.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// The CRIU binary for checkpoint and restore (default: criu on PATH).
    #[arg(long, global = true, env = "BEAM_CRIU")]
    criu: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// The flags `create` and `run` share.
#[derive(Args)]
struct CreateArgs {
    /// The bundle: a directory with config.json and the root filesystem.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container init's host pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is true.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Pass this many fds after stdio (3, 4, …) into the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// chroot instead of pivot_root (for ramdisk roots).
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (beam-oci never creates session keyrings).
    #[arg(long, hide = true)]
    no_new_keyring: bool,
}

/// CRIU's flags, as runc names them.
#[derive(Args)]
struct CriuArgs {
    /// Where CRIU's image files go (checkpoint) or come from (restore).
    #[arg(long)]
    image_path: PathBuf,
    /// Where CRIU writes its logs (default: the image path).
    #[arg(long)]
    work_path: Option<PathBuf>,
    /// Dump and restore established TCP connections.
    #[arg(long)]
    tcp_established: bool,
    /// Allow unix sockets connected to the outside.
    #[arg(long)]
    ext_unix_sk: bool,
    /// The container runs in a terminal session (its tty is taken over).
    #[arg(long)]
    shell_job: bool,
    /// Dump and restore file locks.
    #[arg(long)]
    file_locks: bool,
    /// Accepted for runc compatibility: cgroups are always beam-oci's (CRIU's are ignored).
    #[arg(long, hide = true)]
    manage_cgroups_mode: Option<String>,
}

impl CriuArgs {
    fn options(self, criu: Option<&str>) -> verbs::checkpoint::CriuOptions {
        verbs::checkpoint::CriuOptions {
            criu: criu.map(PathBuf::from),
            image_path: self.image_path,
            work_path: self.work_path,
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create {
        #[command(flatten)]
        c: CreateArgs,
        id: String,
    },
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (name or number; default SIGTERM) to the container's init, or every process with --all.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped container (or any, with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, wait for it and delete it (unless --detach or --keep).
    Run {
        #[command(flatten)]
        c: CreateArgs,
        /// Return once the container has started instead of waiting for it.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits (delete it later).
        #[arg(long)]
        keep: bool,
        id: String,
    },
    /// Run a new process in a container.
    Exec {
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(short, long)]
        env: Vec<String>,
        /// uid[:gid]
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        #[arg(long)]
        no_new_privs: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List the processes in a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process in a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update {
        /// A linux.resources JSON file, or - for stdin.
        #[arg(short, long)]
        resources: Option<String>,
        #[arg(long)]
        memory: Option<i64>,
        #[arg(long)]
        pids_limit: Option<i64>,
        #[arg(long)]
        cpu_quota: Option<i64>,
        #[arg(long)]
        cpu_period: Option<u64>,
        #[arg(long)]
        cpu_shares: Option<u64>,
        id: String,
    },
    /// Print resource usage and OOM events.
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print the features this runtime supports (JSON).
    Features,
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Dump a running container's processes to --image-path with CRIU (destroys it unless --leave-running).
    Checkpoint {
        #[command(flatten)]
        criu: CriuArgs,
        /// Keep the container running after the dump.
        #[arg(long)]
        leave_running: bool,
        id: String,
    },
    /// A container from a checkpoint in --image-path, on the bundle's root filesystem.
    Restore {
        #[command(flatten)]
        criu: CriuArgs,
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Write the container init's host pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Return once restored instead of waiting for the container's init.
        #[arg(short, long)]
        detach: bool,
        /// Accepted for runc compatibility; a restored terminal is taken over as it was (--shell-job).
        #[arg(long, hide = true)]
        console_socket: Option<PathBuf>,
        /// Accepted for runc compatibility (no keyrings).
        #[arg(long, hide = true)]
        no_new_keyring: bool,
        /// Accepted for runc compatibility (chroot roots are not restorable).
        #[arg(long, hide = true)]
        no_pivot: bool,
        id: String,
    },
    /// Write a starting config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

fn parse_interval(s: &str) -> Result<std::time::Duration, Error> {
    let bad = || Error::Usage(format!("--interval {s:?}: use a duration like 5s or 500ms"));
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(std::time::Duration::from_millis).map_err(|_| bad());
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>().ok().filter(|v| *v > 0.0).map(std::time::Duration::from_secs_f64).ok_or_else(bad)
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        println!("beam-oci version {}\nspec: 1.2.0", env!("CARGO_PKG_VERSION"));
        return;
    }
    logging::init(cli.log.as_deref(), matches!(cli.log_format, LogFormat::Json), cli.debug);
    let code = match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            logging::print_error(&e.to_string());
            1
        }
    };
    std::process::exit(code);
}

#[allow(clippy::too_many_lines, reason = "the dispatch of every runc verb, one arm each")]
fn real_main(cli: Cli) -> Result<i32, Error> {
    let Some(cmd) = cli.cmd else {
        return Err(Error::Usage("no command given; see beam-oci --help".into()));
    };
    if cli.systemd_cgroup {
        return Err(Error::Usage(
            "--systemd-cgroup: beam-oci manages cgroups through cgroupfs only; drop the flag (podman: --cgroup-manager=cgroupfs)".into(),
        ));
    }
    let g = Global { root: cli.root.clone() };
    match cmd {
        Cmd::Create { c, id } => {
            let root = g.root()?;
            let console = match c.console_socket {
                Some(p) => Some(beam::runtime::console::connect_console_socket(&p)?),
                None => None,
            };
            let opts = verbs::create::CreateOptions {
                id,
                bundle: c.bundle,
                pid_file: c.pid_file,
                console,
                preserve_fds: c.preserve_fds,
                no_pivot: c.no_pivot,
                fds: Vec::new(),
            };
            verbs::create::create(&root, opts)?;
        }
        Cmd::Start { id } => verbs::start::start(&g.root()?, &id)?,
        Cmd::State { id } => print_json(&verbs::list::state(&g.root()?, &id)?),
        Cmd::Kill { all, id, signal } => {
            let sig = verbs::parse_signal(&signal)?;
            verbs::kill::kill(&g.root()?, &id, sig, all)?
        }
        Cmd::Delete { force, id } => verbs::delete::delete(&g.root()?, &id, force)?,
        Cmd::Run { c, detach, keep, id } => {
            let opts = verbs::run::RunOptions {
                id,
                bundle: c.bundle,
                pid_file: c.pid_file,
                console_socket: c.console_socket,
                preserve_fds: c.preserve_fds,
                no_pivot: c.no_pivot,
                detach,
                keep,
            };
            return verbs::run::run(&g.root()?, opts);
        }
        Cmd::Exec {
            process, detach, pid_file, tty, console_socket, cwd, env, user, additional_gids, no_new_privs,
            preserve_fds, id, args,
        } => {
            let args = if args.first().map(String::as_str) == Some("--") { args[1..].to_vec() } else { args };
            return verbs::exec::exec(
                &g.root()?,
                verbs::exec::ExecOptions {
                    id, process, args, detach, pid_file, tty, console_socket, cwd, env, user, additional_gids,
                    no_new_privs, preserve_fds,
                },
            );
        }
        Cmd::Ps { format, id, ps_args } => {
            let root = g.root()?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string(&verbs::ps::pids(&root, &id)?).expect("json")),
                "table" => print!("{}", verbs::ps::table(&root, &id, &ps_args)?),
                f => return Err(Error::Usage(format!("--format {f:?}: use table or json"))),
            }
        }
        Cmd::Checkpoint { criu, leave_running, id } => {
            verbs::checkpoint::checkpoint(&g.root()?, &id, &criu.options(cli.criu.as_deref()), leave_running)?
        }
        Cmd::Restore { criu, bundle, pid_file, detach, id, .. } => {
            let o = verbs::checkpoint::RestoreOptions { id, bundle, pid_file, detach, criu: criu.options(cli.criu.as_deref()) };
            return verbs::checkpoint::restore(&g.root()?, &o);
        }
        Cmd::Pause { id } => verbs::pause::pause(&g.root()?, &id)?,
        Cmd::Resume { id } => verbs::pause::resume(&g.root()?, &id)?,
        Cmd::Update { resources, memory, pids_limit, cpu_quota, cpu_period, cpu_shares, id } => {
            let mut r = match resources.as_deref() {
                Some("-") => {
                    let text = std::io::read_to_string(std::io::stdin()).map_err(Error::io("read --resources from stdin"))?;
                    verbs::update::parse(&text, "-")?
                }
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(Error::io(format!("read --resources {p}")))?;
                    verbs::update::parse(&text, p)?
                }
                None => Default::default(),
            };
            let mut json = serde_json::to_value(&r).expect("json");
            let set = |json: &mut serde_json::Value, sect: &str, key: &str, v: serde_json::Value| {
                if json.get(sect).is_none_or(|s| s.is_null()) {
                    json[sect] = serde_json::json!({});
                }
                json[sect][key] = v;
            };
            if let Some(m) = memory { set(&mut json, "memory", "limit", m.into()) }
            if let Some(p) = pids_limit { set(&mut json, "pids", "limit", p.into()) }
            if let Some(q) = cpu_quota { set(&mut json, "cpu", "quota", q.into()) }
            if let Some(p) = cpu_period { set(&mut json, "cpu", "period", p.into()) }
            if let Some(s) = cpu_shares { set(&mut json, "cpu", "shares", s.into()) }
            r = serde_json::from_value(json).map_err(|e| Error::Usage(format!("update: {e}")))?;
            verbs::update::update(&g.root()?, &id, &r)?
        }
        Cmd::Events { stats, interval, id } => {
            let root = g.root()?;
            if stats {
                println!("{}", verbs::events::stats(&root, &id)?);
            } else {
                verbs::events::stream(&root, &id, parse_interval(&interval)?, &mut std::io::stdout())?;
            }
        }
        Cmd::Features => print_json(&verbs::features::features()),
        Cmd::List { format, quiet } => {
            let items = verbs::list::list(&g.root()?);
            if quiet {
                for v in &items {
                    println!("{}", v["id"].as_str().unwrap_or_default());
                }
            } else if format == "json" {
                println!("{}", serde_json::Value::Array(items));
            } else {
                print!("{}", verbs::list::table(&items));
            }
        }
        Cmd::Spec { bundle } => {
            let rootless = cli.rootless.as_deref().is_some_and(|v| v != "false");
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(Error::Usage(format!("{} already exists; remove it first", path.display())));
            }
            let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
            let v = verbs::spec::default_spec(rootless, uid, gid);
            std::fs::write(&path, serde_json::to_string_pretty(&v).expect("json"))
                .map_err(Error::io(format!("write {}", path.display())))?;
        }
    }
    Ok(0)
}
