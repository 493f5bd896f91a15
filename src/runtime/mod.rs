//! The container runtime: an OCI bundle becomes an isolated process.
//!
//! Layout follows the life of a container:
//! - [`spec`]: load and validate `config.json`.
//! - [`state`]: the on-disk state of a container under the runtime root.
//! - [`channel`]: typed parent ⇄ child messages over a socketpair.
//! - [`plan`]: everything the child needs, prepared (allocated) in the parent before clone.
//! - [`init`]: what the child does between clone and execve, in order.
//! - [`mounts`], [`cgroups`], [`seccomp`], [`landlock`], [`capabilities`], [`console`], [`hooks`], [`namespaces`]:
//!   one kernel feature each.
//! - One file per lifecycle verb under [`verbs`].

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod console;
pub mod hooks;
pub mod init;
pub mod landlock;
pub mod mounts;
pub mod namespaces;
pub mod plan;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sys;
pub mod verbs;
