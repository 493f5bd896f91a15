//! Per-sandbox networking (`beam::netns`) on the real kernel (root), entirely inside network namespaces the
//! tests create (tests/common_net): a "host" namespace (where beam puts `beam0` and its tables), an
//! "internet" namespace linked to it (198.51.100.1/24, plus 203.0.113.1 behind it) with a TCP responder that
//! answers with the peer's address, and one namespace per sandbox. The real host's ruleset and links are
//! compared before and after one test.

mod common_net;
mod common_root;
use common_net::*;
use common_root::require_root;

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use beam::netns::{self, NetConfig, Network, Policy, Teardown};
use ipnet::Ipv4Net;

/// The "host" and "internet" namespaces and beam's state dir. Everything goes when it drops.
struct World {
    net: Internet,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let net = Internet::new();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("resolv.conf"),
            "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\n",
        )
        .unwrap();
        World { net, dir }
    }

    fn cfg(&self) -> NetConfig {
        let mut cfg = NetConfig::new(self.dir.path().join("net"));
        cfg.resolv_sources = vec![self.dir.path().join("resolv.conf")];
        cfg
    }

    /// A Network over the host namespace, ensured.
    fn network(&self) -> Network {
        let net = Network::new(dup(self.h()), self.cfg()).expect("Network::new");
        net.ensure().expect("ensure");
        net
    }

    fn h(&self) -> BorrowedFd<'_> {
        self.net.h()
    }

    fn i(&self) -> BorrowedFd<'_> {
        self.net.inet.as_fd()
    }

    fn nft_host(&self, args: &str) -> String {
        let mut v = vec!["nft"];
        v.extend(args.split_whitespace());
        run_in(Some(self.h()), &v)
    }
}

fn link_exists(ns: BorrowedFd<'_>, name: &str) -> bool {
    ip(ns, "-o link show").lines().any(|l| l.split(": ").nth(1).is_some_and(|n| n.split('@').next() == Some(name)))
}

