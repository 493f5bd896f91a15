//! `mounts[].options` parsed exactly as runc's `parseMountOptions` does, then translated to the mount API.

use super::sys::{
    MOUNT_ATTR_ATIME_MASK, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME,
};

const MS_NOSYMFOLLOW: u64 = 256;

/// (option, clears?, MS_* flag) — runc's `mountFlags` table.
const FLAGS: &[(&str, bool, u64)] = &[
    ("acl", false, libc::MS_POSIXACL),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("atime", true, libc::MS_NOATIME),
    ("bind", false, libc::MS_BIND),
    ("defaults", false, 0),
    ("dev", true, libc::MS_NODEV),
    ("diratime", true, libc::MS_NODIRATIME),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("exec", true, libc::MS_NOEXEC),
    ("iversion", false, libc::MS_I_VERSION),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("loud", true, libc::MS_SILENT),
    ("mand", false, libc::MS_MANDLOCK),
    ("noacl", true, libc::MS_POSIXACL),
    ("noatime", false, libc::MS_NOATIME),
    ("nodev", false, libc::MS_NODEV),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("noexec", false, libc::MS_NOEXEC),
    ("noiversion", true, libc::MS_I_VERSION),
    ("nolazytime", true, libc::MS_LAZYTIME),
    ("nomand", true, libc::MS_MANDLOCK),
    ("norelatime", true, libc::MS_RELATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("nosuid", false, libc::MS_NOSUID),
    ("nosymfollow", false, MS_NOSYMFOLLOW),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("remount", false, libc::MS_REMOUNT),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("silent", false, libc::MS_SILENT),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("suid", true, libc::MS_NOSUID),
    ("sync", false, libc::MS_SYNCHRONOUS),
];

/// runc's `propagationFlags`.
const PROPAGATION: &[(&str, u64)] = &[
    ("private", libc::MS_PRIVATE),
    ("shared", libc::MS_SHARED),
    ("slave", libc::MS_SLAVE),
    ("unbindable", libc::MS_UNBINDABLE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// runc's `recAttrFlags` (OCI 1.1 recursive mount attributes, applied with mount_setattr AT_RECURSIVE).
const REC_ATTRS: &[(&str, bool, u64)] = &[
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rrelatime", false, MOUNT_ATTR_RELATIME),
    ("rnorelatime", true, MOUNT_ATTR_RELATIME),
    ("rnoatime", false, MOUNT_ATTR_NOATIME),
    ("ratime", true, MOUNT_ATTR_NOATIME),
    ("rstrictatime", false, MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", true, MOUNT_ATTR_STRICTATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// Set and cleared MOUNT_ATTR_* bits for mount_setattr(2) / fsmount(2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attrs {
    pub set: u64,
    pub clr: u64,
}

impl Attrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }
}

/// The result of parsing one mount's `options`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Parsed {
    /// MS_* flags after runc's set/clear processing.
    pub flags: u64,
    /// MS_* flags an option explicitly cleared (`rw`, `suid`, `dev`, ...).
    pub cleared: u64,
    /// Recursive attributes (`rro`, `rnosuid`, ...).
    pub rec: Attrs,
    /// Propagation changes in order, each MS_{PRIVATE,SHARED,SLAVE,UNBINDABLE} [| MS_REC].
    pub propagation: Vec<u64>,
    /// Everything else, for the filesystem (`mode=755`, `size=65536k`, `newinstance`, ...).
    pub data: Vec<String>,
    pub tmpcopyup: bool,
    /// `idmap` or `ridmap`, if given.
    pub idmap: Option<String>,
}

impl Parsed {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    pub fn is_rbind(&self) -> bool {
        self.flags & (libc::MS_BIND | libc::MS_REC) == libc::MS_BIND | libc::MS_REC
    }

    /// The per-mount attributes the MS_* flags ask for (set only: inherited flags are never cleared,
    /// so a bind of a read-only or nosuid host mount stays so, as with runc).
    pub fn attrs(&self) -> Attrs {
        let f = self.flags;
        let mut a = Attrs::default();
        for (ms, attr) in [
            (libc::MS_RDONLY, MOUNT_ATTR_RDONLY),
            (libc::MS_NOSUID, MOUNT_ATTR_NOSUID),
            (libc::MS_NODEV, MOUNT_ATTR_NODEV),
            (libc::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
            (libc::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
            (MS_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW),
        ] {
            if f & ms != 0 {
                a.set |= attr;
            }
        }
        // The kernel's precedence for MS_*: strictatime beats noatime beats relatime.
        let atime = if f & libc::MS_STRICTATIME != 0 {
            Some(MOUNT_ATTR_STRICTATIME)
        } else if f & libc::MS_NOATIME != 0 {
            Some(MOUNT_ATTR_NOATIME)
        } else if f & libc::MS_RELATIME != 0 {
            Some(MOUNT_ATTR_RELATIME)
        } else {
            None
        };
        if let Some(mode) = atime {
            a.set |= mode;
            a.clr |= MOUNT_ATTR_ATIME_MASK;
        }
        a
    }

    /// Attributes to clear on `remount` for flags an option explicitly turned off.
    pub fn cleared_attrs(&self) -> u64 {
        let mut clr = 0;
        for (ms, attr) in [
            (libc::MS_RDONLY, MOUNT_ATTR_RDONLY),
            (libc::MS_NOSUID, MOUNT_ATTR_NOSUID),
            (libc::MS_NODEV, MOUNT_ATTR_NODEV),
            (libc::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
            (libc::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
        ] {
            if self.cleared & ms != 0 {
                clr |= attr;
            }
        }
        clr
    }

    /// Superblock flags for a new filesystem, as fsconfig flag names (`sync`, `dirsync`, ...).
    /// `mand` is dropped (mandatory locking is gone since Linux 5.15); `silent`/`iversion` are no-ops.
    pub fn sb_flags(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (ms, name) in [
            (libc::MS_SYNCHRONOUS, "sync"),
            (libc::MS_DIRSYNC, "dirsync"),
            (libc::MS_LAZYTIME, "lazytime"),
            (libc::MS_POSIXACL, "posixacl"),
        ] {
            if self.flags & ms != 0 {
                out.push(name);
            }
        }
        out
    }
}

/// Parse `options` like runc: flags, propagation, recursive attributes, extensions, and the rest as data.
pub(super) fn parse(options: &[String]) -> Parsed {
    let mut p = Parsed::default();
    for o in options {
        let o = o.as_str();
        if let Some(&(_, clear, flag)) = FLAGS.iter().find(|(n, ..)| *n == o) {
            if clear {
                p.flags &= !flag;
                p.cleared |= flag;
            } else {
                p.flags |= flag;
                p.cleared &= !flag;
            }
        } else if let Some(&(_, flag)) = PROPAGATION.iter().find(|(n, _)| *n == o) {
            p.propagation.push(flag);
        } else if let Some(&(_, clear, attr)) = REC_ATTRS.iter().find(|(n, ..)| *n == o) {
            if clear {
                p.rec.clr |= attr;
                p.rec.set &= !attr;
            } else {
                p.rec.set |= attr;
                p.rec.clr &= !attr;
            }
            if attr & MOUNT_ATTR_ATIME_MASK != 0 || attr == MOUNT_ATTR_RELATIME {
                // Changing the atime mode needs the whole mask cleared first.
                if !clear {
                    p.rec.clr |= MOUNT_ATTR_ATIME_MASK;
                }
            }
        } else if o == "tmpcopyup" {
            p.tmpcopyup = true;
        } else if o == "idmap" || o == "ridmap" {
            p.idmap = Some(o.to_string());
        } else if !o.is_empty() {
            p.data.push(o.to_string());
        }
    }
    p
}

/// Split data options into fsconfig parameters: `key=value` → (key, Some(value)), `flag` → (flag, None).
pub(super) fn fs_params(data: &[String]) -> Vec<(String, Option<String>)> {
    data.iter()
        .flat_map(|d| d.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (s.to_string(), None),
        })
        .collect()
}

/// `linux.rootfsPropagation` → MS_* flags.
pub(super) fn root_propagation(s: &str) -> Option<u64> {
    PROPAGATION.iter().find(|(n, _)| *n == s).map(|&(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Parsed {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let p = opts(&["ro", "nosuid", "rw", "noexec", "exec", "nodev"]);
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(p.cleared, libc::MS_RDONLY | libc::MS_NOEXEC);
        assert_eq!(p.attrs().set, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        assert_eq!(p.cleared_attrs(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOEXEC);
    }

    #[test]
    fn bind_rbind_propagation_and_data() {
        let p = opts(&[
            "rbind",
            "rprivate",
            "mode=755",
            "size=65536k",
            "newinstance",
            "slave",
        ]);
        assert!(p.is_bind() && p.is_rbind());
        assert_eq!(
            p.propagation,
            vec![libc::MS_PRIVATE | libc::MS_REC, libc::MS_SLAVE]
        );
        assert_eq!(p.data, vec!["mode=755", "size=65536k", "newinstance"]);
        let b = opts(&["bind"]);
        assert!(b.is_bind() && !b.is_rbind());
        assert_eq!(
            fs_params(&p.data),
            vec![
                ("mode".to_string(), Some("755".to_string())),
                ("size".to_string(), Some("65536k".to_string())),
                ("newinstance".to_string(), None)
            ]
        );
    }

    #[test]
    fn atime_modes() {
        let p = opts(&["noatime", "strictatime"]);
        assert_eq!(
            p.attrs(),
            Attrs {
                set: MOUNT_ATTR_STRICTATIME,
                clr: MOUNT_ATTR_ATIME_MASK
            }
        );
        let p = opts(&["relatime"]);
        assert_eq!(
            p.attrs(),
            Attrs {
                set: MOUNT_ATTR_RELATIME,
                clr: MOUNT_ATTR_ATIME_MASK
            }
        );
        assert!(opts(&["nosuid"]).attrs().clr == 0);
        let p = opts(&[
            "nodiratime",
            "nosymfollow",
            "sync",
            "dirsync",
            "mand",
            "remount",
        ]);
        assert_eq!(
            p.attrs().set,
            MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(p.sb_flags(), vec!["sync", "dirsync"]);
        assert!(p.flags & libc::MS_REMOUNT != 0);
    }

    #[test]
    fn recursive_attrs_and_extensions() {
        let p = opts(&["rro", "rnosuid", "rnoatime", "tmpcopyup", "ridmap"]);
        assert_eq!(
            p.rec.set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(p.rec.clr, MOUNT_ATTR_ATIME_MASK);
        assert!(p.tmpcopyup);
        assert_eq!(p.idmap.as_deref(), Some("ridmap"));
        assert!(p.data.is_empty());
        assert_eq!(
            root_propagation("rslave"),
            Some(libc::MS_SLAVE | libc::MS_REC)
        );
        assert_eq!(root_propagation("bogus"), None);
    }
}
