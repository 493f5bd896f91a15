//! The host bridge `beam0`: created if missing (idempotent), the gateway address on it, up; forwarding on
//! for it and, as NAT needs, the namespace-wide `net.ipv4.ip_forward`; IPv6 off on it (sandboxes get IPv4
//! only). `route_localnet` stays off: nothing of beam needs 127/8 to be routable from the bridge.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use super::error::{NetError, Result, errno, io, nl};
use super::nsexec::{all_links, link_index, set_up};

pub const BRIDGE: &str = "beam0";

/// The MTU sandboxes' links get when the host has no default route to take it from.
pub const DEFAULT_MTU: u32 = 1500;

/// The smallest MTU of the links the host's IPv4 default routes go out of (its uplinks), if it has any.
/// Sandbox links get it, so that their packets fit the uplink: with a larger MTU, a peer's full-size
/// replies to a NATed connection rely on path-MTU discovery, which networks that drop ICMP break (large
/// replies then vanish while small ones pass).
pub(crate) async fn uplink_mtu(h: &Handle) -> Result<Option<u32>> {
    let req = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build();
    let routes: Vec<_> = h.route().get(req).execute().try_collect().await.map_err(nl("listing routes"))?;
    let oifs: Vec<u32> = routes
        .iter()
        .filter(|m| m.header.destination_prefix_length == 0)
        .filter_map(|m| m.attributes.iter().find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None }))
        .collect();
    Ok(all_links(h)
        .await?
        .iter()
        .filter(|l| oifs.contains(&l.header.index))
        .filter_map(|l| l.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None }))
        .min())
}

/// Make sure `beam0` exists with `gateway`/prefix of `subnet`, MTU `mtu`, and is up; its index, and whether
/// this call turned the namespace's `net.ipv4.ip_forward` on. Runs in the host namespace (a
/// [`super::nsexec::with_netlink`] worker), sysctls included.
pub(crate) async fn ensure(h: &Handle, subnet: Ipv4Net, gateway: Ipv4Addr, mtu: u32) -> Result<(u32, bool)> {
    let index = match link_index(h, BRIDGE).await? {
        Some(i) => i,
        None => {
            match h.link().add(LinkBridge::new(BRIDGE).build()).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl(format!("creating bridge {BRIDGE}"))(e)),
            }
            link_index(h, BRIDGE).await?.ok_or_else(|| NetError::Invalid(format!("bridge {BRIDGE} vanished")))?
        }
    };
    // IPv6 off first, so that no link-local address appears on it.
    write_sysctl(&format!("/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6"), "1", true)?;
    let want = Ipv4Net::new(gateway, subnet.prefix_len()).map_err(|e| NetError::Invalid(e.to_string()))?;
    let mut have = false;
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl(format!("listing addresses of {BRIDGE}")))? {
        let ip = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let Some(ip) = ip else { continue };
        let found = Ipv4Net::new(ip, msg.header.prefix_len).map_err(|e| NetError::Invalid(e.to_string()))?;
        if found == want {
            have = true;
        } else {
            return Err(NetError::BridgeMismatch { bridge: BRIDGE.into(), found, subnet, gateway });
        }
    }
    if !have {
        match h.address().add(index, IpAddr::V4(gateway), subnet.prefix_len()).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("adding {want} to {BRIDGE}"))(e)),
        }
    }
    h.link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(nl(format!("setting the MTU of {BRIDGE} to {mtu}")))?;
    set_up(h, index, BRIDGE).await?;
    write_sysctl(&format!("/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding"), "1", false)?;
    let forwarding_on = write_sysctl(IP_FORWARD, "1", false)?;
    Ok((index, forwarding_on))
}

pub(crate) const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Set a sysctl of the calling thread's network namespace, only when it differs; whether it changed.
/// `optional`: a missing file (IPv6 disabled in the kernel) is fine.
pub(crate) fn write_sysctl(path: &str, value: &str, optional: bool) -> Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(cur) if cur.trim() == value => return Ok(false),
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        _ => {}
    }
    std::fs::write(path, value).map_err(io(format!("setting {path} to {value}")))?;
    Ok(true)
}

/// The names of the links enslaved to `beam0`.
pub(crate) async fn ports(h: &Handle) -> Result<Vec<String>> {
    let Some(index) = link_index(h, BRIDGE).await? else { return Ok(Vec::new()) };
    let links = all_links(h).await?;
    Ok(links
        .iter()
        .filter(|l| l.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(c) if *c == index)))
        .filter_map(|l| super::nsexec::link_name(l).map(String::from))
        .collect())
}

/// Delete `beam0` if it has no port left; whether it is gone.
pub(crate) async fn remove_if_unused(h: &Handle) -> Result<bool> {
    if !ports(h).await?.is_empty() {
        return Ok(false);
    }
    super::nsexec::delete_link(h, BRIDGE).await?;
    Ok(true)
}
