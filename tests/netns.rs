//! Per-sandbox networking (`beam::netns`) on the real kernel (root), entirely inside network namespaces the
//! tests create: a "host" namespace (where beam puts `beam0` and its tables), an "internet" namespace linked
//! to it (198.51.100.1/24, plus 203.0.113.1 behind it) with a TCP responder that answers with the peer's
//! address, and one namespace per sandbox. Namespaces are held only as fds (no named netns, no processes),
//! so they vanish with everything in them when a test ends, even when it fails. The real host's ruleset and
//! links are compared before and after one test.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use beam::netns::{self, NetConfig, Network, Policy, Teardown};
use ipnet::Ipv4Net;

macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// How long a connection that should be dropped gets before it counts as blocked.
const BLOCKED_AFTER: Duration = Duration::from_millis(1200);

/// A new, empty network namespace, held by an fd only: a short-lived thread unshares and opens it.
fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        // SAFETY: unshare(CLONE_NEWNET) affects only this short-lived thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
        OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").expect("open thread-self ns"))
    })
    .join()
    .expect("netns thread")
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().expect("dup")
}

/// A path to a namespace fd that other processes (`ip … netns PATH`) can open.
fn ns_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// Run a command inside namespace `ns` (None: the test's own, the real host's); its stdout. Panics on failure.
fn run_in(ns: Option<BorrowedFd<'_>>, args: &[&str]) -> String {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    if let Some(ns) = ns {
        let raw = ns.as_raw_fd();
        // SAFETY: only setns (async-signal-safe) between fork and exec; the fd stays open until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(ns: BorrowedFd<'_>, args: &str) -> String {
    let mut v = vec!["ip"];
    v.extend(args.split_whitespace());
    run_in(Some(ns), &v)
}

/// Run `f` on a thread inside namespace `ns`.
fn on_thread_in<T: Send + 'static>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let raw: RawFd = ns.as_raw_fd();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: setns on this thread only; the caller's fd is live until we signal below.
        let rc = unsafe { libc::setns(raw, libc::CLONE_NEWNET) };
        let _ = tx.send(rc);
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    });
    rx.recv().expect("thread started");
    t
}

/// A TCP server in a namespace that answers every connection with the peer's address; stopped on drop.
struct Responder {
    fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

fn responder(ns: BorrowedFd<'_>, port: u16) -> Responder {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = on_thread_in(ns, move || {
        let l = TcpListener::bind(("0.0.0.0", port)).expect("bind responder");
        tx.send(l.as_raw_fd()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let peer = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
            let _ = s.write_all(peer.as_bytes());
        }
    });
    Responder { fd: rx.recv().expect("responder listening"), thread: Some(thread) }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // SAFETY: shutting down our own listening socket wakes its accept() with an error; the thread then
        // drops (closes) it.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One TCP exchange from inside `ns`: what the server said.
fn fetch(ns: BorrowedFd<'_>, to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    on_thread_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .expect("fetch thread")
}

/// Fetch, retrying until a deadline (links and neighbours come up asynchronously).
fn fetch_ok(ns: BorrowedFd<'_>, to: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fetch(ns, to, Duration::from_millis(500)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connecting to {to}: {e}"),
            Err(_) => {}
        }
    }
}

fn assert_blocked(ns: BorrowedFd<'_>, to: SocketAddr) {
    if let Ok(s) = fetch(ns, to, BLOCKED_AFTER) {
        panic!("{to} answered {s:?}, it should be blocked");
    }
}

