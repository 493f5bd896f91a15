//! `update`: change a live container's cgroup limits.

use super::{Error, Result, load_in};
use crate::runtime::state::{Root, Status};
use oci_spec::runtime::LinuxResources;

/// Apply `resources` (the OCI `linux.resources` object) to the container's cgroup.
pub fn update(root: &Root, id: &str, resources: &LinuxResources) -> Result<()> {
    let (st, _) = load_in(
        root,
        id,
        &[Status::Created, Status::Running, Status::Paused],
        "only a live container can be updated",
    )?;
    st.cgroup.apply(resources)?;
    Ok(())
}

/// Parse `--resources` JSON.
pub fn parse(text: &str, from: &str) -> Result<LinuxResources> {
    serde_json::from_str(text)
        .map_err(|e| Error::Usage(format!("--resources {from}: invalid linux.resources JSON: {e}")))
}
