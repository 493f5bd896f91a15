//! `pause` and `resume`: the cgroup freezer.

use super::{Result, load_in};
use crate::runtime::state::{Root, Status};

pub fn pause(root: &Root, id: &str) -> Result<()> {
    let (st, _) = load_in(root, id, &[Status::Running, Status::Created], "only a running container can be paused")?;
    st.cgroup.freeze()?;
    Ok(())
}

pub fn resume(root: &Root, id: &str) -> Result<()> {
    let (st, _) = load_in(root, id, &[Status::Paused], "only a paused container can be resumed")?;
    st.cgroup.thaw()?;
    Ok(())
}
