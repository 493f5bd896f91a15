//! `beam snapshot fs ID [--tag NAME]`: commit a running sandbox's filesystem as an image, through beamd.

use crate::client::{Client, Error, sandbox_path};
use beam::api::{FilesystemSnapshot, SnapshotFilesystem};
use clap::Subcommand;
use hyper::Method;

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Commit a running sandbox's filesystem as an image (its image's layers + one layer of what it
    /// changed); prints the image id. The sandbox keeps running.
    #[command(alias = "filesystem")]
    Fs {
        /// Sandbox id or name.
        id: String,
        /// A name for the image (e.g. myapp:v1); without one it is known by its id.
        #[arg(long, short = 't')]
        tag: Option<String>,
    },
}

pub async fn snapshot(c: &Client, cmd: SnapshotCmd) -> Result<i32, Error> {
    match cmd {
        SnapshotCmd::Fs { id, tag } => {
            let body = SnapshotFilesystem { tag };
            let s: FilesystemSnapshot = c.json(Method::POST, &sandbox_path(&id, "/snapshots/filesystem"), Some(&body)).await?;
            eprintln!(
                "=> {} committed: layer {} ({} bytes compressed), frozen {} ms{}",
                s.sandbox,
                s.layer_diff_id,
                s.layer_size,
                s.frozen_ms,
                s.names.first().map(|n| format!(", named {n}")).unwrap_or_default()
            );
            println!("{}", s.image_id);
            Ok(0)
        }
    }
}
