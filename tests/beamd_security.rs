//! beamd's sandbox defaults as untrusted code and its tools meet them, seen from inside a real sandbox:
//! root may change the whole root filesystem (its own overlay upper layer) while beam's init stays
//! untouchable; `apt-get install` works; raw sockets need NET_RAW, asked for at create, while ping's
//! ICMP datagram sockets work without; a bad capability name is a 400 that leaves nothing; the opt-in
//! `read-only-system` landlock preset still keeps /usr read-only. Every test runs its own beamd
//! (tests/common_beamd), which deletes its sandboxes even when the test fails. Root only.

mod common_beamd;
mod common_net;
mod common_root;
use common_beamd::*;
use common_root::require_root;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn landlock_abi(b: &Beamd) -> u64 {
    b.get("/v1/version").json()["landlock_abi"].as_u64().expect("landlock_abi")
}

fn sid(s: &Value) -> String {
    s["id"].as_str().unwrap_or_else(|| panic!("no id: {s}")).to_string()
}

/// Run `script` with sh and assert it exits 0; returns stdout.
fn ok(b: &Beamd, id: &str, script: &str) -> String {
    let o = b.sh(id, script);
    assert_eq!(o.code(), 0, "{script}: stdout {:?} stderr {:?}", o.out(), o.err());
    o.out()
}

/// Run `script` and assert it fails with `err` in its stderr.
fn fails(b: &Beamd, id: &str, script: &str, err: &str) {
    let o = b.sh(id, script);
    assert_ne!(o.code(), 0, "{script} succeeded: {:?}", o.out());
    assert!(o.err().contains(err), "{script}: wanted {err:?} in stderr {:?}", o.err());
}

/// CapEff of the sandbox's root, as a number.
fn cap_eff(b: &Beamd, id: &str) -> u64 {
    let status = ok(b, id, "cat /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_else(|| panic!("no CapEff:\n{status}"));
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).unwrap()
}

const CAP_NET_RAW: u64 = 1 << 13;
const CAP_MKNOD: u64 = 1 << 27;
const CAP_AUDIT_WRITE: u64 = 1 << 29;
/// podman's 11: Docker's 14 (0xa80425fb) without NET_RAW, MKNOD and AUDIT_WRITE.
const DEFAULT_CAP_EFF: u64 = 0x8004_05fb;