/// Whether a UDP datagram sent (repeatedly) from inside `from` arrives at `to` inside `to_ns` within `wait`.
fn udp_reaches(from: BorrowedFd<'_>, to_ns: BorrowedFd<'_>, to: SocketAddr, wait: Duration) -> bool {
    let got = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let flag = got.clone();
    let rx = on_thread_in(to_ns, move || {
        let s = UdpSocket::bind(("0.0.0.0", to.port())).expect("bind udp");
        s.set_read_timeout(Some(wait)).unwrap();
        ready_tx.send(()).unwrap();
        let ok = s.recv(&mut [0u8; 16]).is_ok();
        flag.store(ok, std::sync::atomic::Ordering::SeqCst);
        ok
    });
    ready_rx.recv().expect("udp receiver ready");
    let flag = got.clone();
    let tx = on_thread_in(from, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind udp sender");
        let end = Instant::now() + wait;
        while Instant::now() < end && !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = s.send_to(b"probe", to);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let ok = rx.join().expect("udp receiver");
    tx.join().expect("udp sender");
    ok
}

fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A host namespace linked to an internet namespace, a responder on port 80 in the internet, and beam's
/// state dir. Everything goes when it drops.
struct World {
    host: OwnedFd,
    inet: OwnedFd,
    dir: tempfile::TempDir,
    _web: Responder,
}

impl World {
    fn new() -> World {
        let host = new_netns();
        let inet = new_netns();
        let h = host.as_fd();
        let i = inet.as_fd();
        ip(h, &format!("link add up0 type veth peer name dn0 netns {}", ns_path(i)));
        ip(h, &format!("addr add {HOST_UPLINK}/24 dev up0"));
        ip(h, "link set up0 up");
        ip(h, "link set lo up");
        ip(h, &format!("route add default via {INTERNET}"));
        ip(i, &format!("addr add {INTERNET}/24 dev dn0"));
        ip(i, &format!("addr add {FAR}/32 dev lo"));
        ip(i, "link set dn0 up");
        ip(i, "link set lo up");
        let web = responder(i, 80);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("resolv.conf"),
            "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\n",
        )
        .unwrap();
        World { host, inet, dir, _web: web }
    }

    fn cfg(&self) -> NetConfig {
        let mut cfg = NetConfig::new(self.dir.path().join("net"));
        cfg.resolv_sources = vec![self.dir.path().join("resolv.conf")];
        cfg
    }

    /// A Network over the host namespace, ensured.
    fn network(&self) -> Network {
        let net = Network::new(dup(self.host.as_fd()), self.cfg()).expect("Network::new");
        net.ensure().expect("ensure");
        net
    }

    fn h(&self) -> BorrowedFd<'_> {
        self.host.as_fd()
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
fn attach_configures_the_sandbox_and_egress_is_nated() {
    require_root!();
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
fn block_network_allowlist_and_live_policy_changes() {
    require_root!();
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
    assert!(udp_reaches(sb.as_fd(), w.inet.as_fd(), at(INTERNET, 5353), Duration::from_secs(10)), "UDP from the lease");
    ip(sb.as_fd(), "addr flush dev eth0");
    ip(sb.as_fd(), "addr add 10.88.0.200/16 dev eth0");
    ip(sb.as_fd(), "route add default via 10.88.0.1");
    ip(sb.as_fd(), &format!("neigh replace 10.88.0.1 lladdr {mac} dev eth0 nud permanent"));
    assert!(!udp_reaches(sb.as_fd(), w.inet.as_fd(), at(INTERNET, 5353), BLOCKED_AFTER), "UDP from a spoofed address");
    assert_blocked(sb.as_fd(), at(INTERNET, 80));

    assert!(matches!(net.update_policy("sbx-nosuchthing0", &Policy::blocked()), Err(netns::NetError::NoLease(_))));
}

#[test]
fn sandboxes_cannot_reach_each_other_or_the_host() {
    require_root!();
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
    ip(w.inet.as_fd(), &format!("route add 10.88.0.0/16 via {HOST_UPLINK}"));
    assert_blocked(w.inet.as_fd(), at(nb.ip, 7000));
}

#[test]
fn detach_releases_veth_lease_and_rules() {
    require_root!();
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
fn reconcile_after_a_crash_removes_what_dead_sandboxes_left() {
    require_root!();
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
fn teardown_removes_tables_and_bridge_and_the_real_host_is_untouched() {
    require_root!();
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
fn network_none_is_loopback_only() {
    require_root!();
    let sb = new_netns();
    netns::loopback_up(sb.as_fd()).unwrap();
    let links = ip(sb.as_fd(), "-o link show");
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains(",UP"), "{links}");
    let _echo = responder(sb.as_fd(), 9);
    assert_eq!(fetch_ok(sb.as_fd(), at(Ipv4Addr::LOCALHOST, 9)), "127.0.0.1");
}

#[test]
fn subnet_avoids_host_routes_and_can_be_configured() {
    require_root!();
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
