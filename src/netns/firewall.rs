//! beam's nftables rules, in two tables beam owns and nothing else touches: `table inet beam` (NAT, the
//! forward and input filters, the per-sandbox egress policy) and `table bridge beam` (anti-spoofing and no
//! port-to-port traffic on `beam0`). Every rule matches only `beam0`, its ports (`bm-*`) or beam's subnet.
//! The ruleset is never flushed: `ensure_tables` adds the tables, sets and chains (idempotent) and replaces
//! the rules of beam's own chains, keeping set elements, in one atomic `nft -j -f -` batch.
//!
//! Per-sandbox state lives in sets keyed by the sandbox's address, so a policy change is a few element
//! additions and deletions in one atomic batch:
//! - `inet beam blocked` (ipv4): `block_network` — everything it starts is dropped;
//! - `inet beam restricted` (ipv4) + `inet beam allowed` (ipv4 . ipv4 interval): an allowlist — only
//!   destinations in its CIDRs;
//! - neither: all egress allowed (NATed to the host's address);
//! - `bridge beam bound` (ifname . ipv4): the address each `bm-*` port may send from; IPv4 and ARP from any
//!   other address, and every other protocol (IPv6 included), are dropped on the bridge, so a sandbox cannot
//!   slip its policy by changing its address.
//!
//! `nft` is spawned from a short-lived thread inside the host network namespace, so it starts there.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::Policy;
use super::bridge::BRIDGE;
use super::error::{NetError, Result};
use super::nsexec;

pub const TABLE: &str = "beam";
const PORTS: &str = "bm-*";

/// The `nft` binary: `/usr/sbin/nft`, `/sbin/nft`, else `nft` on PATH.
pub fn default_nft() -> PathBuf {
    ["/usr/sbin/nft", "/sbin/nft"].iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| "nft".into())
}

/// `nft` in one network namespace.
pub struct Nft<'a> {
    pub ns: BorrowedFd<'a>,
    pub bin: &'a Path,
}

impl Nft<'_> {
    /// Run `nft -j <args>` with `stdin` in the namespace; its stdout.
    fn exec(&self, args: &[&str], stdin: Option<&Value>, what: &str) -> Result<String> {
        let fail = |detail: String| NetError::Nft { what: what.to_string(), detail };
        // nft's stdin, stdout and stderr are memory files, not pipes: a sandbox being created at the same
        // moment is a clone of beamd and holds copies of beamd's fds until its process starts; a copy of a
        // pipe end would keep nft from seeing EOF on stdin, or us on its stdout — and that sandbox's start
        // can wait for this very nft run (its firewall elements). Files need no EOF: we wait for nft to exit.
        let file = |name: &str| memfd(name).map_err(|e| fail(format!("memfd for nft's {name}: {e}")));
        let (mut input, mut output, mut errors) = (file("stdin")?, file("stdout")?, file("stderr")?);
        if let Some(v) = stdin {
            input.write_all(v.to_string().as_bytes()).map_err(|e| fail(format!("writing nft's input: {e}")))?;
            input.seek(SeekFrom::Start(0)).map_err(|e| fail(format!("writing nft's input: {e}")))?;
        }
        let dup = |f: &std::fs::File| f.try_clone().map_err(|e| fail(format!("dup for nft: {e}")));
        let mut cmd = Command::new(self.bin);
        cmd.arg("-j").args(args).stdin(dup(&input)?).stdout(dup(&output)?).stderr(dup(&errors)?);
        // Spawned from a thread inside the namespace: the child starts there. No pre_exec hook, so std
        // spawns with posix_spawn (vfork) instead of forking all of beamd's address space: ≈1 ms less a run.
        let mut child = nsexec::in_netns(self.ns, || {
            cmd.spawn().map_err(|e| fail(format!("running {}: {e}", self.bin.display())))
        })?;
        drop(cmd);
        let status = child.wait().map_err(|e| fail(format!("waiting for nft: {e}")))?;
        let read = |f: &mut std::fs::File| -> Result<String> {
            let mut s = String::new();
            f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_string(&mut s)).map_err(|e| fail(format!("reading nft's output: {e}")))?;
            Ok(s)
        };
        if !status.success() {
            return Err(fail(format!("{status}: {}", read(&mut errors)?.trim())));
        }
        read(&mut output)
    }

    /// Apply a batch of commands atomically.
    pub fn apply(&self, cmds: Vec<Value>, what: &str) -> Result<()> {
        if cmds.is_empty() {
            return Ok(());
        }
        self.exec(&["-f", "-"], Some(&json!({ "nftables": cmds })), what).map(drop)
    }

    /// The families that have a table named `beam`.
    pub fn beam_tables(&self) -> Result<Vec<String>> {
        let out = self.exec(&["list", "tables"], None, "listing tables")?;
        Ok(objects(&out, "table")
            .filter(|t| t["name"] == TABLE)
            .filter_map(|t| t["family"].as_str().map(String::from))
            .collect())
    }

    /// The elements of every set of `table <family> beam` (empty when the table is missing), by set name.
    fn sets(&self, family: &str) -> Result<Vec<(String, Vec<Value>)>> {
        let out = match self.exec(&["list", "table", family, TABLE], None, &format!("listing table {family} {TABLE}")) {
            Ok(out) => out,
            // One run instead of two: a missing table is an error of `list table`, not a listing first.
            Err(NetError::Nft { detail, .. }) if detail.contains("No such file or directory") => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(objects(&out, "set")
            .filter_map(|s| {
                let name = s["name"].as_str()?.to_string();
                let elems = s["elem"].as_array().cloned().unwrap_or_default();
                Some((name, elems))
            })
            .collect())
    }
}

