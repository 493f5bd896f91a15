//! Addresses for sandboxes: the subnet (configured, or the first candidate /16 that overlaps no route of the
//! host namespace) and leases kept as files, `<state_dir>/leases/<ip>` holding `{"sandbox": "<id>"}`. A lease
//! file is created with an exclusive hard link of a fully written temporary file, so it is atomic and two
//! allocations can never get the same address. The gateway is the subnet's first address (on `beam0`).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::Handle;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use serde::{Deserialize, Serialize};

use super::error::{NetError, Result, io, nl};

/// One sandbox's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub id: String,
}

#[derive(Serialize, Deserialize)]
struct LeaseFile {
    sandbox: String,
}

#[derive(Serialize, Deserialize)]
struct SubnetFile {
    subnet: Ipv4Net,
}

/// The candidates for the default subnet, in order: 10.88.0.0/16 … 10.255.0.0/16, then 172.16.0.0/16 …
/// 172.31.0.0/16.
pub fn candidate_subnets() -> impl Iterator<Item = Ipv4Net> {
    let ten = (88u8..=255).map(|b| Ipv4Net::new(Ipv4Addr::new(10, b, 0, 0), 16).expect("valid /16"));
    let one72 = (16u8..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid /16"));
    ten.chain(one72)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first candidate subnet that overlaps none of `routes` (default routes are not passed in here).
pub fn choose_subnet(routes: &[Ipv4Net]) -> Result<Ipv4Net> {
    candidate_subnets().find(|c| !routes.iter().any(|r| overlaps(c, r))).ok_or(NetError::NoFreeSubnet)
}

/// The destinations of the host namespace's IPv4 routes, all tables, without default routes and without
/// routes out of the link `skip_oif` (beam's own bridge, whose route is the subnet itself).
pub(crate) async fn host_routes(h: &Handle, skip_oif: Option<u32>) -> Result<Vec<Ipv4Net>> {
    let req = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build();
    let msgs: Vec<_> = h.route().get(req).execute().try_collect().await.map_err(nl("listing routes"))?;
    let mut out = Vec::new();
    for m in msgs {
        let len = m.header.destination_prefix_length;
        if len == 0 {
            continue;
        }
        if skip_oif.is_some()
            && m.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if Some(*i) == skip_oif))
        {
            continue;
        }
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(dst) = dst
            && let Ok(net) = Ipv4Net::new(dst, len)
        {
            out.push(net.trunc());
        }
    }
    Ok(out)
}

/// Check that a subnet can hold a gateway and sandboxes.
pub fn validate_subnet(subnet: Ipv4Net) -> Result<Ipv4Net> {
    if subnet.prefix_len() > 30 {
        return Err(NetError::SubnetTooSmall(subnet));
    }
    Ok(subnet.trunc())
}

/// The gateway of a subnet: its first host address.
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Pick the subnet: `configured` if given; else the one chosen earlier (kept in `<state_dir>/subnet`) while it
/// still clashes with no host route or still has leases; else the first free candidate. The choice is saved.
pub(crate) fn resolve_subnet(
    configured: Option<Ipv4Net>,
    state_dir: &Path,
    routes: &[Ipv4Net],
    has_leases: bool,
) -> Result<Ipv4Net> {
    let file = state_dir.join("subnet");
    let subnet = if let Some(s) = configured {
        validate_subnet(s)?
    } else {
        let saved = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice::<SubnetFile>(&b).ok().map(|f| f.subnet),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(format!("reading {}", file.display()))(e)),
        };
        match saved {
            Some(s) if has_leases || !routes.iter().any(|r| overlaps(&s, r)) => s,
            _ => choose_subnet(routes)?,
        }
    };
    let body = serde_json::to_vec(&SubnetFile { subnet }).expect("serialisable");
    write_atomic(&file, &body)?;
    Ok(subnet)
}

fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let tmp = tmp_name(path);
    std::fs::write(&tmp, body).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {} to {}", tmp.display(), path.display())))
}

fn tmp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".tmp-{name}-{}-{:?}", std::process::id(), std::thread::current().id()))
}

/// Leases of one subnet, persisted under a directory.
pub struct Ipam {
    subnet: Ipv4Net,
    dir: PathBuf,
    cursor: Mutex<u32>,
}

