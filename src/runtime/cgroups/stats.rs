//! Usage statistics in the JSON shape of runc's `events --stats` (runc's `types/events.go`).
//! Missing files (a controller not mounted or not enabled) read as zero.

use super::v1::Dirs;
use super::{CgroupError, keyed, parse_u64, read_u64};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Stats in the shape runc's `events --stats` prints (`data` of a `stats` event).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

impl Stats {
    /// The whole runc event: `{"type":"stats","id":…,"data":{…}}`.
    pub fn to_event(&self, id: &str) -> serde_json::Value {
        serde_json::json!({ "type": "stats", "id": id, "data": self })
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Bytes; an unlimited limit is reported as the kernel shows it (v1) or `u64::MAX` (v2 "max").
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// `limit` is 0 when unlimited, as runc reports it.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BlkioStats {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// A number file, or 0 when it is missing or unreadable.
fn num(file: &Path) -> u64 {
    read_u64(file).unwrap_or(0)
}

fn text(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}

fn raw_map(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), parse_u64(v.trim())?))
        })
        .collect()
}

fn entry(prefix: &Path, stem: &str) -> MemoryEntry {
    let f = |s: &str| prefix.join(format!("{stem}.{s}"));
    MemoryEntry {
        usage: num(&f("usage_in_bytes")),
        limit: num(&f("limit_in_bytes")),
        max: num(&f("max_usage_in_bytes")),
        failcnt: num(&f("failcnt")),
    }
}

fn no_such_cgroup(dir: &Path) -> CgroupError {
    CgroupError::io(dir, "no such cgroup: was it created, or already destroyed?")
}

pub(crate) fn v1_stats(d: &Dirs) -> Result<Stats, CgroupError> {
    let any = d.procs_dir()?;
    if !any.exists() {
        return Err(no_such_cgroup(&any));
    }
    let mut s = Stats::default();
    if let Some(dir) = d.get("cpuacct") {
        let u = &mut s.cpu.usage;
        u.total = num(&dir.join("cpuacct.usage"));
        u.percpu = text(&dir.join("cpuacct.usage_percpu"))
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if dir.join("cpuacct.usage_user").exists() {
            u.user = num(&dir.join("cpuacct.usage_user"));
            u.kernel = num(&dir.join("cpuacct.usage_sys"));
        } else {
            // USER_HZ ticks (100 per second on every Linux ABI) → ns.
            let st = text(&dir.join("cpuacct.stat"));
            u.user = keyed(&st, "user").unwrap_or(0) * 10_000_000;
            u.kernel = keyed(&st, "system").unwrap_or(0) * 10_000_000;
        }
    }
    if let Some(dir) = d.get("cpu") {
        let st = text(&dir.join("cpu.stat"));
        s.cpu.throttling = Throttling {
            periods: keyed(&st, "nr_periods").unwrap_or(0),
            throttled_periods: keyed(&st, "nr_throttled").unwrap_or(0),
            throttled_time: keyed(&st, "throttled_time").unwrap_or(0),
        };
    }
    if let Some(dir) = d.get("memory") {
        let m = &mut s.memory;
        m.usage = entry(&dir, "memory");
        m.swap = entry(&dir, "memory.memsw");
        m.kernel = entry(&dir, "memory.kmem");
        m.kernel_tcp = entry(&dir, "memory.kmem.tcp");
        m.raw = raw_map(&text(&dir.join("memory.stat")));
        m.cache = m
            .raw
            .get("total_cache")
            .or(m.raw.get("cache"))
            .copied()
            .unwrap_or(0);
    }
    if let Some(dir) = d.get("pids") {
        s.pids = pids(&dir);
    }
    if let Some(dir) = d.get("blkio") {
        let pick = |a: &str, b: &str| {
            let t = text(&dir.join(a));
            if t.lines().any(|l| !l.starts_with("Total")) {
                t
            } else {
                text(&dir.join(b))
            }
        };
        let bytes = pick(
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        );
        let ios = pick(
            "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        );
        s.blkio.io_service_bytes_recursive = parse_blkio_v1(&bytes);
        s.blkio.io_serviced_recursive = parse_blkio_v1(&ios);
    }
    Ok(s)
}

fn pids(dir: &Path) -> PidsStats {
    let limit = num(&dir.join("pids.max"));
    PidsStats {
        current: num(&dir.join("pids.current")),
        limit: if limit == u64::MAX { 0 } else { limit },
    }
}

/// `8:0 Read 4096` lines (the trailing `Total N` line is dropped, as runc does).
pub(crate) fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?);
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// io.stat `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` → (bytes, ios) entries as runc names them.
pub(crate) fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (vec![], vec![]);
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (bytes, ios)
}

pub(crate) fn v2_stats(dir: &Path) -> Result<Stats, CgroupError> {
    if !dir.exists() {
        return Err(no_such_cgroup(dir));
    }
    let mut s = Stats::default();
    let st = text(&dir.join("cpu.stat"));
    let us = |k: &str| keyed(&st, k).unwrap_or(0).saturating_mul(1000);
    s.cpu.usage = CpuUsage {
        total: us("usage_usec"),
        percpu: vec![],
        kernel: us("system_usec"),
        user: us("user_usec"),
    };
    s.cpu.throttling = Throttling {
        periods: keyed(&st, "nr_periods").unwrap_or(0),
        throttled_periods: keyed(&st, "nr_throttled").unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    let m = &mut s.memory;
    let events = text(&dir.join("memory.events"));
    m.usage = MemoryEntry {
        usage: num(&dir.join("memory.current")),
        limit: num(&dir.join("memory.max")),
        max: num(&dir.join("memory.peak")),
        failcnt: keyed(&events, "max").unwrap_or(0),
    };
    if dir.join("memory.swap.current").exists() {
        // As runc: v1-style memsw numbers (memory + swap).
        m.swap = MemoryEntry {
            usage: num(&dir.join("memory.swap.current")).saturating_add(m.usage.usage),
            limit: num(&dir.join("memory.swap.max")).saturating_add(m.usage.limit),
            max: 0,
            failcnt: keyed(&text(&dir.join("memory.swap.events")), "max").unwrap_or(0),
        };
    }
    m.raw = raw_map(&text(&dir.join("memory.stat")));
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    s.pids = pids(dir);
    let (bytes, ios) = parse_io_stat(&text(&dir.join("io.stat")));
    s.blkio = BlkioStats {
        io_service_bytes_recursive: bytes,
        io_serviced_recursive: ios,
    };
    Ok(s)
}
