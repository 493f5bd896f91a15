//! `ps`: the processes in a container's cgroup.

use super::{Error, Result};
use crate::runtime::state::Root;

/// Host pids of every process in the container.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let st = root.load(id)?;
    let mut p = st.cgroup.pids()?;
    p.sort_unstable();
    Ok(p)
}

/// runc's table form: run `ps ARGS` (default `-ef`) and keep the header and the container's lines.
pub fn table(root: &Root, id: &str, ps_args: &[String]) -> Result<String> {
    let pids = pids(root, id)?;
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(Error::io("run ps (install procps)"))?;
    if !out.status.success() {
        return Err(Error::Usage(format!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| Error::Usage("ps output has no PID column; pass ps options that print one".into()))?;
    let mut result = format!("{header}\n");
    for l in lines {
        if let Some(Ok(pid)) = l.split_whitespace().nth(col).map(str::parse::<i32>)
            && pids.contains(&pid)
        {
            result += l;
            result.push('\n');
        }
    }
    Ok(result)
}