impl Ipam {
    /// Leases of `subnet` in `<state_dir>/leases` (created).
    pub fn open(subnet: Ipv4Net, state_dir: &Path) -> Result<Ipam> {
        let subnet = validate_subnet(subnet)?;
        let dir = state_dir.join("leases");
        std::fs::create_dir_all(&dir).map_err(io(format!("creating the lease directory {}", dir.display())))?;
        Ok(Ipam { subnet, dir, cursor: Mutex::new(0) })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.subnet)
    }

    /// Whether `<state_dir>/leases` holds any lease (before a subnet is chosen).
    pub(crate) fn any_lease_in(state_dir: &Path) -> bool {
        std::fs::read_dir(state_dir.join("leases"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().parse::<Ipv4Addr>().is_ok()))
            .unwrap_or(false)
    }

    /// Every lease on disk (of any subnet).
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let rd = std::fs::read_dir(&self.dir).map_err(io(format!("reading {}", self.dir.display())))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io(format!("reading {}", self.dir.display())))?;
            let Ok(ip) = ent.file_name().to_string_lossy().parse::<Ipv4Addr>() else { continue };
            let path = ent.path();
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
            };
            let f: LeaseFile = serde_json::from_slice(&bytes)
                .map_err(|e| NetError::BadLease { path: path.display().to_string(), detail: e.to_string() })?;
            out.push(Lease { ip, id: f.sandbox });
        }
        out.sort_by_key(|l| l.ip);
        Ok(out)
    }

    /// The address leased to sandbox `id`.
    pub fn lookup(&self, id: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self.leases()?.into_iter().find(|l| l.id == id).map(|l| l.ip))
    }

    /// An address for sandbox `id`: its existing lease (`false`), or the next free one (`true`: new).
    pub fn allocate(&self, id: &str) -> Result<(Ipv4Addr, bool)> {
        if id.is_empty() {
            return Err(NetError::Invalid("a sandbox id is needed for a network lease".into()));
        }
        let leases = self.leases()?;
        if let Some(l) = leases.iter().find(|l| l.id == id) {
            return Ok((l.ip, false));
        }
        let taken: HashSet<Ipv4Addr> = leases.into_iter().map(|l| l.ip).collect();
        let first = u32::from(self.subnet.network()) + 2;
        let last = u32::from(self.subnet.broadcast()) - 1;
        let count = last - first + 1;
        let body = serde_json::to_vec(&LeaseFile { sandbox: id.to_string() }).expect("serialisable");
        let mut cursor = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        for step in 0..count {
            let ip = Ipv4Addr::from(first + (*cursor + step) % count);
            if taken.contains(&ip) {
                continue;
            }
            if self.create_exclusive(ip, &body)? {
                *cursor = (*cursor + step + 1) % count;
                return Ok((ip, true));
            }
        }
        Err(NetError::Exhausted { subnet: self.subnet, id: id.to_string() })
    }

    /// Write `<dir>/<ip>` only if it does not exist; false if it does.
    fn create_exclusive(&self, ip: Ipv4Addr, body: &[u8]) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let tmp = tmp_name(&path);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()
        };
        write().map_err(io(format!("writing {}", tmp.display())))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io(format!("creating the lease {}", path.display()))(e)),
        }
    }

    /// Drop sandbox `id`'s lease; its address, if it had one.
    pub fn release(&self, id: &str) -> Result<Option<Ipv4Addr>> {
        let mut freed = None;
        for l in self.leases()?.into_iter().filter(|l| l.id == id) {
            self.remove(l.ip)?;
            freed = Some(l.ip);
        }
        Ok(freed)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<()> {
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing the lease {}", path.display()))(e)),
        }
    }

    /// Drop the leases of sandboxes not in `live`; the dropped leases.
    pub fn reconcile(&self, live: &[&str]) -> Result<Vec<Lease>> {
        let live: HashSet<&str> = live.iter().copied().collect();
        let mut dropped = Vec::new();
        for l in self.leases()? {
            if !live.contains(l.id.as_str()) {
                self.remove(l.ip)?;
                dropped.push(l);
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn chooses_first_free_candidate() {
        assert_eq!(choose_subnet(&[]).unwrap(), net("10.88.0.0/16"));
        assert_eq!(choose_subnet(&[net("10.88.3.0/24")]).unwrap(), net("10.89.0.0/16"));
        assert_eq!(choose_subnet(&[net("10.0.0.0/8")]).unwrap(), net("172.16.0.0/16"));
        assert!(matches!(choose_subnet(&[net("10.0.0.0/8"), net("172.16.0.0/12")]), Err(NetError::NoFreeSubnet)));
    }

    #[test]
    fn leases_are_unique_persistent_and_reconciled() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(net("10.88.0.0/30"), dir.path()).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        let (a, fresh) = ipam.allocate("a").unwrap();
        assert!(fresh);
        assert_eq!(a, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(ipam.allocate("a").unwrap(), (a, false), "same id, same lease");
        assert!(matches!(ipam.allocate("b"), Err(NetError::Exhausted { .. })));
        let again = Ipam::open(net("10.88.0.0/30"), dir.path()).unwrap();
        assert_eq!(again.lookup("a").unwrap(), Some(a));
        assert_eq!(again.reconcile(&["x"]).unwrap(), vec![Lease { ip: a, id: "a".into() }]);
        assert_eq!(again.allocate("b").unwrap(), (a, true));
        assert_eq!(again.release("b").unwrap(), Some(a));
        assert!(again.leases().unwrap().is_empty());
    }

    #[test]
    fn subnet_choice_is_kept_while_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve_subnet(None, dir.path(), &[], false).unwrap();
        assert_eq!(s, net("10.88.0.0/16"));
        // A route now clashes: kept while leases exist, re-chosen otherwise.
        assert_eq!(resolve_subnet(None, dir.path(), &[net("10.88.0.0/24")], true).unwrap(), s);
        assert_eq!(resolve_subnet(None, dir.path(), &[net("10.88.0.0/24")], false).unwrap(), net("10.89.0.0/16"));
        assert_eq!(resolve_subnet(Some(net("192.168.7.9/24")), dir.path(), &[], true).unwrap(), net("192.168.7.0/24"));
        assert!(resolve_subnet(Some(net("10.1.1.0/31")), dir.path(), &[], false).is_err());
    }
}