#[test]
#[ignore = "needs root"]
fn default_policy_lets_root_change_the_root_filesystem_but_not_beams_init() {
    require_root();
    let b = Beamd::start("sec-rootfs");
    let abi = landlock_abi(&b);
    let s = b.create(&json!({"image": "busybox"}));
    let id = sid(&s);
    if abi > 0 {
        assert_eq!(s["security"]["landlock"], json!({"preset": "writable-root", "ro": [], "rw": ["/"]}), "{s}");
    } else {
        eprintln!("landlock_abi 0: the sandbox runs without landlock");
    }
    assert_eq!(cap_eff(&b, &id), DEFAULT_CAP_EFF);

    // A new top-level dir and a file in it; /usr/bin; the image's own files; a new file right under /.
    assert_eq!(ok(&b, &id, "mkdir /app && echo hi > /app/x && cat /app/x"), "hi\n");
    assert_eq!(ok(&b, &id, "mkdir -p /usr/bin && printf '#!/bin/sh\\necho tool\\n' > /usr/bin/tool && chmod 755 /usr/bin/tool && /usr/bin/tool"), "tool\n");
    ok(&b, &id, "echo 'beam:x:1000:1000::/home/beam:/bin/sh' >> /etc/passwd && grep -q ^beam: /etc/passwd");
    ok(&b, &id, "touch /toplevel && mv /toplevel /bin/moved && rm /bin/moved && rm -r /app");

    // beam's init: read-only bind mount (EROFS), a mount point (EBUSY), and no mount changes at all.
    let host_init = std::fs::read(b.run_dir.join("beam-init")).expect("beamd's init copy");
    let before = ok(&b, &id, "sha256sum /dev/.beam-init");
    ok(&b, &id, "echo replacement > /tmp/fake && chmod 755 /tmp/fake && cp /tmp/fake /dev/fake");
    // Writes: EROFS, or EACCES where the kernel checks permissions first (its owner, host root, is not
    // mapped in the sandbox, so CAP_DAC_OVERRIDE and CAP_FOWNER don't apply to it).
    let denied = "read-only file system|permission denied|operation not permitted";
    for (script, err) in [
        ("echo x > /dev/.beam-init", denied),
        ("echo x >> /dev/.beam-init", denied),
        ("truncate -s 0 /dev/.beam-init", denied),
        ("chmod 777 /dev/.beam-init", denied),
        ("chown 1000 /dev/.beam-init", denied),
        ("touch /dev/.beam-init", denied),
        ("rm -f /dev/.beam-init", "busy"),
        ("mv /dev/fake /dev/.beam-init", "busy"),
        ("mv /tmp/fake /dev/.beam-init", "busy"),
        ("umount /dev/.beam-init", "not permitted"),
        ("umount -l /dev", "not permitted"),
        ("mount --bind /tmp/fake /dev/.beam-init", "permission denied"),
        ("mount -t tmpfs none /dev", "permission denied"),
    ] {
        let o = b.sh(&id, script);
        assert_ne!(o.code(), 0, "{script} succeeded: {o:?}");
        let e = o.err().to_lowercase();
        assert!(err.split('|').any(|want| e.contains(want)), "{script}: wanted {err:?} in {:?}", o.err());
    }
    assert_eq!(ok(&b, &id, "sha256sum /dev/.beam-init"), before, "the init changed");
    let inside = b.get(&format!("/v1/sandboxes/{id}/files?path=/dev/.beam-init"));
    assert_eq!(inside.status, 200, "{}", inside.text());
    assert!(inside.body == host_init, "/dev/.beam-init is not beamd's init any more");
    // The init still serves: a new exec, and a process it forks, work.
    assert_eq!(ok(&b, &id, "sh -c 'echo still'"), "still\n");

    // ping's datagram sockets cover every gid the sandbox has: its user namespace's 65536, or all.
    assert_eq!(ok(&b, &id, "cat /proc/sys/net/ipv4/ping_group_range").split_whitespace().collect::<Vec<_>>(), ["0", "65535"]);
    let host = b.create(&json!({"image": "busybox", "insecure_no_userns": true}));
    let range = ok(&b, &sid(&host), "cat /proc/sys/net/ipv4/ping_group_range");
    assert_eq!(range.split_whitespace().collect::<Vec<_>>(), ["0", "2147483647"]);
}

