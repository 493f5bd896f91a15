//! Per-sandbox networking: each sandbox gets its own network namespace with a veth pair into the host
//! bridge `beam0`, an address leased from beam's subnet, a default route via the gateway (the bridge's
//! address), NAT for egress, and an egress policy (all, none, or an allowlist of CIDRs) that can change while
//! it runs. Sandboxes cannot reach each other, the host itself (its loopback services, beamd's API, the
//! gateway) or anything that is not IPv4 from their own address. `network: none` is just [`loopback_up`].
//!
//! Everything happens in a *host network namespace* given as an fd: in beamd, its own (the real host's,
//! [`open_current_netns`]); in tests, a namespace the test made, so tests never touch the real host. Netlink
//! work runs on short-lived threads that join the namespace; `nft` is spawned from such a thread. The only
//! things beam creates in the host namespace are `beam0`, the `bm-*` veth ends, `table inet beam` and
//! `table bridge beam` (see [`firewall`] for the rules), and the sysctls `net.ipv4.conf.beam0.forwarding=1`,
//! `net.ipv6.conf.beam0.disable_ipv6=1` and `net.ipv4.ip_forward=1` (NAT needs it: replies to sandboxes come
//! in on the uplink and are forwarded, like Docker's and podman's bridges). When beam is the one that turned
//! `ip_forward` on, it says so in `<state_dir>/ip_forward.beam` and turns it back off in [`Network::teardown`]
//! — if it is still on then — so that a host without sandboxes is as beam found it.
//!
//! The methods block (netlink round trips, `nft` runs): call them from `spawn_blocking` in async code.
//!
//! ## Lifecycle, and what survives a `kill -9` of beamd
//! - start: [`Network::new`] (picks the subnet), [`Network::ensure`] (bridge, sysctls, tables; idempotent,
//!   set elements kept), then [`Network::reconcile`] with the sandboxes still alive.
//! - sandbox start: [`Network::attach`] before its entrypoint runs (or [`Network::reserve`] while it is being
//!   made and [`Network::connect`] once its namespace exists); write [`SandboxNet::resolv_conf`] and
//!   [`SandboxNet::hosts`] into its root. Policy changes: [`Network::update_policy`]. Stop:
//!   [`Network::detach`] (veth, firewall elements and lease released). A sandbox whose network namespace
//!   dies loses its veth with it; its lease and firewall elements stay until `detach` or `reconcile`.
//! - clean shutdown: [`Network::teardown`] removes the tables and the bridge (and restores `ip_forward`)
//!   when no sandbox is attached. If
//!   sandboxes keep running (beamd leaves them for the next beamd), everything stays, so they stay isolated.
//! - after a `kill -9`: the bridge, the tables with their elements, every veth of a sandbox still alive and
//!   the lease files (`<state_dir>/leases/<ip>`) and the subnet choice (`<state_dir>/subnet`) all persist,
//!   so running sandboxes keep working. The next beamd's `reconcile(live)` deletes the `bm-*` veths, leases
//!   and firewall elements of every sandbox not in `live`.

mod bridge;
pub mod dial;
mod dns;
mod error;
pub mod firewall;
pub mod ipam;
mod nsexec;
mod veth;

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use bridge::BRIDGE;
pub use dns::{HOST_SOURCES, hosts_file, resolv_conf_from};
pub use error::{NetError, Result};
pub use ipam::{Ipam, Lease};
pub use nsexec::{loopback_up, open_current_netns, open_netns_of_pid};
pub use veth::{PEER, host_name};

use firewall::Nft;

/// Where and how beam networks sandboxes.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The sandbox subnet; None: the first of 10.88.0.0/16 … that overlaps no host route (kept once chosen).
    pub subnet: Option<Ipv4Net>,
    /// beamd's network state: `leases/`, `subnet`.
    pub state_dir: PathBuf,
    /// The `nft` binary.
    pub nft: PathBuf,
    /// The host's resolver files, consulted in order for sandboxes' resolv.conf.
    pub resolv_sources: Vec<PathBuf>,
    /// The MTU of the bridge and the sandboxes' links; None: the host's uplink MTU (the smallest of the
    /// links its default routes use), else 1500.
    pub mtu: Option<u32>,
}

impl NetConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> NetConfig {
        NetConfig {
            subnet: None,
            state_dir: state_dir.into(),
            nft: firewall::default_nft(),
            resolv_sources: HOST_SOURCES.iter().map(PathBuf::from).collect(),
            mtu: None,
        }
    }
}

/// A sandbox's egress policy. `block_network` wins; else `cidr_allowlist` (if set) lists the only
/// destinations allowed (an empty list allows none); else everything is allowed. DNS goes to the host's
/// resolvers directly, so an allowlist must include them for names to resolve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub block_network: bool,
    #[serde(default)]
    pub cidr_allowlist: Option<Vec<Ipv4Net>>,
}