/// An anonymous in-memory file (close-on-exec in beamd; the child's dup'd stdio copy is not).
fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let name = std::ffi::CString::new(format!("beam-nft-{name}")).expect("no NUL");
    // SAFETY: memfd_create with a NUL-terminated name we own; the returned fd is owned by the File.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and nobody else owns it.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn objects<'a>(out: &'a str, kind: &'a str) -> impl Iterator<Item = Value> + 'a {
    let v: Value = serde_json::from_str(out).unwrap_or(Value::Null);
    let list = v["nftables"].as_array().cloned().unwrap_or_default();
    list.into_iter().filter_map(move |o| o.get(kind).cloned())
}

// ---- expression helpers (nftables JSON schema) ----

fn meta(key: &str) -> Value {
    json!({ "meta": { "key": key } })
}
fn payload(proto: &str, field: &str) -> Value {
    json!({ "payload": { "protocol": proto, "field": field } })
}
fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({ "match": { "op": op, "left": left, "right": right } })
}
fn prefix(net: Ipv4Net) -> Value {
    json!({ "prefix": { "addr": net.network().to_string(), "len": net.prefix_len() } })
}
fn ct_state_ok() -> Value {
    matches("in", json!({ "ct": { "key": "state" } }), json!(["established", "related"]))
}
fn iif_bridge() -> Value {
    matches("==", meta("iifname"), json!(BRIDGE))
}
fn oif_bridge() -> Value {
    matches("==", meta("oifname"), json!(BRIDGE))
}
fn verdict(v: &str) -> Value {
    json!({ v: null })
}
fn rule(family: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({ "add": { "rule": { "family": family, "table": TABLE, "chain": chain, "expr": expr } } })
}
fn base_chain(family: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({ "add": { "chain": { "family": family, "table": TABLE, "name": name, "type": kind, "hook": hook,
        "prio": prio, "policy": "accept" } } })
}
fn set(family: &str, name: &str, ty: Value, interval: bool) -> Value {
    let mut s = json!({ "family": family, "table": TABLE, "name": name, "type": ty });
    if interval {
        s["flags"] = json!(["interval"]);
    }
    json!({ "add": { "set": s } })
}
fn element(op: &str, family: &str, set: &str, elems: Vec<Value>) -> Value {
    json!({ op: { "element": { "family": family, "table": TABLE, "name": set, "elem": elems } } })
}

