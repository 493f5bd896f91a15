//! A create request checked and turned into a pending record: limits within range, names, env, tags,
//! ports, landlock and capabilities, network mode and egress policy.

use super::error::{Result, SandboxError};
use super::manager::{DEFAULT_CPU, DEFAULT_KEEP_WARM, DEFAULT_MEMORY_MIB, DEFAULT_PIDS};
use super::record::{self, Record, Stored};
use crate::api::{self, CreateSandbox, SandboxState, Security};
use crate::image::store::ImageRecord;
use chrono::Utc;

/// The resources a validated request gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub cpu: f64,
    pub memory_mib: u64,
    pub pids: u32,
    pub keep_warm_seconds: i64,
}

/// What beamd offers that a request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// beamd runs with `--network bridge`.
    pub bridge: bool,
}

impl Offer {
    /// The network a request gets: as asked, else bridge when beamd has networking.
    pub fn network_mode(&self, req: &CreateSandbox) -> api::NetworkMode {
        req.network.unwrap_or(if self.bridge { api::NetworkMode::Bridge } else { api::NetworkMode::None })
    }

    /// Validate a create request into the limits the lifecycle needs.
    pub fn validate(&self, req: &CreateSandbox) -> Result<Limits> {
        let cpu = req.cpu.unwrap_or(DEFAULT_CPU);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        if !(cpu >= 0.01 && cpu <= cores) {
            return Err(SandboxError::invalid("cpu", format!("cpu {cpu} is out of range; ask for 0.01 to {cores} cores (this host has {cores})")));
        }
        let memory = match &req.memory {
            Some(m) => api::parse_memory(m).map_err(|m| SandboxError::invalid("memory", m))?,
            None => DEFAULT_MEMORY_MIB,
        };
        let pids = req.pids.unwrap_or(DEFAULT_PIDS);
        if pids < 8 {
            return Err(SandboxError::invalid("pids", format!("pids {pids} is too low for a sandbox; ask for at least 8")));
        }
        let keep_warm = req.keep_warm_seconds.unwrap_or(DEFAULT_KEEP_WARM);
        check_keep_warm(keep_warm)?;
        if let Some(n) = &req.name {
            record::validate_name(n).map_err(|m| SandboxError::invalid("name", m))?;
        }
        if req.ports.contains(&0) {
            return Err(SandboxError::invalid("ports", "port 0 is not a port; use 1-65535"));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SandboxError::invalid("env", format!("env {k:?}: names must be non-empty without '=' and values without NUL")));
            }
        }
        for k in req.tags.keys() {
            if k.is_empty() || k.contains('=') {
                return Err(SandboxError::invalid("tags", format!("tag {k:?}: keys must be non-empty and without '='")));
            }
        }
        if let Some(p) = &req.landlock {
            super::config::validate_landlock(p).map_err(|e| SandboxError::invalid("landlock", e.to_string()))?;
        }
        super::config::sandbox_caps(&req.capabilities).map_err(|e| SandboxError::invalid("capabilities", e.to_string()))?;
        if req.network == Some(api::NetworkMode::Bridge) && !self.bridge {
            return Err(SandboxError::invalid("network", "network \"bridge\" is not available: this beamd runs without sandbox networking; start it with --network bridge"));
        }
        if (req.block_network || req.cidr_allowlist.is_some()) && self.network_mode(req) != api::NetworkMode::Bridge {
            return Err(SandboxError::invalid("block_network", "block_network and cidr_allowlist need network \"bridge\" (with network \"none\" there is no egress at all)"));
        }
        parse_policy(req.block_network, req.cidr_allowlist.as_deref())?;
        if let Some(w) = &req.workdir
            && !w.starts_with('/')
        {
            return Err(SandboxError::invalid("workdir", format!("workdir {w:?} must be an absolute path")));
        }
        Ok(Limits { cpu, memory_mib: memory, pids, keep_warm_seconds: keep_warm })
    }

    /// A fresh pending record for a validated request.
    pub fn pending_record(&self, req: &CreateSandbox, img: &ImageRecord, limits: Limits) -> Result<Record> {
        let now = Utc::now();
        let Limits { cpu, memory_mib, pids, keep_warm_seconds } = limits;
        Ok(Record {
            sandbox: Stored {
                id: record::new_id()?,
                name: req.name.clone(),
                image: req.image.clone(),
                image_id: img.id.to_string(),
                state: SandboxState::Pending,
                reason: None,
                exit_code: None,
                error: None,
                entrypoint: None,
                workdir: "/".into(),
                user: "0:0".into(),
                cpu,
                memory_mib,
                pids,
                ports: req.ports.clone(),
                published: req.publish.clone(),
                authorized: req.authorized,
                token: if req.authorized { Some(crate::random::alnum(32)?) } else { None },
                keep_warm_seconds,
                timeout_seconds: req.timeout_seconds.filter(|t| *t > 0),
                tags: req.tags.clone(),
                created_at: now,
                started_at: None,
                exited_at: None,
                pid: None,
                security: Security {
                    uid_base: None,
                    seccomp: !req.insecure_no_seccomp,
                    landlock: None,
                    no_new_privs: true,
                    // Checked by validate; an unchecked request gets the default set, never more.
                    capabilities: crate::sandbox::config::sandbox_caps(&req.capabilities)
                        .unwrap_or_else(|_| crate::sandbox::config::sandbox_caps(&[]).expect("the default set")),
                },
                network: api::SandboxNetwork {
                    mode: self.network_mode(req),
                    ip: None,
                    gateway: None,
                    block_network: req.block_network,
                    cidr_allowlist: req.cidr_allowlist.clone(),
                },
            },
            env: Vec::new(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            stop_reason: None,
            uid_slot: None,
            pid_start: None,
        })
    }

}

/// Parse an egress policy's CIDRs.
pub(crate) fn parse_policy(block: bool, allow: Option<&[String]>) -> Result<crate::netns::Policy> {
    let cidrs = allow
        .map(|list| {
            list.iter()
                .map(|c| {
                    c.parse::<ipnet::Ipv4Net>().map_err(|_| {
                        SandboxError::invalid("cidr_allowlist", format!("cidr_allowlist entry {c:?} is not an IPv4 CIDR; write it like 10.0.0.0/8 or 1.1.1.1/32"))
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(crate::netns::Policy { block_network: block, cidr_allowlist: cidrs })
}

pub(crate) fn check_keep_warm(k: i64) -> Result<()> {
    if k == -1 || k >= 1 {
        return Ok(());
    }
    Err(SandboxError::invalid(
        "keep_warm_seconds",
        format!("keep_warm_seconds {k} is not valid; use a number of seconds ≥ 1, or -1 to never stop an idle sandbox"),
    ))
}
