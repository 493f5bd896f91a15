//! Images: a content-addressed OCI image store, registry pull/push, archives, layer unpacking,
//! overlayfs root filesystems and image recipes.
//!
//! ```text
//! registry / OCI layout / docker-archive / recipe ──▶ store (blobs by sha256, refs, layers unpacked once)
//!                                                       │ layer dirs (shared, read-only)
//!                                                       ▼
//!                     rootfs (overlayfs: lower = layer dirs, upper/work per container) ──▶ bundle ──▶ runtime
//! ```
//! One error type per module; every module's surface is small and typed.

pub mod archive;
pub mod bundle;
pub mod digest;
pub mod recipe;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;
pub mod unpack;
pub mod userns;
