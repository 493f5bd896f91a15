//! beamd with `--network bridge`, its bridge and firewall table inside a network namespace this test makes
//! (standing in for the host: nothing touches the real host's interfaces or ruleset). Sandboxes get an
//! address, a default route, resolv.conf and hosts; they can't reach each other; a policy change applies
//! to a running sandbox; stop and a beamd crash release veths and leases. Root only.

mod common_beamd;
use common_beamd::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A network namespace held by a `sleep` child of ours (killed on drop: the namespace goes with it and
/// with beamd's fd).
struct TestNetns {
    child: Child,
}

impl TestNetns {
    fn new() -> TestNetns {
        let child = Command::new("unshare").args(["--net", "sleep", "infinity"]).stdin(Stdio::null()).spawn().expect("unshare");
        let t = TestNetns { child };
        // Wait until the child is in its own namespace.
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(t.path()).map(|l| l == me).unwrap_or(true) {
            assert!(std::time::Instant::now() < deadline, "unshare --net did not take");
            std::thread::sleep(Duration::from_millis(10));
        }
        t
    }
    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.child.id())
    }
    /// `CMD…` run inside the namespace (nsenter).
    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("nsenter").arg(format!("--net={}", self.path())).args(args).output().expect("nsenter");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host_snapshot() -> (String, String) {
    let links = Command::new("ip").args(["-o", "link"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let nft = Command::new("nft").args(["list", "ruleset"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    (links.unwrap_or_default(), nft.unwrap_or_default())
}

#[test]
fn bridge_network_end_to_end() {
    require_root!();
    if Command::new("nft").arg("--version").output().is_err() || Command::new("nsenter").arg("--version").output().is_err() {
        eprintln!("skipped: needs nft and nsenter");
        return;
    }
    let before = host_snapshot();
    let ns = TestNetns::new();
    let nspath = ns.path();
    let mut b = Beamd::start_with("net", &["--network", "bridge", "--network-netns", &nspath, "--gateway", "none"]);

    let a = b.create(&json!({"image": "busybox", "name": "a"}));
    let bb = b.create(&json!({"image": "busybox", "name": "b"}));
    let (a_id, b_id) = (a["id"].as_str().unwrap().to_string(), bb["id"].as_str().unwrap().to_string());
    assert_eq!(a["network"]["mode"], "bridge", "{a}");
    let a_ip = a["network"]["ip"].as_str().unwrap().to_string();
    let b_ip = bb["network"]["ip"].as_str().unwrap().to_string();
    let gw = a["network"]["gateway"].as_str().unwrap().to_string();
    assert_ne!(a_ip, b_ip);

    // inside: eth0 with the lease, the default route, resolv.conf and hosts
    let o = b.sh(&a_id, "ip -o -4 addr show eth0; ip route; cat /etc/hosts; test -f /etc/resolv.conf && echo resolv");
    assert!(o.out().contains(&format!("inet {a_ip}/")), "{}", o.out());
    assert!(o.out().contains(&format!("default via {gw}")), "{}", o.out());
    assert!(o.out().contains(&a_id) && o.out().contains("resolv"), "{}", o.out());
    // the bridge and the table live in the test's namespace, with one veth per sandbox
    let links = ns.run(&["ip", "-o", "link"]);
    assert!(links.contains("beam0") && links.matches("bm-").count() == 2, "{links}");
    assert!(ns.run(&["nft", "list", "tables"]).contains("beam"));

    // b serves on its own address (positive control), a can't reach it
    let mut srv = b.exec_upgraded(&b_id, &json!({"cmd": ["sh", "-c", "while true; do echo pong | nc -l -p 8000; done"]}));
    let own = b.sh(&b_id, &format!("for i in $(seq 100); do r=$(nc -w 1 {b_ip} 8000 </dev/null) && [ -n \"$r\" ] && echo $r && break; sleep 0.05; done"));
    assert_eq!(own.out(), "pong\n", "{}", own.err());
    let cross = b.sh(&a_id, &format!("nc -w 2 {b_ip} 8000 </dev/null; echo rc=$?"));
    assert!(!cross.out().contains("pong"), "sandbox a reached sandbox b: {}", cross.out());
    srv.send(beam::api::frames::SIGNAL, br#"{"signal":"KILL"}"#);
    srv.finish();

    // policy on a running sandbox: recorded, and bad CIDRs refused
    let p = b.request("PATCH", &format!("/v1/sandboxes/{a_id}"), Some(&json!({"block_network": true})));
    assert_eq!(p.status, 200, "{}", p.text());
    assert_eq!(p.json()["network"]["block_network"], true);
    b.request("PATCH", &format!("/v1/sandboxes/{a_id}"), Some(&json!({"cidr_allowlist": ["nope"]}))).api_error(400);
    b.post("/v1/sandboxes", &json!({"image": "busybox", "network": "none", "block_network": true})).api_error(400);
    let none = b.create(&json!({"image": "busybox", "network": "none"}));
    assert_eq!(none["network"]["mode"], "none");
    assert!(b.sh(none["id"].as_str().unwrap(), "ip -o link | grep -c eth0").out().trim() == "0");

    // stop releases b's veth and lease
    b.post(&format!("/v1/sandboxes/{b_id}/stop"), &json!({}));
    let lease_dir = b.root.join("network/leases");
    let leases = || std::fs::read_dir(&lease_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leases(), 1, "only a's lease is left");
    assert_eq!(ns.run(&["ip", "-o", "link"]).matches("bm-").count(), 1);

    // a sandbox that dies while beamd is down: its lease is released at the next start
    let c = b.create(&json!({"image": "busybox"}));
    let c_pid = c["pid"].as_i64().unwrap() as i32;
    assert_eq!(leases(), 2);
    b.kill9();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    b.await_until("c's init gone", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{c_pid}/stat")).map(|s| s.contains(") Z")).unwrap_or(true)
    });
    b.spawn();
    assert_eq!(leases(), 1, "c's lease released after the restart");
    assert_eq!(b.get(&format!("/v1/sandboxes/{a_id}")).json()["state"], "running");

    for id in b.ids() {
        b.request("DELETE", &format!("/v1/sandboxes/{id}"), None);
    }
    assert_eq!(leases(), 0);
    assert_eq!(ns.run(&["ip", "-o", "link"]).matches("bm-").count(), 0);
    b.terminate();
    drop(b);
    drop(ns);
    assert_eq!(host_snapshot(), before, "the real host's links and ruleset are untouched");
}
