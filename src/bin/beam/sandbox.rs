//! The sandbox commands: `beam run`, `exec`, `shell`, `container …` (`ps`, `stop`, `rm`, …), `cp`,
//! `snapshot`, `version`, dispatched to the files that implement them (run, exec, container, cp,
//! snapshot). They only talk to beamd over its API (see [`crate::client`]).

use crate::client::{Client, DaemonArgs, Error, usage};
use crate::container::{self, IdArg, KillArgs, ListArgs, LogsArgs, PortArgs, RmArgs, StopArgs, UpdateArgs};
use crate::snapshot::{self, SnapshotCmd};
use crate::{cp, exec, run};
use clap::Subcommand;

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
    /// Snapshots of a running sandbox: `beam snapshot fs ID [--tag NAME]` commits its filesystem as an image.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
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
        Cmd::Ps(a) => container::list(c, a).await,
        Cmd::Stop(a) => container::stop(c, a).await,
        Cmd::Rm(a) => container::rm(c, a).await,
        Cmd::Inspect(a) => container::inspect(c, &a.id).await,
        Cmd::Wait(a) => container::wait(c, &a.id).await,
        Cmd::Logs(a) => container::logs(c, a).await,
        Cmd::Top(a) => container::top(c, &a.id).await,
        Cmd::Kill(a) => container::kill(c, a).await,
        Cmd::Cp(a) => cp::cp(c, a).await,
        Cmd::Port(a) => container::port(c, a).await,
        Cmd::Snapshot { cmd } => snapshot::snapshot(c, cmd).await,
        Cmd::Version => container::version(c).await,
    }
}

async fn container(c: &Client, cmd: ContainerCmd) -> Result<i32, Error> {
    match cmd {
        ContainerCmd::List(a) => container::list(c, a).await,
        ContainerCmd::Stop(a) => container::stop(c, a).await,
        ContainerCmd::Rm(a) => container::rm(c, a).await,
        ContainerCmd::Inspect(a) => container::inspect(c, &a.id).await,
        ContainerCmd::Update(a) => container::update(c, a).await,
        ContainerCmd::Wait(a) => container::wait(c, &a.id).await,
        ContainerCmd::Logs(a) => container::logs(c, a).await,
        ContainerCmd::Top(a) => container::top(c, &a.id).await,
        ContainerCmd::Kill(a) => container::kill(c, a).await,
        ContainerCmd::Port(a) => container::port(c, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: Cmd,
    }

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        T::try_parse_from(std::iter::once("beam").chain(args.iter().copied())).map(|t| t.cmd)
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
        assert!(parse(&["exec", "sb"]).is_err());
        assert!(parse(&["shell", "sb"]).is_ok());
    }
}