impl Policy {
    pub fn allow_all() -> Policy {
        Policy::default()
    }
    pub fn blocked() -> Policy {
        Policy { block_network: true, cidr_allowlist: None }
    }
    pub fn allow_only(nets: impl IntoIterator<Item = Ipv4Net>) -> Policy {
        Policy { block_network: false, cidr_allowlist: Some(nets.into_iter().collect()) }
    }
}

/// What [`Network::attach`] gave a sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxNet {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The host end of its veth.
    pub veth: String,
    /// Contents for its /etc/resolv.conf.
    pub resolv_conf: String,
    /// Contents for its /etc/hosts (hostname = the sandbox id; see [`hosts_file`] for another).
    pub hosts: String,
}

/// What [`Network::reserve`] set up for a sandbox, for [`Network::connect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub ip: Ipv4Addr,
    /// The bridge's link index.
    bridge: u32,
}

/// What [`Network::reconcile`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub leases: Vec<Lease>,
    pub veths: Vec<String>,
    pub firewall_elements: usize,
}

/// What [`Network::teardown`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// Tables and bridge removed.
    Removed,
    /// Sandboxes are still attached (leases or `bm-*` ports): everything kept so they stay isolated.
    KeptForLive { sandboxes: usize },
}

/// beam's networking in one host network namespace.
pub struct Network {
    host: OwnedFd,
    cfg: NetConfig,
    ipam: Ipam,
    /// Of the bridge and every veth.
    mtu: u32,
    /// Serialises read-modify-write batches on the firewall sets.
    fw: Mutex<()>,
}

impl Network {
    /// Pick the subnet (reading the host namespace's routes) and open the leases. Changes nothing in the
    /// namespace.
    pub fn new(host_netns: OwnedFd, cfg: NetConfig) -> Result<Network> {
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(error::io(format!("creating the network state directory {}", cfg.state_dir.display())))?;
        let (routes, uplink_mtu) = nsexec::with_netlink(host_netns.as_fd(), |h| async move {
            let br = nsexec::link_index(&h, BRIDGE).await?;
            Ok((ipam::host_routes(&h, br).await?, bridge::uplink_mtu(&h).await?))
        })?;
        let subnet = ipam::resolve_subnet(cfg.subnet, &cfg.state_dir, &routes, Ipam::any_lease_in(&cfg.state_dir))?;
        let ipam = Ipam::open(subnet, &cfg.state_dir)?;
        let mtu = cfg.mtu.or(uplink_mtu).unwrap_or(bridge::DEFAULT_MTU);
        if !(576..=65535).contains(&mtu) {
            return Err(NetError::Invalid(format!("MTU {mtu} is out of range; use 576-65535")));
        }
        Ok(Network { host: host_netns, cfg, ipam, mtu, fw: Mutex::new(()) })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.ipam.subnet()
    }

    /// The MTU of the bridge and the sandboxes' links.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    fn nft(&self) -> Nft<'_> {
        Nft { ns: self.host.as_fd(), bin: &self.cfg.nft }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.fw.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_bridge(&self) -> Result<u32> {
        let (subnet, gw, mtu) = (self.subnet(), self.gateway(), self.mtu);
        let (index, forwarding_on) =
            nsexec::with_netlink(self.host.as_fd(), move |h| async move { bridge::ensure(&h, subnet, gw, mtu).await })?;
        if forwarding_on {
            let mark = self.forward_mark();
            std::fs::write(&mark, "beam turned net.ipv4.ip_forward on; teardown turns it off\n")
                .map_err(error::io(format!("writing {}", mark.display())))?;
        }
        Ok(index)
    }

    /// Present while beam is the one that turned `ip_forward` on.
    fn forward_mark(&self) -> PathBuf {
        self.cfg.state_dir.join("ip_forward.beam")
    }

    /// Bridge with the gateway address, sysctls, and the firewall tables. Idempotent; run at every start.
    pub fn ensure(&self) -> Result<()> {
        self.ensure_bridge()?;
        let _g = self.lock();
        firewall::ensure_tables(&self.nft(), self.subnet())
    }

    /// Connect the sandbox `id`, whose network namespace is `sandbox_netns` (see [`open_netns_of_pid`]), with
    /// `policy`: [`Network::reserve`] then [`Network::connect`]. Idempotent per id (an earlier lease is
    /// reused, a leftover veth replaced). On failure nothing of it is left behind.
    pub fn attach(&self, id: &str, sandbox_netns: BorrowedFd<'_>, policy: &Policy) -> Result<SandboxNet> {
        let r = self.reserve(id, policy)?;
        self.connect(id, &r, sandbox_netns)
    }

