//! beam — a Linux container runtime and sandbox daemon.
//!
//! The runtime library (`beam::runtime`) is shared by `beam-oci` (a runc-compatible OCI runtime)
//! and, later, `beamd` (the sandbox daemon). Neither shells out to another runtime.

pub mod api;
pub mod image;
pub mod runtime;
pub mod sandbox;
