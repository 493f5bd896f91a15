//! Capabilities: the five sets of `process.capabilities`, named through the `caps` crate in the parent,
//! applied with raw capset/prctl in the child (no allocation there).

use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("process.capabilities: unknown capability {0:?}; use names like CAP_NET_BIND_SERVICE")]
    Unknown(String),
    #[error("process.capabilities: {0} not in the runtime's own bounding set (this host withholds it from every process), so no container can have it; remove it from the spec")]
    Withheld(String),
}

/// Bitmasks of every set, with capabilities the running kernel doesn't know already dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapsPlan {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// Highest capability number the kernel knows (/proc/sys/kernel/cap_last_cap).
    pub last_cap: u8,
}

fn mask(set: &Option<Capabilities>, last_cap: u8) -> Result<u64, CapsError> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = caps::Capability::from_str(&name).map_err(|_| CapsError::Unknown(name.clone()))?;
        if cap.index() > last_cap {
            tracing::warn!("capability {name} is not known to this kernel; skipped");
            continue;
        }
        m |= cap.bitmask();
    }
    Ok(m)
}

pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

impl CapsPlan {
    /// No `capabilities` section means no capabilities at all (as runc).
    pub fn new(caps: Option<&LinuxCapabilities>) -> Result<Self, CapsError> {
        let last_cap = last_cap();
        let Some(c) = caps else { return Ok(Self { last_cap, ..Default::default() }) };
        let plan = Self {
            bounding: mask(c.bounding(), last_cap)?,
            effective: mask(c.effective(), last_cap)?,
            permitted: mask(c.permitted(), last_cap)?,
            inheritable: mask(c.inheritable(), last_cap)?,
            ambient: mask(c.ambient(), last_cap)?,
            last_cap,
        };
        // A capability outside our own bounding set can never be raised (capset fails with a bare
        // EPERM in the container): name it now instead.
        if let Ok(own) = caps::read(None, caps::CapSet::Bounding) {
            let own: u64 = own.iter().map(|c| c.bitmask()).fold(0, |a, b| a | b);
            let asked = plan.bounding | plan.effective | plan.permitted | plan.inheritable;
            let missing: Vec<String> = caps::all()
                .into_iter()
                .filter(|c| asked & !own & c.bitmask() != 0)
                .map(|c| c.to_string())
                .collect();
            if !missing.is_empty() {
                let mut missing = missing;
                missing.sort();
                let verb = if missing.len() == 1 { "is" } else { "are" };
                return Err(CapsError::Withheld(format!("{} {verb}", missing.join(", "))));
            }
        }
        Ok(plan)
    }

    /// Drop everything outside the bounding set. Needs CAP_SETPCAP; call before changing uid.
    pub fn drop_bounding(&self) -> Result<(), Errno> {
        for cap in 0..=self.last_cap as u64 {
            if self.bounding & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
                    return Err(Errno::last());
                }
            }
        }
        Ok(())
    }

    /// Set effective, permitted and inheritable with capset(2), then the ambient set.
    pub fn apply(&self) -> Result<(), Errno> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const V3: u32 = 0x2008_0522;
        let mut hdr = Header { version: V3, pid: 0 };
        let split = |m: u64| (m as u32, (m >> 32) as u32);
        let (e0, e1) = split(self.effective);
        let (p0, p1) = split(self.permitted);
        let (i0, i1) = split(self.inheritable);
        let data = [
            Data { effective: e0, permitted: p0, inheritable: i0 },
            Data { effective: e1, permitted: p1, inheritable: i1 },
        ];
        // SAFETY: capset reads a v3 header and two data structs from our stack.
        if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) } < 0 {
            return Err(Errno::last());
        }
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
        for cap in 0..=self.last_cap as u64 {
            if self.ambient & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments. EPERM (cap not in permitted+inheritable) is
                // ignored as runc does.
                unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0) };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_bits() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}"#,
        )
        .unwrap();
        let p = CapsPlan::new(Some(&c)).unwrap();
        assert_eq!(p.bounding, (1 << 0) | (1 << 5));
        assert_eq!(p.effective, 1 << 5);
        assert_eq!(p.inheritable, 0);
        assert_eq!(CapsPlan::new(None).unwrap().bounding, 0);
    }

    #[test]
    fn a_capability_outside_our_bounding_set_is_named() {
        let own = caps::read(None, caps::CapSet::Bounding).unwrap();
        let Some(missing) = caps::all().into_iter().find(|c| !own.contains(c) && c.index() <= last_cap()) else {
            eprintln!("skipped: this process's bounding set is full");
            return;
        };
        let json = format!(r#"{{"bounding":["{missing}"],"permitted":["{missing}"]}}"#);
        let c: LinuxCapabilities = serde_json::from_str(&json).unwrap();
        let e = CapsPlan::new(Some(&c)).unwrap_err().to_string();
        assert!(e.contains(&missing.to_string()) && e.contains("bounding set"), "{e}");
    }
}
