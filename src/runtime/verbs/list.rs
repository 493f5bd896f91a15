//! `state` and `list`.

use super::Result;
use crate::runtime::state::Root;

/// The OCI state JSON of one container, plus `oomKilled: true` once the kernel OOM-killed a process
/// in its cgroup (an extension: runc has no such field, podman ignores unknown ones).
pub fn state(root: &Root, id: &str) -> Result<serde_json::Value> {
    let st = root.load(id)?;
    let mut v = st.oci_json(st.status());
    if st.cgroup.oom_kill_count().unwrap_or(0) > 0 {
        v["oomKilled"] = serde_json::Value::Bool(true);
    }
    Ok(v)
}

/// Every container's state JSON, by id.
pub fn list(root: &Root) -> Vec<serde_json::Value> {
    root.ids()
        .iter()
        .filter_map(|id| root.load(id).ok())
        .map(|st| st.oci_json(st.status()))
        .collect()
}

/// runc's `list` table (columns as wide as their widest value).
pub fn table(items: &[serde_json::Value]) -> String {
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            [s("id"), v["pid"].as_i64().unwrap_or(0).to_string(), s("status"), s("bundle"), s("created"), s("owner")]
        })
        .collect();
    let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut w = head.clone().map(|h| h.len());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}