/// The whole of beam's rules for `subnet`, as one batch: tables, sets and chains added if missing (their
/// elements kept), the chains' rules replaced.
pub fn ensure_batch(subnet: Ipv4Net) -> Vec<Value> {
    let (i, b) = ("inet", "bridge");
    let mut c = vec![
        json!({ "add": { "table": { "family": i, "name": TABLE } } }),
        json!({ "add": { "table": { "family": b, "name": TABLE } } }),
        set(i, "blocked", json!("ipv4_addr"), false),
        set(i, "restricted", json!("ipv4_addr"), false),
        set(i, "allowed", json!(["ipv4_addr", "ipv4_addr"]), true),
        set(b, "bound", json!(["ifname", "ipv4_addr"]), false),
        base_chain(i, "forward", "filter", "forward", 0),
        base_chain(i, "input", "filter", "input", 0),
        base_chain(i, "postrouting", "nat", "postrouting", 100),
        base_chain(b, "prerouting", "filter", "prerouting", -200),
        base_chain(b, "forward", "filter", "forward", -200),
    ];
    for (fam, chain) in [(i, "forward"), (i, "input"), (i, "postrouting"), (b, "prerouting"), (b, "forward")] {
        c.push(json!({ "flush": { "chain": { "family": fam, "table": TABLE, "name": chain } } }));
    }
    let saddr = || payload("ip", "saddr");
    let sub = prefix(subnet);
    // forward: a sandbox's TCP handshakes get an MSS that fits the route out (a link or tunnel beyond the
    // uplink with a smaller MTU would otherwise need path-MTU discovery, which ICMP-dropping networks break).
    c.push(rule(
        i,
        "forward",
        vec![
            iif_bridge(),
            matches("==", json!({ "&": [payload("tcp", "flags"), ["syn", "rst"]] }), json!("syn")),
            json!({ "mangle": { "key": { "tcp option": { "name": "maxseg", "field": "size" } },
                "value": { "rt": { "key": "mtu" } } } }),
        ],
    ));
    // forward: no sandbox → sandbox; into sandboxes only replies (and, later, published ports = DNAT).
    c.push(rule(i, "forward", vec![iif_bridge(), oif_bridge(), verdict("drop")]));
    c.push(rule(i, "forward", vec![oif_bridge(), ct_state_ok(), verdict("accept")]));
    c.push(rule(
        i,
        "forward",
        vec![oif_bridge(), matches("in", json!({ "ct": { "key": "status" } }), json!("dnat")), verdict("accept")],
    ));
    c.push(rule(i, "forward", vec![oif_bridge(), verdict("drop")]));
    // forward, out of sandboxes: IPv4 from the subnet only, then the per-sandbox policy.
    c.push(rule(i, "forward", vec![iif_bridge(), matches("!=", meta("nfproto"), json!("ipv4")), verdict("drop")]));
    c.push(rule(i, "forward", vec![iif_bridge(), matches("!=", saddr(), sub.clone()), verdict("drop")]));
    c.push(rule(i, "forward", vec![iif_bridge(), ct_state_ok(), verdict("accept")]));
    c.push(rule(i, "forward", vec![iif_bridge(), matches("==", saddr(), json!("@blocked")), verdict("drop")]));
    c.push(rule(
        i,
        "forward",
        vec![
            iif_bridge(),
            matches("==", json!({ "concat": [saddr(), payload("ip", "daddr")] }), json!("@allowed")),
            verdict("accept"),
        ],
    ));
    c.push(rule(i, "forward", vec![iif_bridge(), matches("==", saddr(), json!("@restricted")), verdict("drop")]));
    // input: nothing from a sandbox reaches the host itself (its services, loopback ones, beamd, the gateway)
    // but replies to what the host started.
    c.push(rule(i, "input", vec![iif_bridge(), ct_state_ok(), verdict("accept")]));
    c.push(rule(i, "input", vec![iif_bridge(), verdict("drop")]));
    // NAT: the subnet to anywhere else, as the host.
    c.push(rule(
        i,
        "postrouting",
        vec![
            matches("!=", meta("oifname"), json!(BRIDGE)),
            matches("==", saddr(), sub.clone()),
            matches("!=", payload("ip", "daddr"), sub),
            verdict("masquerade"),
        ],
    ));
    // bridge: each port sends IPv4/ARP from its own address only; no port-to-port traffic.
    let port = || matches("==", meta("iifname"), json!(PORTS));
    c.push(rule(
        b,
        "prerouting",
        vec![port(), matches("!=", payload("ether", "type"), json!({ "set": ["ip", "arp"] })), verdict("drop")],
    ));
    c.push(rule(
        b,
        "prerouting",
        vec![port(), matches("!=", json!({ "concat": [meta("iifname"), saddr()] }), json!("@bound")), verdict("drop")],
    ));
    c.push(rule(
        b,
        "prerouting",
        vec![
            port(),
            matches("!=", json!({ "concat": [meta("iifname"), payload("arp", "saddr ip")] }), json!("@bound")),
            verdict("drop"),
        ],
    ));
    c.push(rule(b, "forward", vec![port(), matches("==", meta("oifname"), json!(PORTS)), verdict("drop")]));
    c
}