#[test]
#[ignore = "needs root"]
fn unknown_or_forbidden_capability_is_a_400_that_leaves_nothing() {
    require_root();
    let b = Beamd::start("sec-caps");
    for (caps, want) in [
        (json!(["NET_RAWW"]), "\"NET_RAWW\""),
        (json!(["NET_RAW", ""]), "\"\""),
        (json!(["SYS_ADMIN"]), "SYS_ADMIN"),
        (json!(["cap_sys_ptrace"]), "SYS_PTRACE"),
    ] {
        let r = b.post("/v1/sandboxes", &json!({"image": "busybox", "capabilities": caps, "name": "c"}));
        let msg = r.api_error(400);
        assert!(msg.contains(want) && msg.contains("NET_RAW"), "{caps}: {msg}");
    }
    let r = b.post("/v1/sandboxes", &json!({"image": "busybox", "capabilities": "NET_RAW"}));
    r.api_error(400);
    assert!(b.ids().is_empty(), "a refused create left a sandbox: {:?}", b.ids());
    let dirs: Vec<_> = std::fs::read_dir(b.root.join("sandboxes")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(dirs.is_empty(), "left in the state dir: {dirs:?}");
    assert!(b.mounts().is_empty(), "left mounted: {:?}", b.mounts());
    // The name is still free, and a good list works (any spelling; one of the defaults changes nothing).
    let s = b.create(&json!({"image": "busybox", "name": "c", "capabilities": ["mknod", "CAP_AUDIT_WRITE", "CHOWN"]}));
    let caps: Vec<&str> = s["security"]["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(caps.len(), 13, "{caps:?}");
    assert!(caps.contains(&"CAP_MKNOD") && caps.contains(&"CAP_AUDIT_WRITE") && !caps.contains(&"CAP_NET_RAW"), "{caps:?}");
    assert_eq!(cap_eff(&b, &sid(&s)), DEFAULT_CAP_EFF | CAP_MKNOD | CAP_AUDIT_WRITE);
}

#[test]
#[ignore = "needs root"]
fn read_only_system_preset_keeps_usr_read_only() {
    require_root();
    let b = Beamd::start("sec-ro");
    let abi = landlock_abi(&b);
    // An explicit policy is enforced strictly, and read-only needs truncate(2) denied: ABI 3 (Linux 6.2).
    if abi < 3 {
        eprintln!("skipped: landlock ABI {abi}, an explicit policy needs 3");
        return;
    }
    // TCP port rules need ABI 4 (Linux 6.7).
    let policy = if abi >= 4 { json!({"preset": "read-only-system", "tcp_bind": [8080]}) } else { json!({"preset": "read-only-system"}) };
    let s = b.create(&json!({"image": "busybox", "landlock": policy}));
    let id = sid(&s);
    let ll = &s["security"]["landlock"];
    assert_eq!(ll["preset"], "read-only-system", "{s}");
    assert_eq!(ll["ro"], json!(["/"]), "{s}");
    for script in ["touch /usr/x", "mkdir /app", "touch /bin/x", "echo x > /dev/new", "rm /dev/null"] {
        fails(&b, &id, script, "Permission denied");
    }
    fails(&b, &id, "echo x > /dev/.beam-init", "");
    ok(&b, &id, "touch /tmp/ok /etc/ok /root/ok && echo hi > /dev/null && head -c 4 /dev/urandom > /dev/shm/r && ls /tmp/ok");
    if abi >= 4 {
        // The TCP rule on top: only 8080 may be bound (busybox nc; a bind that works would listen until the timeout).
        assert_eq!(ll["tcp_bind"], json!([8080]), "{s}");
        fails(&b, &id, "timeout 5 nc -l -p 8081", "Permission denied");
    }

    // ro paths can't go with writable-root: they could only add what it already grants.
    let r = b.post("/v1/sandboxes", &json!({"image": "busybox", "landlock": {"preset": "writable-root", "ro": ["/usr"]}}));
    assert!(r.api_error(400).contains("read-only-system"));
    let r = b.post("/v1/sandboxes", &json!({"image": "busybox", "landlock": {"preset": "strict"}}));
    r.api_error(400);
    assert_eq!(b.ids(), vec![id]);
}

/// A tiny Debian package built here (no network): a program in /usr/bin, a doc under /usr/share, a
/// postinst writing under /var, a dependency apt must find already installed.
fn build_deb(dir: &Path) -> std::path::PathBuf {
    let pkg = dir.join("pkg");
    for (path, text, mode) in [
        ("DEBIAN/control", "Package: beam-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: beam tests <beam@localhost>\nDepends: dash\nDescription: a package beam's tests install in a sandbox\n", 0o644),
        ("DEBIAN/postinst", "#!/bin/sh\nset -e\nmkdir -p /var/lib/beam-hello\necho configured > /var/lib/beam-hello/state\n", 0o755),
        ("usr/bin/beam-hello", "#!/bin/sh\necho hello from beam-hello\n", 0o755),
        ("usr/share/doc/beam-hello/README", "beam-hello\n", 0o644),
    ] {
        let p = pkg.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let deb = dir.join("beam-hello_1.0_all.deb");
    let out = Command::new("dpkg-deb").arg("--root-owner-group").arg("--build").arg(&pkg).arg(&deb).output().expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&out.stderr));
    deb
}

/// images/debian.toml built in beamd's store: debootstrap from the host's Debian mirror (≈40 s), so this
/// needs the network, like tests/recipes.rs's python test. The sandboxes themselves need none: the
/// package comes in through the files API.
#[test]
#[ignore = "needs root"]
fn debian_apt_install_and_raw_sockets() {
    require_root();
    if !has_net_tools() {
        return;
    }
    // Bridge networking in a namespace of the test's own, so that ping crosses the NAT to its "internet".
    let net = common_net::Internet::new();
    let nspath = common_net::ns_path(net.h());
    let b = Beamd::start_with("sec-debian", &["--network", "bridge", "--network-netns", &nspath, "--gateway", "none"]);
    let far = common_net::FAR.to_string();
    let store = beam::image::store::Store::open(&b.root.join("images")).expect("open beamd's store");
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/debian.toml");
    let started = std::time::Instant::now();
    let opts = beam::image::recipe::BuildOptions { tag: None, quiet: true };
    beam::image::recipe::build(&store, &recipe, &opts).expect("build images/debian.toml");
    eprintln!("debian.toml built in {:?}", started.elapsed());
    drop(store);

    // apt-get install of a local package under the default policy: dpkg writes /usr, /var, runs postinst.
    let s = b.create(&json!({"image": "beam.local/debian:bookworm"}));
    let id = sid(&s);
    let deb = build_deb(b.tmp.path());
    let bytes = std::fs::read(&deb).unwrap();
    let put = b.try_request("PUT", &format!("/v1/sandboxes/{id}/files?path=/tmp/beam-hello.deb"), Some(&bytes), &[("Content-Type", "application/octet-stream")]).unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
    let o = b.exec(&id, &json!({"cmd": ["apt-get", "install", "-y", "/tmp/beam-hello.deb"], "env": {"DEBIAN_FRONTEND": "noninteractive"}}));
    assert_eq!(o.code(), 0, "apt-get install: {}\n{}", o.out(), o.err());
    assert_eq!(ok(&b, &id, "beam-hello"), "hello from beam-hello\n");
    assert_eq!(ok(&b, &id, "cat /var/lib/beam-hello/state"), "configured\n");
    assert!(ok(&b, &id, "dpkg -s beam-hello").contains("Status: install ok installed"));
    let o = b.exec(&id, &json!({"cmd": ["apt-get", "remove", "-y", "beam-hello"], "env": {"DEBIAN_FRONTEND": "noninteractive"}}));
    assert_eq!(o.code(), 0, "apt-get remove: {}\n{}", o.out(), o.err());
    fails(&b, &id, "test -e /usr/bin/beam-hello || { echo gone >&2; exit 1; }", "gone");

    // Sockets: raw IP and AF_PACKET refused without NET_RAW; an ICMP datagram socket (iputils' `ping`
    // uses one) pings loopback and, NATed, the test's internet. Each try waits for its reply (links and
    // neighbours come up asynchronously).
    let probe = r#"
use Socket;
print "raw ", (socket(my $r, AF_INET, SOCK_RAW, 1) ? "ok" : "$!"), "\n";
print "packet ", (socket(my $p, 17, SOCK_RAW, 0) ? "ok" : "$!"), "\n";
for my $to (@ARGV) {
    socket(my $d, AF_INET, SOCK_DGRAM, 1) or die "icmp datagram socket: $!\n";
    my $type = "none";
    for my $try (1 .. 20) {
        send($d, pack("CCnnn", 8, 0, 0, 0, $try) . "beam", 0, pack_sockaddr_in(0, inet_aton($to))) or next;
        my $rin = ""; vec($rin, fileno($d), 1) = 1;
        if (select(my $rout = $rin, undef, undef, 0.5)) { recv($d, my $reply, 1500, 0); $type = unpack("C", $reply); last }
    }
    print "$to echo reply type $type\n";
}
"#;
    let want = |raw: &str| format!("raw {raw}\npacket {raw}\n127.0.0.1 echo reply type 0\n{far} echo reply type 0\n");
    let o = b.exec(&id, &json!({"cmd": ["perl", "-e", probe, "127.0.0.1", far]}));
    assert_eq!(o.code(), 0, "{}\n{}", o.out(), o.err());
    assert_eq!(o.out(), want("Operation not permitted"), "{}", o.err());
    assert_eq!(cap_eff(&b, &id) & CAP_NET_RAW, 0);
    // Any user of the sandbox may (every gid it has is in ping_group_range).
    let o = b.exec(&id, &json!({"cmd": ["perl", "-e", probe, "127.0.0.1", far], "user": "65534:65534"}));
    assert_eq!(o.out(), want("Operation not permitted"), "{}", o.err());

    // With NET_RAW asked for, both raw kinds work.
    let raw = b.create(&json!({"image": "beam.local/debian:bookworm", "capabilities": ["NET_RAW"]}));
    let raw_id = sid(&raw);
    assert!(raw["security"]["capabilities"].as_array().unwrap().contains(&json!("CAP_NET_RAW")), "{raw}");
    assert_eq!(cap_eff(&b, &raw_id), DEFAULT_CAP_EFF | CAP_NET_RAW);
    let o = b.exec(&raw_id, &json!({"cmd": ["perl", "-e", probe, "127.0.0.1", far]}));
    assert_eq!(o.code(), 0, "{}\n{}", o.out(), o.err());
    assert_eq!(o.out(), want("ok"), "{}", o.err());
}

fn has_net_tools() -> bool {
    let ok = Command::new("nft").arg("--version").output().is_ok() && Command::new("ip").arg("-V").output().is_ok();
    if !ok {
        eprintln!("skipped: needs nft and ip");
    }
    ok
}

/// Bridge networking (its bridge and tables in a "host" namespace this test makes, linked to a fake
/// internet; tests/common_net): the ping sysctl in the sandbox's own namespace there too; busybox's `ping`
/// (1.35: raw sockets only, no datagram fallback) is refused without NET_RAW and pings the internet, NATed,
/// with it.
#[test]
#[ignore = "needs root"]
fn busybox_ping_needs_net_raw_on_a_bridge_network() {
    require_root();
    if !has_net_tools() {
        return;
    }
    let net = common_net::Internet::new();
    let nspath = common_net::ns_path(net.h());
    let b = Beamd::start_with("sec-ping", &["--network", "bridge", "--network-netns", &nspath, "--gateway", "none"]);
    let far = common_net::FAR;
    let s = b.create(&json!({"image": "busybox"}));
    let id = sid(&s);
    assert_eq!(s["network"]["mode"], "bridge", "{s}");
    assert_eq!(ok(&b, &id, "cat /proc/sys/net/ipv4/ping_group_range").split_whitespace().collect::<Vec<_>>(), ["0", "65535"]);
    fails(&b, &id, &format!("ping -c 1 -W 1 {far}"), "permission denied");

    let raw = b.create(&json!({"image": "busybox", "capabilities": ["NET_RAW"]}));
    let raw_id = sid(&raw);
    assert_eq!(cap_eff(&b, &raw_id), DEFAULT_CAP_EFF | CAP_NET_RAW);
    // Links and neighbours come up asynchronously: a few tries, one packet each.
    let out = ok(&b, &raw_id, &format!("for i in $(seq 20); do ping -c 1 -W 1 {far} && exit 0; done; exit 1"));
    assert!(out.contains("1 packets received"), "{out}");
}
