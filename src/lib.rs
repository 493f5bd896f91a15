//! beam — a Linux container runtime and sandbox daemon.
//!
//! The runtime library (`beam::runtime`) is shared by `beam-oci` (a runc-compatible OCI runtime)
//! and `beamd` (the sandbox daemon, [`daemon`] over [`sandbox`]). Neither shells out to another runtime.

pub mod api;
pub mod daemon;
pub mod gateway;
pub mod image;
pub mod netns;
pub mod random;
pub mod runtime;
pub mod sandbox;
#[cfg(test)]
mod test_support;