fn lease_files(w: &World) -> Vec<String> {
    let dir = w.dir.path().join("net/leases");
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root"]
fn attach_configures_the_sandbox_and_egress_is_nated() {
    require_root();
    let w = World::new();
    let net = w.network();
    assert_eq!(net.subnet(), "10.88.0.0/16".parse::<Ipv4Net>().unwrap(), "first candidate: no host route clashes");
    let sb = new_netns();
    let got = net.attach("sbx-aaaaaaaaaaaa", sb.as_fd(), &Policy::allow_all()).expect("attach");
    assert_eq!(got.ip, Ipv4Addr::new(10, 88, 0, 2));
    assert_eq!((got.gateway, got.prefix_len, got.veth.as_str()), (Ipv4Addr::new(10, 88, 0, 1), 16, "bm-aaaaaaaaaaaa"));
    assert!(
        got.resolv_conf.contains("nameserver 192.0.2.53\n") && !got.resolv_conf.contains("127.0.0.53"),
        "{}",
        got.resolv_conf
    );
    assert!(got.resolv_conf.contains("search example.test"));
    assert!(got.hosts.contains("10.88.0.2\tsbx-aaaaaaaaaaaa\n") && got.hosts.contains("127.0.0.1\tlocalhost"));

    // Inside: eth0 with the lease, lo up, default route via the gateway.
    let addr = ip(sb.as_fd(), "-4 -o addr show dev eth0");
    assert!(addr.contains("inet 10.88.0.2/16"), "{addr}");
    assert!(ip(sb.as_fd(), "-o link show dev lo").contains(",UP"), "lo is up");
    assert!(ip(sb.as_fd(), "-o link show dev eth0").contains(",UP"), "eth0 is up");
    let routes = ip(sb.as_fd(), "-4 route show default");
    assert!(routes.contains("default via 10.88.0.1 dev eth0"), "{routes}");
    // In the host namespace: the host end is a port of beam0, which has the gateway address.
    assert!(ip(w.h(), "-o link show dev bm-aaaaaaaaaaaa").contains("master beam0"));
    assert!(ip(w.h(), "-4 -o addr show dev beam0").contains("inet 10.88.0.1/16"));
    assert_eq!(lease_files(&w), vec!["10.88.0.2"]);

    // Out to the internet, NATed to the host's address.
    assert_eq!(fetch_ok(sb.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());
    assert_eq!(fetch_ok(sb.as_fd(), at(FAR, 80)), HOST_UPLINK.to_string());

    // A second sandbox gets the next address.
    let sb2 = new_netns();
    assert_eq!(
        net.attach("another sandbox", sb2.as_fd(), &Policy::allow_all()).unwrap().ip,
        Ipv4Addr::new(10, 88, 0, 3)
    );
}

#[test]
#[ignore = "needs root"]
fn block_network_allowlist_and_live_policy_changes() {
    require_root();
    let w = World::new();
    let net = w.network();
    let sb = new_netns();
    let id = "sbx-policy000000";
    net.attach(id, sb.as_fd(), &Policy::blocked()).expect("attach");
    assert_blocked(sb.as_fd(), at(INTERNET, 80));

    net.update_policy(id, &Policy::allow_all()).unwrap();
    assert_eq!(fetch_ok(sb.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());

    net.update_policy(id, &Policy::allow_only(["198.51.100.0/24".parse().unwrap()])).unwrap();
    assert_eq!(fetch_ok(sb.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());
    assert_blocked(sb.as_fd(), at(FAR, 80));

    net.update_policy(id, &Policy::allow_only(["203.0.113.1/32".parse().unwrap()])).unwrap();
    assert_eq!(fetch_ok(sb.as_fd(), at(FAR, 80)), HOST_UPLINK.to_string());
    assert_blocked(sb.as_fd(), at(INTERNET, 80));

    net.update_policy(id, &Policy::blocked()).unwrap();
    assert_blocked(sb.as_fd(), at(FAR, 80));

    // Changing its own address does not get a sandbox around its policy: only the leased one is let out.
    net.update_policy(id, &Policy::allow_all()).unwrap();
    assert_eq!(fetch_ok(sb.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());
    // (A permanent neighbour entry for the gateway, so that this checks the IPv4 binding and not only the
    // ARP one; one-way UDP, so that a lost reply cannot hide an escaped packet.)
    let mac = ip(w.h(), "-o link show dev beam0");
    let mac = mac.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).expect("beam0 mac").to_string();
    ip(sb.as_fd(), &format!("neigh replace 10.88.0.1 lladdr {mac} dev eth0 nud permanent"));
    assert!(udp_reaches(sb.as_fd(), w.i(), at(INTERNET, 5353), Duration::from_secs(10)), "UDP from the lease");
    ip(sb.as_fd(), "addr flush dev eth0");
    ip(sb.as_fd(), "addr add 10.88.0.200/16 dev eth0");
    ip(sb.as_fd(), "route add default via 10.88.0.1");
    ip(sb.as_fd(), &format!("neigh replace 10.88.0.1 lladdr {mac} dev eth0 nud permanent"));
    assert!(!udp_reaches(sb.as_fd(), w.i(), at(INTERNET, 5353), BLOCKED_AFTER), "UDP from a spoofed address");
    assert_blocked(sb.as_fd(), at(INTERNET, 80));

    assert!(matches!(net.update_policy("sbx-nosuchthing0", &Policy::blocked()), Err(netns::NetError::NoLease(_))));
}

#[test]
#[ignore = "needs root"]
fn sandboxes_cannot_reach_each_other_or_the_host() {
    require_root();
    let w = World::new();
    let net = w.network();
    let (a, b) = (new_netns(), new_netns());
    let na = net.attach("sbx-aaaaaaaaaaaa", a.as_fd(), &Policy::allow_all()).unwrap();
    let nb = net.attach("sbx-bbbbbbbbbbbb", b.as_fd(), &Policy::allow_all()).unwrap();
    let _in_b = responder(b.as_fd(), 7000);
    let _on_host = responder(w.h(), 7001);
    // The servers work: the host reaches the sandbox, the host reaches itself, A reaches the internet.
    assert_eq!(fetch_ok(w.h(), at(nb.ip, 7000)), "10.88.0.1");
    assert_eq!(fetch_ok(w.h(), at(Ipv4Addr::LOCALHOST, 7001)), "127.0.0.1");
    assert_eq!(fetch_ok(a.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());
    // But A reaches neither B nor the host (by its gateway address or its uplink address).
    assert_blocked(a.as_fd(), at(nb.ip, 7000));
    assert_blocked(a.as_fd(), at(na.gateway, 7001));
    assert_blocked(a.as_fd(), at(HOST_UPLINK, 7001));
    // Nor does the internet reach the sandboxes.
    ip(w.i(), &format!("route add 10.88.0.0/16 via {HOST_UPLINK}"));
    assert_blocked(w.i(), at(nb.ip, 7000));
}

#[test]
#[ignore = "needs root"]
fn detach_releases_veth_lease_and_rules() {
    require_root();
    let w = World::new();
    let net = w.network();
    let sb = new_netns();
    let id = "sbx-detach000000";
    let got = net.attach(id, sb.as_fd(), &Policy::allow_only(["198.51.100.0/24".parse().unwrap()])).unwrap();
    let ruleset = w.nft_host("list ruleset");
    assert!(
        ruleset.contains("10.88.0.2 . 198.51.100.0/24") && ruleset.contains("\"bm-detach000000\" . 10.88.0.2"),
        "{ruleset}"
    );
    net.detach(id).unwrap();
    assert!(!link_exists(w.h(), &got.veth), "host end deleted");
    assert!(!link_exists(sb.as_fd(), "eth0"), "its peer went with it");
    assert!(lease_files(&w).is_empty());
    assert!(!w.nft_host("list ruleset").contains("10.88.0.2"), "no element of its address left");
    net.detach(id).expect("detach is idempotent");
    // Addresses are handed out round-robin: a freed one is not reused at once (stale neighbour and
    // conntrack entries of the old sandbox age out first).
    let sb2 = new_netns();
    assert_eq!(
        net.attach("sbx-next00000000", sb2.as_fd(), &Policy::allow_all()).unwrap().ip,
        Ipv4Addr::new(10, 88, 0, 3)
    );
    assert_eq!(lease_files(&w), vec!["10.88.0.3"]);
}

#[test]
#[ignore = "needs root"]
fn reconcile_after_a_crash_removes_what_dead_sandboxes_left() {
    require_root();
    let w = World::new();
    let (a, b) = (new_netns(), new_netns());
    let (va, vb) = {
        let net = w.network();
        let na = net.attach("sbx-aaaaaaaaaaaa", a.as_fd(), &Policy::allow_all()).unwrap();
        let nb = net.attach("sbx-bbbbbbbbbbbb", b.as_fd(), &Policy::blocked()).unwrap();
        (na, nb)
        // dropped without detach: beamd was killed
    };
    assert_eq!(lease_files(&w).len(), 2);
    let net = w.network();
    assert_eq!(net.subnet(), "10.88.0.0/16".parse::<Ipv4Net>().unwrap(), "the subnet is kept, not re-chosen");
    let done = net.reconcile(&["sbx-aaaaaaaaaaaa"]).unwrap();
    assert_eq!(done.leases, vec![netns::Lease { ip: vb.ip, id: "sbx-bbbbbbbbbbbb".into() }]);
    assert_eq!(done.veths, vec![vb.veth.clone()]);
    assert!(done.firewall_elements >= 2, "b's binding and its block: {done:?}");
    assert!(!link_exists(w.h(), &vb.veth));
    assert!(link_exists(w.h(), &va.veth));
    assert_eq!(lease_files(&w), vec![va.ip.to_string()]);
    let rules = w.nft_host("list ruleset");
    assert!(!rules.contains(&vb.ip.to_string()) && rules.contains(&va.ip.to_string()), "{rules}");
    // The survivor still works, and a reconcile with nothing to do does nothing.
    assert_eq!(fetch_ok(a.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());
    assert_eq!(net.reconcile(&["sbx-aaaaaaaaaaaa"]).unwrap(), netns::Reconciled::default());
}

#[test]
#[ignore = "needs root"]
fn teardown_removes_tables_and_bridge_and_the_real_host_is_untouched() {
    require_root();
    let snapshot = || {
        (
            run_in(None, &["nft", "list", "ruleset"]),
            run_in(None, &["ip", "link"]),
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        )
    };
    let before = snapshot();
    {
        let w = World::new();
        let net = w.network();
        let sb = new_netns();
        net.attach("sbx-teardown0000", sb.as_fd(), &Policy::allow_all()).unwrap();
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            before.2,
            "real host sysctl unchanged"
        );
        let tables = w.nft_host("list tables");
        assert!(tables.contains("table inet beam") && tables.contains("table bridge beam"), "{tables}");
        assert_eq!(
            net.teardown().unwrap(),
            Teardown::KeptForLive { sandboxes: 1 },
            "attached sandboxes keep their rules"
        );
        assert!(w.nft_host("list tables").contains("table inet beam"));
        net.detach("sbx-teardown0000").unwrap();
        assert_eq!(net.teardown().unwrap(), Teardown::Removed);
        assert!(!w.nft_host("list tables").contains("beam"), "tables gone");
        assert!(!link_exists(w.h(), "beam0"), "bridge gone");
        // A later start builds everything again.
        net.ensure().unwrap();
        assert!(link_exists(w.h(), "beam0"));
    }
    assert_eq!(snapshot(), before, "the real host's ruleset, links and ip_forward are byte-identical");
}

#[test]
#[ignore = "needs root"]
fn network_none_is_loopback_only() {
    require_root();
    let sb = new_netns();
    netns::loopback_up(sb.as_fd()).unwrap();
    let links = ip(sb.as_fd(), "-o link show");
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains(",UP"), "{links}");
    let _echo = responder(sb.as_fd(), 9);
    assert_eq!(fetch_ok(sb.as_fd(), at(Ipv4Addr::LOCALHOST, 9)), "127.0.0.1");
}

#[test]
#[ignore = "needs root"]
fn subnet_avoids_host_routes_and_can_be_configured() {
    require_root();
    let w = World::new();
    ip(w.h(), "addr add 10.88.7.7/16 dev up0");
    ip(w.h(), "route add 10.89.0.0/24 via 198.51.100.1");
    let net = Network::new(dup(w.h()), w.cfg()).unwrap();
    assert_eq!(net.subnet(), "10.90.0.0/16".parse::<Ipv4Net>().unwrap());
    drop(net);
    let mut cfg = w.cfg();
    cfg.subnet = Some("192.168.77.0/24".parse().unwrap());
    let net = Network::new(dup(w.h()), cfg).unwrap();
    net.ensure().unwrap();
    let sb = new_netns();
    let got = net.attach("sbx-configured00", sb.as_fd(), &Policy::allow_all()).unwrap();
    assert_eq!(
        (got.ip, got.gateway, got.prefix_len),
        (Ipv4Addr::new(192, 168, 77, 2), Ipv4Addr::new(192, 168, 77, 1), 24)
    );
    assert_eq!(fetch_ok(sb.as_fd(), at(INTERNET, 80)), HOST_UPLINK.to_string());
}

/// Sandbox links take the uplink's MTU (a host on a 1400-byte link must not hand sandboxes 1500, or large
/// replies depend on path-MTU discovery), an explicit MTU wins, and handshakes out get their MSS clamped.
#[test]
#[ignore = "needs root"]
fn links_take_the_uplink_mtu_and_mss_is_clamped() {
    require_root();
    let w = World::new();
    ip(w.h(), "link set up0 mtu 1400");
    let net = w.network();
    assert_eq!(net.mtu(), 1400);
    let sb = new_netns();
    net.attach("sbx-mmmmmmmmmmmm", sb.as_fd(), &Policy::allow_all()).expect("attach");
    for (ns, dev) in [(sb.as_fd(), "eth0"), (w.h(), "bm-mmmmmmmmmmmm"), (w.h(), "beam0")] {
        let l = ip(ns, &format!("-o link show dev {dev}"));
        assert!(l.contains(" mtu 1400 "), "{dev}: {l}");
    }
    assert_eq!(fetch_ok(sb.as_fd(), at(FAR, 80)), HOST_UPLINK.to_string(), "still reaches the internet");
    let rules = w.nft_host("list chain inet beam forward");
    assert!(rules.contains("tcp option maxseg size set rt mtu"), "{rules}");

    // Configured: wins over the uplink's.
    let w2 = World::new();
    let mut cfg = w2.cfg();
    cfg.mtu = Some(1280);
    let net2 = Network::new(dup(w2.h()), cfg).expect("Network::new");
    assert_eq!(net2.mtu(), 1280);
}