    /// The host side of connecting sandbox `id`, which needs no namespace yet (so it can run while the
    /// sandbox is being made): its lease, the bridge, and its firewall elements — bound and policed before
    /// its link exists, so no packet passes unpoliced. On failure nothing of it is left behind.
    pub fn reserve(&self, id: &str, policy: &Policy) -> Result<Reserved> {
        let (ip, fresh) = self.ipam.allocate(id)?;
        let done = self.ensure_bridge().and_then(|bridge| {
            let _g = self.lock();
            firewall::add_sandbox(&self.nft(), &host_name(id), ip, policy, fresh).map(|()| bridge)
        });
        match done {
            Ok(bridge) => Ok(Reserved { ip, bridge }),
            Err(e) => {
                let _ = self.detach(id);
                Err(e)
            }
        }
    }

    /// The sandbox side: its veth on the bridge, `eth0` with the reserved address and the default route in
    /// `sandbox_netns`. On failure everything of `id` is released (the reservation too).
    pub fn connect(&self, id: &str, r: &Reserved, sandbox_netns: BorrowedFd<'_>) -> Result<SandboxNet> {
        let connected = nsexec::with_netlink(self.host.as_fd(), |h| async move {
            veth::create(&h, id, sandbox_netns, r.bridge, self.mtu).await
        })
        .and_then(|veth| {
            veth::configure_peer(sandbox_netns, r.ip, self.subnet().prefix_len(), self.gateway()).map(|()| veth)
        });
        let veth = match connected {
            Ok(v) => v,
            Err(e) => {
                let _ = self.detach(id);
                return Err(e);
            }
        };
        let sources: Vec<&Path> = self.cfg.resolv_sources.iter().map(PathBuf::as_path).collect();
        Ok(SandboxNet {
            ip: r.ip,
            prefix_len: self.subnet().prefix_len(),
            gateway: self.gateway(),
            veth,
            resolv_conf: resolv_conf_from(&sources),
            hosts: hosts_file(r.ip, id),
        })
    }

    /// Change the egress policy of a running sandbox; atomic (one nft batch).
    pub fn update_policy(&self, id: &str, policy: &Policy) -> Result<()> {
        let ip = self.ipam.lookup(id)?.ok_or_else(|| NetError::NoLease(id.to_string()))?;
        let _g = self.lock();
        firewall::set_policy(&self.nft(), ip, policy)
    }

    /// Release everything of sandbox `id`: its veth, firewall elements and lease. Idempotent.
    pub fn detach(&self, id: &str) -> Result<()> {
        let name = host_name(id);
        nsexec::with_netlink(self.host.as_fd(), |h| async move { nsexec::delete_link(&h, &name).await })?;
        if let Some(ip) = self.ipam.lookup(id)? {
            let _g = self.lock();
            firewall::remove(&self.nft(), ip)?;
        }
        self.ipam.release(id)?;
        Ok(())
    }

    /// After a restart: remove the veths, leases and firewall elements of every sandbox not in `live`.
    pub fn reconcile(&self, live: &[&str]) -> Result<Reconciled> {
        let leases = self.ipam.reconcile(live)?;
        let keep_names: HashSet<String> = live.iter().map(|id| host_name(id)).collect();
        let veths = nsexec::with_netlink(self.host.as_fd(), |h| async move {
            let mut gone = Vec::new();
            for name in veth::list(&h).await? {
                if !keep_names.contains(&name) && nsexec::delete_link(&h, &name).await? {
                    gone.push(name);
                }
            }
            Ok(gone)
        })?;
        let keep_ips: BTreeSet<Ipv4Addr> = self.ipam.leases()?.into_iter().map(|l| l.ip).collect();
        let _g = self.lock();
        let firewall_elements = firewall::retain(&self.nft(), &keep_ips)?;
        Ok(Reconciled { leases, veths, firewall_elements })
    }

    /// Clean shutdown: remove the tables and the bridge, and turn `ip_forward` back off if beam turned it
    /// on, unless sandboxes are still attached.
    pub fn teardown(&self) -> Result<Teardown> {
        let leases = self.ipam.leases()?.len();
        let ports = nsexec::with_netlink(self.host.as_fd(), |h| async move { veth::list(&h).await })?.len();
        if leases > 0 || ports > 0 {
            return Ok(Teardown::KeptForLive { sandboxes: leases.max(ports) });
        }
        {
            let _g = self.lock();
            firewall::remove_tables(&self.nft())?;
        }
        let restore = self.forward_mark().exists();
        nsexec::with_netlink(self.host.as_fd(), move |h| async move {
            if bridge::remove_if_unused(&h).await? && restore {
                // This thread is in the host namespace: its /proc/sys/net is that namespace's.
                bridge::write_sysctl(bridge::IP_FORWARD, "0", false)?;
            }
            Ok(())
        })?;
        if restore {
            let _ = std::fs::remove_file(self.forward_mark());
        }
        Ok(Teardown::Removed)
    }
}
