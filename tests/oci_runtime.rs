//! beam-oci end to end: real kernel, real processes, as root. Each test makes its own --root and
//! busybox bundle, and `Ctx` deletes every container it made when the test ends (pass or fail).

mod common;
mod common_root;
use common::*;
use common_root::require_root;
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

#[test]
#[ignore = "needs root"]
fn run_echo_and_exit_code() {
    require_root();
    let cx = Ctx::new("run");
    let b = cx.bundle("b", &["echo", "hello from beam"]);
    let id = cx.id("echo");
    let out = cx.run(&["run", "--bundle", b.path(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from beam\n");
    // run deletes the container when it exits
    assert!(!cx.root.join(&id).exists());

    let b = cx.bundle("b2", &["sh", "-c", "exit 7"]);
    let out = cx.run(&["run", "--bundle", b.path(), &cx.id("exit7")]);
    assert_eq!(out.status.code(), Some(7));
}

#[test]
#[ignore = "needs root"]
fn isolation_pid1_hostname_mounts() {
    require_root();
    let cx = Ctx::new("iso");
    let b = cx.bundle("b", &["sh", "-c", "echo pid=$$; hostname; cat /proc/self/mountinfo; ls /proc | grep -c '^[0-9]'"]);
    let out = cx.ok(&["run", "--bundle", b.path(), &cx.id("c")]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("pid=1"));
    assert_eq!(lines.next(), Some("beam"));
    // Only the container's own mounts: the host's /work or /tmp paths don't show as mount points.
    let mounts: Vec<&str> = out.lines().filter(|l| l.contains(" - ")).collect();
    let points: Vec<&str> = mounts.iter().filter_map(|l| l.split(' ').nth(4)).collect();
    for want in ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"] {
        assert!(points.contains(&want), "{want} missing from {points:?}");
    }
    assert!(!points.iter().any(|p| p.starts_with("/work") || p.starts_with("/tmp")), "{points:?}");
    // Only our processes: sh and ls and grep at most.
    let nprocs: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(nprocs <= 3, "container sees {nprocs} processes");
}

#[test]
#[ignore = "needs root"]
fn capabilities_and_seccomp_in_effect() {
    require_root();
    let cx = Ctx::new("sec");
    let mut b = cx.bundle("b", &["sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; mkdir /tmp/x"]);
    let mut profile = serde_json::to_value(beam::runtime::seccomp::default_profile()).unwrap();
    profile["syscalls"].as_array_mut().unwrap().insert(0, json!({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}));
    b.config["linux"]["seccomp"] = profile;
    b.save();
    let out = cx.run(&["run", "--bundle", b.path(), &cx.id("c")]);
    let text = stdout(&out);
    // AUDIT_WRITE(29) | KILL(5) | NET_BIND_SERVICE(10)
    assert!(text.contains("CapEff:\t0000000020000420"), "{text}");
    assert!(text.contains("CapBnd:\t0000000020000420"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(text.contains("Seccomp:\t2"), "{text}");
    // errno 42 is ENOMSG: "No message of desired type"
    assert!(stderr(&out).contains("No message of desired type"), "{}", stderr(&out));
    assert!(!b.rootfs().join("tmp/x").exists());
}

#[test]
#[ignore = "needs root"]
fn memory_limit_oom_kills_and_is_reported() {
    require_root();
    let cx = Ctx::new("oom");
    let mut b = cx.bundle("b", &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024});
    b.save();
    let id = cx.id("c");
    cx.ok(&["create", "--bundle", b.path(), &id]);
    cx.ok(&["start", &id]);
    cx.await_status(&id, "stopped");
    let st = cx.state(&id);
    assert_eq!(st["oomKilled"], json!(true), "{st}");
    cx.ok(&["delete", &id]);
}

#[test]
#[ignore = "needs root"]
fn pids_limit_stops_a_fork_bomb() {
    require_root();
    let cx = Ctx::new("pids");
    let mut b = cx.bundle("b", &["sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo spawned"]);
    b.config["linux"]["resources"]["pids"] = json!({"limit": 10});
    b.save();
    let out = cx.run(&["run", "--bundle", b.path(), &cx.id("c")]);
    assert!(stderr(&out).contains("can't fork"), "stderr: {}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn masked_and_readonly_paths() {
    require_root();
    let cx = Ctx::new("mask");
    let mut b = cx.bundle(
        "b",
        &["sh", "-c", "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo WROTE; touch /etc/x && echo TOUCHED"],
    );
    b.config["root"]["readonly"] = json!(true);
    b.save();
    let out = cx.run(&["run", "--bundle", b.path(), &cx.id("c")]);
    let text = stdout(&out);
    let mut l = text.lines();
    assert_eq!(l.next().map(str::trim), Some("0"), "{text}");
    assert_eq!(l.next().map(str::trim), Some("0"), "{text}");
    assert!(!text.contains("WROTE") && !text.contains("TOUCHED"), "{text}");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root"]
fn hooks_run_in_order_with_state() {
    require_root();
    let cx = Ctx::new("hooks");
    let mut b = cx.bundle("b", &["true"]);
    let log = cx.tmp.path().join("hooks");
    std::fs::create_dir(&log).unwrap();
    let host_log = log.join("log");
    let hook = |name: &str, path: &str| {
        json!({"path": "/bin/busybox", "args": ["busybox", "sh", "-c", format!("read -r s; case \"$s\" in *'\"id\"'*) echo {name} >> {path};; esac")]})
    };
    let hp = host_log.to_str().unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/hooklog", "type": "bind", "source": log, "options": ["rbind"]}));
    b.config["hooks"] = json!({
        "createRuntime": [hook("createRuntime", hp)],
        "createContainer": [hook("createContainer", hp)],
        "startContainer": [hook("startContainer", "/hooklog/log")],
        "poststart": [hook("poststart", hp)],
        "poststop": [hook("poststop", hp)],
    });
    b.save();
    let id = cx.id("c");
    cx.ok(&["create", "--bundle", b.path(), &id]);
    assert_eq!(std::fs::read_to_string(&host_log).unwrap(), "createRuntime\ncreateContainer\n");
    cx.ok(&["start", &id]);
    cx.await_status(&id, "stopped");
    cx.ok(&["delete", &id]);
    assert_eq!(
        std::fs::read_to_string(&host_log).unwrap(),
        "createRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
}

#[test]
#[ignore = "needs root"]
fn console_socket_receives_a_working_pty() {
    require_root();
    let cx = Ctx::new("tty");
    let mut b = cx.bundle("b", &["sh", "-c", "tty; stty size; read x; echo got:$x"]);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 30, "width": 90});
    b.save();
    let sock = cx.tmp.path().join("console.sock");
    let listener = beam::runtime::console::bind_console_socket(&sock).unwrap();
    let id = cx.id("c");
    cx.ok(&["create", "--bundle", b.path(), "--console-socket", sock.to_str().unwrap(), &id]);
    let master = beam::runtime::console::receive_pty_master(&listener).unwrap();
    cx.ok(&["start", &id]);
    let mut f = std::fs::File::from(master);
    use std::io::{Read, Write};
    f.write_all(b"beam\n").unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 256];
    while !text.contains("got:beam") {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    assert!(text.contains("30 90"), "{text:?}");
    assert!(text.contains("got:beam"), "{text:?}");
}

#[test]
#[ignore = "needs root"]
fn exec_joins_namespaces_and_cgroup() {
    require_root();
    let cx = Ctx::new("exec");
    let b = cx.bundle("b", &["sleep", "1000"]);
    let id = cx.id("c");
    cx.ok(&["run", "--detach", "--bundle", b.path(), &id]);
    let st = cx.state(&id);
    let pid = st["pid"].as_i64().unwrap();
    let out = cx.ok(&["exec", &id, "--", "sh", "-c", "for n in pid mnt uts; do readlink /proc/self/ns/$n; done; hostname; cat /proc/self/cgroup; echo $PATH"]);
    for ns in ["pid", "mnt", "uts"] {
        let host = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert!(out.contains(host.to_str().unwrap()), "{ns}: {host:?} not in {out}");
    }
    assert!(out.contains("beam\n"), "{out}");
    // In its own cgroup namespace the container's cgroup is the root.
    assert!(out.lines().any(|l| l.ends_with(":/")), "{out}");
    assert!(out.contains("/usr/local/sbin"), "{out}");
    // exit status passes through, cwd and env flags apply
    let o = cx.run(&["exec", "--cwd", "/tmp", "-e", "X=42", &id, "sh", "-c", "echo $X $(pwd); exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "42 /tmp\n");
    // a process.json, detached with a pid file
    let pf = cx.tmp.path().join("exec.pid");
    let proc_json = cx.tmp.path().join("process.json");
    std::fs::write(&proc_json, json!({"args": ["sleep", "999"], "cwd": "/", "user": {"uid": 0, "gid": 0}}).to_string()).unwrap();
    cx.ok(&["exec", "--detach", "--process", proc_json.to_str().unwrap(), "--pid-file", pf.to_str().unwrap(), &id]);
    let epid: i32 = std::fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    let pids: Vec<i32> = serde_json::from_str(&cx.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&epid) && pids.contains(&(pid as i32)), "{pids:?}");
    // a missing command is a clear error
    let e = cx.fails(&["exec", &id, "nope-not-here"]);
    assert!(e.contains("executable file not found"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn pause_resume_kill_delete_leave_nothing() {
    require_root();
    let cx = Ctx::new("life");
    let b = cx.bundle("b", &["sleep", "1000"]);
    let id = cx.id("c");
    cx.ok(&["create", "--bundle", b.path(), &id]);
    assert_eq!(cx.state(&id)["status"], "created");
    cx.ok(&["start", &id]);
    assert_eq!(cx.state(&id)["status"], "running");
    let pid = cx.state(&id)["pid"].as_i64().unwrap();
    cx.ok(&["pause", &id]);
    assert_eq!(cx.state(&id)["status"], "paused");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(st.lines().any(|l| l.starts_with("State:") && (l.contains("D") || l.contains("S"))), "{st}");
    let e = cx.fails(&["exec", &id, "true"]);
    assert!(e.contains("paused"), "{e}");
    cx.ok(&["resume", &id]);
    assert_eq!(cx.state(&id)["status"], "running");
    let list = cx.ok(&["list"]);
    assert!(list.contains(&id) && list.contains("running"), "{list}");
    let stats: serde_json::Value = serde_json::from_str(&cx.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(stats["type"], "stats");
    assert!(stats["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{stats}");
    cx.ok(&["update", "--pids-limit", "77", &id]);
    let pids_max: Vec<_> = cgroup_dirs(&format!("/beam/{id}")).into_iter().map(|d| d.join("pids.max")).filter(|p| p.exists()).collect();
    assert_eq!(std::fs::read_to_string(&pids_max[0]).unwrap().trim(), "77");
    let e = cx.fails(&["delete", &id]);
    assert!(e.contains("running") && e.contains("--force"), "{e}");
    cx.ok(&["kill", &id, "KILL"]);
    cx.await_status(&id, "stopped");
    cx.ok(&["delete", &id]);
    assert!(!cx.root.join(&id).exists());
    assert!(cgroup_dirs(&format!("/beam/{id}")).is_empty(), "cgroup left: {:?}", cgroup_dirs(&format!("/beam/{id}")));
    assert!(host_mounts_with(b.rootfs().to_str().unwrap()).is_empty());
    // gone (or a zombie until the host's init reaps it)
    assert_eq!(beam::runtime::state::pid_start_time(pid as i32), None);
    let e = cx.fails(&["state", &id]);
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn kill_all_and_force_delete() {
    require_root();
    let cx = Ctx::new("killall");
    let b = cx.bundle("b", &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let id = cx.id("c");
    cx.ok(&["run", "-d", "--bundle", b.path(), &id]);
    await_cond(Duration::from_secs(5), || serde_json::from_str::<Vec<i32>>(&cx.ok(&["ps", "--format", "json", &id])).unwrap().len() == 3, "3 processes");
    cx.ok(&["kill", "--all", &id, "9"]);
    cx.await_status(&id, "stopped");
    // As runc, which containerd's shim relies on after every exit: `--all` on a stopped container
    // succeeds; a plain kill fails with the words the shim maps to "already exited".
    cx.ok(&["kill", "--all", &id, "9"]);
    let e = cx.fails(&["kill", &id, "9"]);
    assert!(e.contains("container not running"), "{e}");
    cx.ok(&["delete", &id]);
    let b = cx.bundle("b2", &["sleep", "1000"]);
    let id = cx.id("c2");
    cx.ok(&["run", "-d", "--bundle", b.path(), &id]);
    cx.ok(&["delete", "--force", &id]);
    assert!(!cx.root.join(&id).exists());
}

#[test]
#[ignore = "needs root"]
fn user_namespace_maps_root() {
    require_root();
    let cx = Ctx::new("userns");
    let mut b = cx.bundle("b", &["sh", "-c", "cat /proc/self/uid_map; id -u; touch /tmp/f && stat -c %u /tmp/f"]);
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // sysfs can't be mounted for a userns without owning the netns — it is new here, so it can.
    b.save();
    // The container's root must own its writable dirs.
    std::os::unix::fs::chown(b.rootfs().join("tmp"), Some(200000), Some(200000)).unwrap();
    let out = cx.ok(&["run", "--bundle", b.path(), &cx.id("c")]);
    let mut l = out.lines();
    let map: Vec<&str> = l.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "200000", "65536"]);
    assert_eq!(l.next(), Some("0"));
    assert_eq!(l.next(), Some("0"));
    assert_eq!(std::fs::metadata(b.rootfs().join("tmp/f")).unwrap().uid(), 200000);
}

#[test]
#[ignore = "needs root"]
fn sysctl_rlimits_user_and_cwd() {
    require_root();
    let cx = Ctx::new("proc");
    let mut b = cx.bundle("b", &["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; id -u; id -g; id -G; pwd; umask; cat /proc/self/oom_score_adj"]);
    b.config["process"]["oomScoreAdj"] = json!(500);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 321}]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [1002], "umask": 23});
    b.config["process"]["cwd"] = json!("/work/dir");
    b.save();
    let out = cx.ok(&["run", "--bundle", b.path(), &cx.id("c")]);
    assert_eq!(out, "1\n321\n1000\n1001\n1001 1002\n/work/dir\n0027\n500\n");
}

#[test]
#[ignore = "needs root"]
fn no_host_fds_and_runtime_binary_unreachable() {
    require_root();
    let cx = Ctx::new("cve");
    let b = cx.bundle("b", &["sleep", "1000"]);
    let id = cx.id("c");
    // A created container: its init is still the runtime's clone, not yet exec'd.
    cx.ok(&["create", "--bundle", b.path(), &id]);
    let before = std::fs::read(beam_oci()).unwrap();
    let o = cx.run(&["exec", &id, "sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; readlink /proc/1/exe || echo DENIED; echo x > /proc/1/exe || echo NOWRITE; readlink /proc/self/cwd"]);
    let text = stdout(&o);
    let mut l = text.lines();
    // 0,1,2 and the fd ls itself opened for /proc/self/fd
    assert_eq!(l.next().unwrap().trim(), "0 1 2 3", "{text}");
    assert_eq!(l.next(), Some("DENIED"), "{text} {}", stderr(&o));
    assert_eq!(l.next(), Some("NOWRITE"), "{text}");
    assert_eq!(l.next(), Some("/"), "{text}");
    assert_eq!(std::fs::read(beam_oci()).unwrap(), before);
    // the init itself gets only stdio
    cx.ok(&["delete", "--force", &id]);
    let b = cx.bundle("b2", &["sh", "-c", "ls /proc/self/fd | wc -l"]);
    assert_eq!(cx.ok(&["run", "--bundle", b.path(), &cx.id("fds")]).trim(), "4");
}

#[test]
#[ignore = "needs root"]
fn mount_destination_symlink_stays_inside_rootfs() {
    require_root();
    let cx = Ctx::new("symlink");
    let mut b = cx.bundle("b", &["sh", "-c", "cat /evil/marker"]);
    let target = cx.tmp.path().join("host-target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, b.rootfs().join("evil")).unwrap();
    let src = cx.tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "inside\n").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/evil", "type": "bind", "source": src, "options": ["bind"]}));
    b.save();
    let out = cx.ok(&["run", "--bundle", b.path(), &cx.id("c")]);
    assert_eq!(out, "inside\n");
    assert!(host_mounts_with(target.to_str().unwrap()).is_empty());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
#[ignore = "needs root"]
fn bad_input_is_one_clear_line_and_leaves_nothing() {
    require_root();
    let cx = Ctx::new("bad");
    let one_line = |e: &str| assert_eq!(e.trim().lines().count(), 1, "not one line: {e}");
    // no config.json
    let empty = cx.tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = cx.fails(&["create", "--bundle", empty.to_str().unwrap(), &cx.id("a")]);
    assert!(e.contains("config.json"), "{e}");
    one_line(&e);
    // invalid JSON
    let b = cx.bundle("b", &["true"]);
    std::fs::write(b.dir.join("config.json"), "{\"ociVersion\": ").unwrap();
    let e = cx.fails(&["create", "--bundle", b.path(), &cx.id("b")]);
    assert!(e.contains("invalid config.json"), "{e}");
    one_line(&e);
    // rootfs missing
    let mut b = cx.bundle("c", &["true"]);
    b.config["root"]["path"] = json!("nowhere");
    b.save();
    let e = cx.fails(&["create", "--bundle", b.path(), &cx.id("c")]);
    assert!(e.contains("root.path") && e.contains("nowhere"), "{e}");
    one_line(&e);
    // bad id
    let good = cx.bundle("good", &["sleep", "100"]);
    let e = cx.fails(&["create", "--bundle", good.path(), "../evil"]);
    assert!(e.contains("container id"), "{e}");
    one_line(&e);
    // id in use
    let id = cx.id("dup");
    cx.ok(&["create", "--bundle", good.path(), &id]);
    let e = cx.fails(&["create", "--bundle", good.path(), &id]);
    assert!(e.contains("already exists"), "{e}");
    one_line(&e);
    // bad signal; wrong state
    let e = cx.fails(&["kill", &id, "SIGNOPE"]);
    assert!(e.contains("invalid signal"), "{e}");
    let e = cx.fails(&["resume", &id]);
    assert!(e.contains("created") && e.contains("paused"), "{e}");
    cx.ok(&["start", &id]);
    let e = cx.fails(&["start", &id]);
    assert!(e.contains("running"), "{e}");
    cx.ok(&["delete", "--force", &id]);
    // a command that doesn't exist fails at create, leaving nothing
    let b = cx.bundle("d", &["no-such-cmd"]);
    let id = cx.id("nocmd");
    let e = cx.fails(&["create", "--bundle", b.path(), &id]);
    assert!(e.contains("executable file not found"), "{e}");
    one_line(&e);
    // a mount that cannot work
    let mut b = cx.bundle("e", &["true"]);
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/does/not/exist", "options": ["bind"]}));
    b.save();
    let id2 = cx.id("badmount");
    let e = cx.fails(&["create", "--bundle", b.path(), &id2]);
    assert!(e.contains("/x"), "{e}");
    // an unknown namespace type, a duplicate one, a hook that can't be executed, an unknown capability
    type Edit = fn(&mut serde_json::Value);
    let bad: [(&str, Edit, &str); 4] = [
        ("ns", |c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "bogus"})), "bogus"),
        ("dupns", |c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "pid"})), "listed twice"),
        ("hook", |c| c["hooks"] = json!({"prestart": [{"path": "/etc/passwd"}]}), "prestart hook #0 (/etc/passwd)"),
        ("cap", |c| c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(json!("CAP_NOPE")), "CAP_NOPE"),
    ];
    let mut more = vec![];
    for (name, edit, want) in bad {
        let mut b = cx.bundle(name, &["true"]);
        edit(&mut b.config);
        b.save();
        let bid = cx.id(name);
        let e = cx.fails(&["create", "--bundle", b.path(), &bid]);
        assert!(e.contains(want), "{name}: {e}");
        one_line(&e);
        more.push(bid);
    }
    for id in [&id, &id2].into_iter().chain(more.iter()) {
        assert!(!cx.root.join(id).exists(), "state dir left for {id}");
        assert!(cgroup_dirs(&format!("/beam/{id}")).is_empty(), "cgroup left for {id}");
    }
    assert!(cx.ok(&["list", "-q"]).trim().is_empty());
}

#[test]
fn version_features_and_spec() {
    let cx = Ctx::new("misc");
    let v = cx.ok(&["--version"]);
    assert!(v.starts_with("beam-oci version ") && v.contains("spec: 1.2.0"), "{v}");
    let f: serde_json::Value = serde_json::from_str(&cx.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    let d = cx.tmp.path().join("spec");
    std::fs::create_dir(&d).unwrap();
    cx.ok(&["spec", "--bundle", d.to_str().unwrap()]);
    let s: oci_spec::runtime::Spec = serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    assert_eq!(s.hostname().as_deref(), Some("beam"));
    let e = cx.fails(&["--systemd-cgroup", "list"]);
    assert!(e.contains("cgroupfs"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn join_namespaces_by_path_and_time_namespace() {
    require_root();
    let cx = Ctx::new("join");
    let mut a = cx.bundle("a", &["sleep", "1000"]);
    a.config["hostname"] = json!("alpha");
    a.save();
    let ida = cx.id("a");
    cx.ok(&["run", "-d", "--bundle", a.path(), &ida]);
    let apid = cx.state(&ida)["pid"].as_i64().unwrap();
    // B joins A's pid and uts namespaces by path (the slow path: setns + fork into the pid namespace)
    // and gets a new time namespace with boottime moved a year ahead.
    let mut b = cx.bundle("b", &["sh", "-c", "hostname; ps -o comm | grep -c '^sleep$'; echo $$; cut -d. -f1 /proc/uptime"]);
    b.config.as_object_mut().unwrap().remove("hostname");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        if n["type"] == "pid" || n["type"] == "uts" {
            n["path"] = json!(format!("/proc/{apid}/ns/{}", n["type"].as_str().unwrap()));
        }
    }
    ns.push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 31_536_000, "nanosecs": 0}});
    b.save();
    let out = cx.ok(&["run", "--bundle", b.path(), &cx.id("b")]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "alpha", "{out}");
    assert_eq!(l[1], "1", "B sees A's sleep: {out}");
    assert_ne!(l[2], "1", "B is not pid 1 in A's pid namespace: {out}");
    let uptime: u64 = l[3].parse().unwrap();
    assert!(uptime >= 31_536_000, "boottime offset not applied: {out}");
}

#[test]
#[ignore = "needs root"]
fn no_pivot_preserve_fds_and_domainname() {
    require_root();
    let cx = Ctx::new("nopivot");
    let mut b = cx.bundle("b", &["sh", "-c", "cat <&3; cat /proc/sys/kernel/domainname; ls /proc/self/fd | wc -l"]);
    b.config["domainname"] = json!("example.org");
    b.save();
    let data = cx.tmp.path().join("fd3");
    std::fs::write(&data, "passed through fd 3\n").unwrap();
    let f = std::fs::File::open(&data).unwrap();
    let mut c = cx.cmd(&["run", "--no-pivot", "--preserve-fds", "1", "--bundle", b.path(), &cx.id("c")]);
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = f.as_raw_fd();
    // SAFETY: dup2/fcntl in the forked child before exec: the file becomes fd 3 without CLOEXEC
    // (dup2 onto itself would keep the flag, hence the explicit F_SETFD).
    unsafe {
        c.pre_exec(move || {
            if nix::libc::dup2(raw, 3) < 0 || nix::libc::fcntl(3, nix::libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // 0,1,2,3 and the one ls opens
    assert_eq!(stdout(&out), "passed through fd 3\nexample.org\n5\n");
}

#[test]
#[ignore = "needs root"]
fn landlock_from_annotations_applies_to_init_and_exec() {
    require_root();
    if beam::runtime::landlock::abi_version().is_err() {
        eprintln!("skipped: no landlock in this kernel");
        return;
    }
    let cx = Ctx::new("landlock");
    let script = "cat /etc/passwd >/dev/null && echo READ; (echo x > /etc/x) 2>/dev/null || echo NOWRITE; echo y > /tmp/y && echo TMPOK; ls /root >/dev/null 2>&1 || echo NOROOT";
    let mut b = cx.bundle("b", &["sh", "-c", &format!("{script}; sleep 1000")]);
    b.config["annotations"] = json!({
        "run.beam.landlock.ro": "/bin:/etc",
        "run.beam.landlock.rw": "/tmp:/dev:/proc",
    });
    b.save();
    let abi = beam::runtime::landlock::abi_version().unwrap();
    if abi < 3 {
        // e.g. Linux 6.1 (the v2 VM): truncate(2) can't be blocked, so a strict policy is refused clearly…
        let e = cx.fails(&["create", "--bundle", b.path(), &cx.id("strict")]);
        assert!(e.contains("best_effort"), "{e}");
        // …and best effort enforces what the kernel can.
        b.config["annotations"]["run.beam.landlock.best_effort"] = json!("true");
        b.save();
    }
    let id = cx.id("c");
    let log = cx.tmp.path().join("init.out");
    let mut c = cx.cmd(&["run", "-d", "--bundle", b.path(), &id]);
    c.stdout(std::fs::File::create(&log).unwrap());
    assert!(c.status().unwrap().success());
    await_cond(Duration::from_secs(10), || std::fs::read_to_string(&log).unwrap().contains("NOROOT"), "the init's output");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "READ\nNOWRITE\nTMPOK\nNOROOT\n");
    // exec'd processes get the same ruleset
    let out = cx.ok(&["exec", &id, "sh", "-c", script]);
    assert_eq!(out, "READ\nNOWRITE\nTMPOK\nNOROOT\n");
    // a bad annotation is a clear error at create
    let mut bad = cx.bundle("bad", &["true"]);
    bad.config["annotations"] = json!({"run.beam.landlock.rw": "relative/path"});
    bad.save();
    let e = cx.fails(&["create", "--bundle", bad.path(), &cx.id("bad")]);
    assert!(e.contains("run.beam.landlock.rw"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn force_delete_removes_a_half_created_container() {
    require_root();
    let cx = Ctx::new("half");
    let id = cx.id("c");
    // What a `create` killed with SIGKILL before writing state.json leaves: its state dir and cgroup.
    std::fs::create_dir_all(cx.root.join(&id)).unwrap();
    let cg = beam::runtime::cgroups::Cgroup::new(None, &id).unwrap();
    cg.create().unwrap();
    assert!(!cgroup_dirs(&format!("/beam/{id}")).is_empty());
    let e = cx.fails(&["delete", &id]);
    assert!(e.contains("does not exist"), "{e}");
    cx.ok(&["delete", "--force", &id]);
    assert!(!cx.root.join(&id).exists());
    assert!(cgroup_dirs(&format!("/beam/{id}")).is_empty(), "cgroup left: {:?}", cgroup_dirs(&format!("/beam/{id}")));
}

/// A config without a mount namespace shares the caller's (the spec: an absent type is inherited). The
/// container must still get its rootfs as `/` (chroot, not pivot_root: that would replace `/` for every
/// process in the namespace), its mounts land under the rootfs only, `/` keeps its propagation, and
/// delete takes every one of them away. Run in a throwaway mount namespace, whose table must be the
/// same after delete as before, and the host's must not change at all.
#[test]
#[ignore = "needs root"]
fn no_mount_namespace_leaves_the_callers_mount_table_as_it_was() {
    require_root();
    let cx = Ctx::new("nomntns");
    let mut b = cx.bundle("b", &["sh", "-c", "readlink /proc/self/ns/mnt > /ns; ls / > /ls"]);
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "mount");
    b.save();
    let id = cx.id("c");
    let t = cx.tmp.path();
    let script = format!(
        r#"set -e
cat /proc/self/mountinfo > {t}/before
readlink /proc/self/ns/mnt > {t}/ns
{oci} --root {root} create --bundle {b} {id}
{oci} --root {root} start {id}
i=0; until {oci} --root {root} state {id} | grep -q '"stopped"'; do i=$((i+1)); [ $i -lt 1000 ] || exit 9; sleep 0.01; done
cat /proc/self/mountinfo > {t}/during
{oci} --root {root} delete {id}
cat /proc/self/mountinfo > {t}/after
"#,
        t = t.display(),
        oci = beam_oci(),
        root = cx.root.display(),
        b = b.path(),
    );
    let host_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = std::process::Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
    let host_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(host_before, host_after, "the host's mount table changed");
    let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap();
    // The container ran in the caller's mount namespace, with its rootfs as `/`.
    assert_eq!(std::fs::read_to_string(b.rootfs().join("ns")).unwrap(), read("ns"));
    let ls = std::fs::read_to_string(b.rootfs().join("ls")).unwrap();
    assert!(ls.lines().any(|l| l == "bin") && ls.lines().any(|l| l == "ns"), "{ls}");
    // While it existed its mounts were there, under its rootfs only, and `/` was untouched.
    let rootfs = b.rootfs().canonicalize().unwrap();
    let (before, during) = (read("before"), read("during"));
    let new: Vec<&str> = during.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
    assert!(new.iter().any(|l| l.split(' ').nth(4) == Some(&format!("{}/proc", rootfs.display()))), "{new:?}");
    for l in &new {
        let point = l.split(' ').nth(4).unwrap();
        assert!(point.starts_with(rootfs.to_str().unwrap()), "mount outside the rootfs: {l}");
    }
    let root_line = |t: &str| t.lines().find(|l| l.split(' ').nth(4) == Some("/")).map(str::to_string);
    assert_eq!(root_line(&before), root_line(&during), "`/` changed");
    // After delete the namespace's table is what it was.
    assert_eq!(before, read("after"), "mounts left in the caller's namespace after delete");
    assert!(!cx.root.join(&id).exists());
}

/// What would change the caller's own namespace when a type is missing is refused before anything
/// is made: a hostname without a uts namespace, a net sysctl without a network namespace, a sysctl
/// that no namespace covers.
#[test]
#[ignore = "needs root"]
fn settings_for_a_namespace_the_container_lacks_are_refused() {
    require_root();
    let cx = Ctx::new("nons");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let cases: [(&str, &str, serde_json::Value, &str); 3] = [
        ("uts", "hostname", json!("evil"), "uts"),
        ("network", "sysctl", json!({"net.ipv4.ip_forward": "1"}), "network"),
        ("", "sysctl", json!({"vm.overcommit_memory": "1"}), "not namespaced"),
    ];
    for (i, (drop, field, value, want)) in cases.into_iter().enumerate() {
        let mut b = cx.bundle(&format!("b{i}"), &["true"]);
        b.config["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != drop);
        if field == "hostname" {
            b.config["hostname"] = value;
        } else {
            b.config["linux"]["sysctl"] = value;
        }
        b.save();
        let id = cx.id(&format!("c{i}"));
        let e = cx.fails(&["create", "--bundle", b.path(), &id]);
        assert!(e.contains(want), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "not one line: {e}");
        assert!(!cx.root.join(&id).exists(), "state dir left for {id}");
        assert!(cgroup_dirs(&format!("/beam/{id}")).is_empty(), "cgroup left for {id}");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name);
}
