//! The one error type of [`crate::netns`]. Every message names the thing that failed and, where there is
//! one, the fix.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A system call or file operation.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// A netlink request (rtnetlink) in one of the network namespaces.
    #[error("netlink: {what}: {err}")]
    Netlink { what: String, err: rtnetlink::Error },
    /// `nft` failed or could not be run.
    #[error(
        "nftables: {what}: {detail} (beam keeps its rules in `table inet beam` and `table bridge beam`; \
         the kernel needs nf_tables with the inet, bridge and nat families, and `nft` must be installed)"
    )]
    Nft { what: String, detail: String },
    /// Every candidate subnet overlaps a route the host already has.
    #[error(
        "no free subnet for sandboxes: each of 10.88.0.0/16 … 10.255.0.0/16 and 172.16.0.0/16 … 172.31.0.0/16 \
         overlaps a route in the host's routing table; configure one explicitly (network subnet)"
    )]
    NoFreeSubnet,
    /// The subnet has no address left.
    #[error("subnet {subnet} has no free address left for sandbox {id}; stop sandboxes or configure a larger subnet")]
    Exhausted { subnet: Ipv4Net, id: String },
    /// The subnet cannot hold a gateway and at least one sandbox.
    #[error("subnet {0} is too small: it needs room for a gateway and sandboxes (a prefix of /30 or shorter)")]
    SubnetTooSmall(Ipv4Net),
    /// `beam0` exists with an address from another subnet (a previous configuration).
    #[error(
        "bridge {bridge} has address {found} but the sandbox subnet is {subnet} (gateway {gateway}); stop all \
         sandboxes and delete the bridge (`ip link del {bridge}`), or configure the subnet {found}"
    )]
    BridgeMismatch { bridge: String, found: Ipv4Net, subnet: Ipv4Net, gateway: Ipv4Addr },
    /// An operation needs a sandbox's lease and it has none.
    #[error("sandbox {0} has no network lease (it was never attached, or it was detached); attach it first")]
    NoLease(String),
    /// A lease file that cannot be read back.
    #[error("lease file {path}: {detail}; remove it if no sandbox uses that address")]
    BadLease { path: String, detail: String },
    /// Invalid input from the caller.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, NetError>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |err| NetError::Io { what, err }
}

pub(crate) fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |err| NetError::Netlink { what, err }
}

/// The errno of a netlink error reply, if it is one.
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}