/// Create or refresh beam's tables for `subnet`.
pub fn ensure_tables(nft: &Nft<'_>, subnet: Ipv4Net) -> Result<()> {
    nft.apply(ensure_batch(subnet), "creating beam's tables")
}

/// Delete beam's tables (both families), if present.
pub fn remove_tables(nft: &Nft<'_>) -> Result<()> {
    let cmds = nft
        .beam_tables()?
        .into_iter()
        .filter(|f| f == "inet" || f == "bridge")
        .map(|f| json!({ "delete": { "table": { "family": f, "name": TABLE } } }))
        .collect();
    nft.apply(cmds, "deleting beam's tables")
}

/// The first item of a (possibly concatenated) element, as an address.
fn elem_ip(e: &Value, idx: usize) -> Option<Ipv4Addr> {
    let v = match e.get("concat") {
        Some(c) => c.get(idx)?,
        None if idx == 0 => e,
        None => return None,
    };
    v.as_str()?.parse().ok()
}

/// Commands deleting every element of the sandbox addresses in `drop` (or, with `keep`, of every address
/// not in it).
fn removals(nft: &Nft<'_>, matcher: &dyn Fn(Ipv4Addr) -> bool) -> Result<Vec<Value>> {
    removals_in(nft, &["inet", "bridge"], matcher)
}

/// [`removals`] in some of beam's tables only.
fn removals_in(nft: &Nft<'_>, families: &[&str], matcher: &dyn Fn(Ipv4Addr) -> bool) -> Result<Vec<Value>> {
    let mut cmds = Vec::new();
    for family in families {
        // The sandbox address is the first item of inet elements, the second of bridge ones (ifname . ip).
        let ip_at = usize::from(*family == "bridge");
        for (set, elems) in nft.sets(family)? {
            let gone: Vec<Value> = elems.into_iter().filter(|e| elem_ip(e, ip_at).is_some_and(matcher)).collect();
            if !gone.is_empty() {
                cmds.push(element("delete", family, &set, gone));
            }
        }
    }
    Ok(cmds)
}

