//! Sandboxes: beamd's long-lived containers, their init (PID 1) protocol, files and lifecycle.

pub mod initproto;
