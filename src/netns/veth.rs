//! A sandbox's link: a veth pair whose host end `bm-<shortid>` is a port of `beam0` (isolated, so ports
//! cannot talk to each other) and whose other end is created directly inside the sandbox's network
//! namespace as `eth0`, given the lease, brought up with `lo`, and a default route via the gateway.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::Digest;

use super::error::{Result, errno, nl};
use super::nsexec::{all_links, delete_link, link_name, need_link, set_up, with_netlink};

/// Prefix of the host ends; nothing else of beam's or the host's is named so.
pub const PREFIX: &str = "bm-";
/// The sandbox end's name.
pub const PEER: &str = "eth0";

/// The host end's name for sandbox `id` (at most 15 bytes): `bm-` and the 12 characters after `sbx-` of a
/// beamd id, else `bm-` and 12 hex digits of the id's SHA-256.
pub fn host_name(id: &str) -> String {
    let tail = id.strip_prefix("sbx-").filter(|t| t.len() == 12 && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    match tail {
        Some(t) => format!("{PREFIX}{}", t.to_ascii_lowercase()),
        None => format!("{PREFIX}{}", &hex::encode(sha2::Sha256::digest(id.as_bytes()))[..12]),
    }
}

/// Create the pair (both ends with MTU `mtu`) and plug the host end into the bridge. Runs in the host
/// namespace.
pub(crate) async fn create(h: &Handle, id: &str, sandbox_ns: BorrowedFd<'_>, bridge: u32, mtu: u32) -> Result<String> {
    let name = host_name(id);
    // A leftover of an earlier attempt (its peer goes with it).
    delete_link(h, &name).await?;
    let peer = LinkUnspec::new_with_name(PEER).setns_by_fd(sandbox_ns.as_raw_fd()).mtu(mtu).build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name.clone())
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .build();
    h.link().add(msg).execute().await.map_err(nl(format!(
        "creating veth {name} with peer {PEER} in the sandbox's network namespace (does it have an {PEER} already?)"
    )))?;
    let index = need_link(h, &name).await?;
    h.link()
        .set(LinkUnspec::new_with_index(index).alias(format!("beam sandbox {id}")).build())
        .execute()
        .await
        .map_err(nl(format!("labelling {name}")))?;
    h.link()
        .set_port(LinkBridgePort::new(index).isolated(true).build())
        .execute()
        .await
        .map_err(nl(format!("isolating bridge port {name}")))?;
    set_up(h, index, &name).await?;
    Ok(name)
}

/// Inside the sandbox: `eth0` gets `ip/prefix` and comes up, `lo` comes up, default route via `gateway`.
pub(crate) fn configure_peer(sandbox_ns: BorrowedFd<'_>, ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<()> {
    with_netlink(sandbox_ns, |h| async move {
        let lo = need_link(&h, "lo").await?;
        set_up(&h, lo, "lo").await?;
        let eth = need_link(&h, PEER).await?;
        match h.address().add(eth, IpAddr::V4(ip), prefix).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("adding {ip}/{prefix} to the sandbox's {PEER}"))(e)),
        }
        set_up(&h, eth, PEER).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(eth).build();
        h.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding the sandbox's default route via {gateway}")))
    })
}

/// The host ends present in the host namespace.
pub(crate) async fn list(h: &Handle) -> Result<Vec<String>> {
    Ok(all_links(h).await?.iter().filter_map(link_name).filter(|n| n.starts_with(PREFIX)).map(String::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(host_name("sbx-abc123def456"), "bm-abc123def456");
        let h = host_name("some arbitrary/id that is long");
        assert_eq!(h.len(), 15);
        assert!(h.starts_with(PREFIX));
        assert_ne!(host_name("a"), host_name("b"));
    }
}
