//! rootfs (in progress)