fn policy_adds(ip: Ipv4Addr, policy: &Policy) -> Vec<Value> {
    let ip_s = json!(ip.to_string());
    if policy.block_network {
        return vec![element("add", "inet", "blocked", vec![ip_s])];
    }
    let Some(list) = &policy.cidr_allowlist else { return Vec::new() };
    let mut cmds = vec![element("add", "inet", "restricted", vec![ip_s.clone()])];
    // Overlapping or adjacent CIDRs merged: an interval set refuses overlapping elements.
    let elems: Vec<Value> = Ipv4Net::aggregate(list)
        .into_iter()
        .map(|n| {
            let dst = if n.prefix_len() == 32 { json!(n.network().to_string()) } else { prefix(n) };
            json!({ "concat": [ip_s.clone(), dst] })
        })
        .collect();
    if !elems.is_empty() {
        cmds.push(element("add", "inet", "allowed", elems));
    }
    cmds
}

/// Bind `ip` to the port `veth` and give it `policy`, replacing whatever it had, in one batch.
pub fn add_sandbox(nft: &Nft<'_>, veth: &str, ip: Ipv4Addr, policy: &Policy, fresh: bool) -> Result<()> {
    // A fresh lease has no elements (released addresses lose theirs; reconcile drops those of crashed
    // beamds): nothing to list and remove, one nft run.
    let mut cmds = if fresh { Vec::new() } else { removals(nft, &|a| a == ip)? };
    cmds.push(element("add", "bridge", "bound", vec![json!({ "concat": [veth, ip.to_string()] })]));
    cmds.extend(policy_adds(ip, policy));
    nft.apply(cmds, &format!("adding sandbox address {ip} on {veth}"))
}

/// Replace the egress policy of `ip` (its port binding stays), in one batch.
pub fn set_policy(nft: &Nft<'_>, ip: Ipv4Addr, policy: &Policy) -> Result<()> {
    let mut cmds = removals_in(nft, &["inet"], &|a| a == ip)?;
    cmds.extend(policy_adds(ip, policy));
    nft.apply(cmds, &format!("setting the network policy of {ip}"))
}

/// Forget `ip` entirely (policy and port binding).
pub fn remove(nft: &Nft<'_>, ip: Ipv4Addr) -> Result<()> {
    let cmds = removals(nft, &|a| a == ip)?;
    nft.apply(cmds, &format!("removing sandbox address {ip}"))
}

/// Forget every address not in `keep`; how many addresses' elements were dropped.
pub fn retain(nft: &Nft<'_>, keep: &BTreeSet<Ipv4Addr>) -> Result<usize> {
    let cmds = removals(nft, &|a| !keep.contains(&a))?;
    let n = cmds.iter().map(|c| c["delete"]["element"]["elem"].as_array().map_or(0, Vec::len)).sum();
    nft.apply(cmds, "removing addresses of sandboxes that are gone")?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_elements() {
        let ip = Ipv4Addr::new(10, 88, 0, 2);
        assert!(policy_adds(ip, &Policy::default()).is_empty());
        let blocked = policy_adds(ip, &Policy { block_network: true, cidr_allowlist: Some(vec![]) });
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0]["add"]["element"]["name"], "blocked");
        let allow = Policy {
            block_network: false,
            cidr_allowlist: Some(vec!["1.2.3.4/32".parse().unwrap(), "198.51.100.7/24".parse().unwrap()]),
        };
        let cmds = policy_adds(ip, &allow);
        assert_eq!(cmds[0]["add"]["element"]["name"], "restricted");
        let elems = &cmds[1]["add"]["element"]["elem"];
        assert_eq!(elems[0]["concat"][1], "1.2.3.4");
        assert_eq!(elems[1]["concat"][1]["prefix"]["addr"], "198.51.100.0");
        assert_eq!(elem_ip(&elems[1], 0), Some(ip));
        let overlapping = Policy::allow_only(["10.1.0.0/16".parse().unwrap(), "10.0.0.0/8".parse().unwrap()]);
        let cmds = policy_adds(ip, &overlapping);
        assert_eq!(cmds[1]["add"]["element"]["elem"].as_array().unwrap().len(), 1, "merged into 10.0.0.0/8");
    }
}
