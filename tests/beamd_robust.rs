//! beamd under load and in the corners: many sandboxes at once, a crashed daemon, every exit reason,
//! large and interleaved exec output, the security a process actually sees inside, stdin/tty/signals.
//! Every test runs its own beamd (tests/common_beamd) and needs root.

mod common_beamd;
mod common_root;
use common_beamd::*;
use common_root::require_root;

use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use beam::api::frames;

/// The process's start time (field 22 of /proc/<pid>/stat), or None when there is no such process.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True while `pid` is still the process that had start time `start` (a zombie counts: nobody reaped it).
fn same_process(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// A beam-init process at `pid` (cmdline names /dev/.beam-init).
fn is_beam_init(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(".beam-init"))
        .unwrap_or(false)
}

/// Entries of a directory (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(d) => d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    }
}

/// The sandbox as the list shows it (the list is not activity, unlike GET /v1/sandboxes/{id}).
fn listed(b: &Beamd, id: &str) -> Value {
    let r = b.get("/v1/sandboxes");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {}", r.text()))
}

fn wait(b: &Beamd, id: &str, secs: f64) -> Value {
    let r = b.request("POST", &format!("/v1/sandboxes/{id}/wait?timeout_seconds={secs}"), None);
    assert_eq!(r.status, 200, "wait {id}: {}", r.text());
    r.json()
}

fn stop(b: &Beamd, id: &str) -> Value {
    let r = b.post(&format!("/v1/sandboxes/{id}/stop"), &json!({}));
    assert_eq!(r.status, 200, "stop {id}: {}\n{}", r.text(), b.log());
    r.json()
}

fn delete(b: &Beamd, id: &str) {
    let r = b.request("DELETE", &format!("/v1/sandboxes/{id}"), None);
    assert_eq!(r.status, 204, "DELETE {id}: {}\n{}", r.text(), b.log());
}

/// Nothing of these sandboxes is left on the host: mounts, cgroups, init processes, state dirs.
fn assert_no_leaks(b: &Beamd, inits: &[(String, i32, u64)]) {
    let mounts = b.mounts();
    assert!(mounts.is_empty(), "mounts left under {}: {mounts:#?}\n{}", b.tmp.path().display(), b.log());
    for (id, _, _) in inits {
        let cg = cgroups_of(id);
        assert!(cg.is_empty(), "cgroups left for {id}: {cg:?}\n{}", b.log());
    }
    for (id, pid, start) in inits {
        b.await_until(&format!("init of {id} (pid {pid}) to be gone"), Duration::from_secs(10), || {
            !same_process(*pid, *start)
        });
    }
    let sb = entries(&b.root.join("sandboxes"));
    assert!(sb.is_empty(), "<root>/sandboxes not empty: {sb:?}");
    let rt = entries(&b.run_dir.join("runtime"));
    assert!(rt.is_empty(), "<run_dir>/runtime not empty: {rt:?}");
}

fn init_of(created: &Value) -> (String, i32, u64) {
    let id = created["id"].as_str().unwrap().to_string();
    let pid = created["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {created}")) as i32;
    let start = start_time(pid).unwrap_or_else(|| panic!("init pid {pid} of {id} not found on the host"));
    assert!(is_beam_init(pid), "pid {pid} of {id} is not a beam-init");
    (id, pid, start)
}

#[test]
#[ignore = "needs root"]
fn twenty_sandboxes_in_parallel() {
    require_root();
    let b = Beamd::start("twenty");
    // Build the image once up front so the 20 creates race on sandboxes, not on the recipe build.
    let r = b.post("/v1/images/pull", &json!({"image": "busybox"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"done\""), "{}", r.text());

    let inits: Vec<(String, i32, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let b = &b;
                s.spawn(move || {
                    let c = b.create(&json!({"image": "busybox", "tags": {"i": i.to_string()}}));
                    let init = init_of(&c);
                    let id = &init.0;
                    let o = b.exec(id, &json!({"cmd": ["echo", i.to_string()]}));
                    assert_eq!((o.code(), o.out(), o.err()), (0, format!("{i}\n"), String::new()), "{o:?}");
                    let st = stop(b, id);
                    assert_eq!(st["state"], "exited", "{st}");
                    assert_eq!(st["reason"], "stopped", "{st}");
                    delete(b, id);
                    init
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker panicked")).collect()
    });
    let mut ids: Vec<_> = inits.iter().map(|i| i.0.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "ids not unique: {ids:?}");
    assert!(b.ids().is_empty(), "still listed: {:?}", b.ids());
    assert_no_leaks(&b, &inits);
}

#[test]
#[ignore = "needs root"]
fn beamd_kill9_and_restart() {
    require_root();
    let mut b = Beamd::start("kill9");
    let a = b.create(&json!({"image": "busybox"}));
    let bb = b.create(&json!({"image": "busybox", "entrypoint": ["sh", "-c", "sleep 2; exit 7"]}));
    let d = b.create(&json!({"image": "busybox"}));
    let a_init = init_of(&a);
    let b_init = init_of(&bb);
    let d_init = init_of(&d);
    let (a_id, b_id) = (a_init.0.clone(), b_init.0.clone());

    b.kill9();
    // D loses its record and its runtime state while beamd is down (a wiped run dir, say): the next beamd
    // still finds its processes (by its cgroup) and removes them with the rest.
    std::fs::remove_file(b.root.join("sandboxes").join(&d_init.0).join("sandbox.json")).unwrap();
    std::fs::remove_dir_all(b.run_dir.join("runtime").join(&d_init.0)).unwrap();
    b.await_until("B's init to exit while beamd is down", Duration::from_secs(15), || !same_process(b_init.1, b_init.2));
    assert!(same_process(a_init.1, a_init.2), "A's init died with beamd");
    b.spawn();

    let la = listed(&b, &a_id);
    assert_eq!(la["state"], "running", "A after restart: {la}\n{}", b.log());
    assert_eq!(la["pid"], a_init.1, "A's pid changed: {la}");
    let o = b.sh(&a_id, "echo alive; echo $$");
    assert_eq!(o.code(), 0, "{o:?}\n{}", b.log());
    assert!(o.out().starts_with("alive\n"), "{o:?}");

    b.await_until("D's init to be gone after the restart", Duration::from_secs(10), || !same_process(d_init.1, d_init.2));
    assert!(cgroups_of(&d_init.0).is_empty(), "{:?}", cgroups_of(&d_init.0));
    assert_eq!(b.get(&format!("/v1/sandboxes/{}", d_init.0)).status, 404);

    let lb = listed(&b, &b_id);
    assert_eq!(lb["state"], "exited", "B after restart: {lb}\n{}", b.log());
    assert_eq!(lb["reason"], "exited", "B after restart: {lb}\n{}", b.log());
    assert_eq!(lb["exit_code"], 7, "B after restart: {lb}\n{}", b.log());
    assert!(lb["pid"].is_null(), "{lb}");

    let c = b.create(&json!({"image": "busybox"}));
    let c_init = init_of(&c);
    let o = b.exec(&c_init.0, &json!({"cmd": ["echo", "c"]}));
    assert_eq!((o.code(), o.out()), (0, "c\n".to_string()), "{o:?}");
    // The new sandbox must not share A's uid range (the restarted beamd must know A's range is taken).
    assert_ne!(a["security"]["uid_base"], c["security"]["uid_base"], "A: {a}\nC: {c}");

    let st = stop(&b, &a_id);
    assert_eq!((st["state"].as_str(), st["reason"].as_str()), (Some("exited"), Some("stopped")), "{st}");
    b.await_until("A's init to be gone after stop", Duration::from_secs(10), || !same_process(a_init.1, a_init.2));
    for id in [&a_id, &b_id, &c_init.0] {
        delete(&b, id);
    }
    assert_no_leaks(&b, &[a_init, b_init, c_init, d_init]);
}

#[test]
#[ignore = "needs root"]
fn exit_reasons() {
    require_root();
    let b = Beamd::start("reasons");
    let r = b.post("/v1/images/pull", &json!({"image": "busybox"}));
    assert!(r.text().contains("\"done\""), "{}", r.text());

    std::thread::scope(|s| {
        let b = &b;
        // (a) OOM
        s.spawn(move || {
            let c = b.create(&json!({"image": "busybox", "memory": "32Mi", "entrypoint": ["tail", "/dev/zero"]}));
            let id = c["id"].as_str().unwrap();
            let w = wait(b, id, 60.0);
            assert_eq!(w["state"], "exited", "OOM: {w}\n{}", b.log());
            assert_eq!(w["reason"], "oom-killed", "OOM: {w}\n{}", b.log());
            assert_eq!(w["exit_code"], 137, "OOM: {w}");
        });
        // (a') an exec OOM-killed in a sandbox that keeps running
        s.spawn(move || {
            let c = b.create(&json!({"image": "busybox", "memory": "32Mi"}));
            let id = c["id"].as_str().unwrap();
            let o = b.exec(id, &json!({"cmd": ["tail", "/dev/zero"]}));
            assert_eq!(o.exit["reason"], "oom-killed", "exec OOM: {o:?}\n{}", b.log());
            assert_eq!(o.code(), 137, "{o:?}");
            assert_eq!(listed(b, id)["state"], "running");
        });
        // (b) timeout
        s.spawn(move || {
            let t0 = Instant::now();
            let c = b.create(&json!({"image": "busybox", "timeout_seconds": 1}));
            let id = c["id"].as_str().unwrap();
            let w = wait(b, id, 5.0);
            assert_eq!(w["state"], "exited", "timeout: not exited {:?} after create: {w}\n{}", t0.elapsed(), b.log());
            assert_eq!(w["reason"], "timeout", "timeout: {w}");
        });
        // (c) idle
        s.spawn(move || {
            let c = b.create(&json!({"image": "busybox", "keep_warm_seconds": 1}));
            let id = c["id"].as_str().unwrap();
            let w = wait(b, id, 6.0);
            assert_eq!(w["state"], "exited", "idle: {w}\n{}", b.log());
            assert_eq!(w["reason"], "idle", "idle: {w}");
        });
        // (d) a running exec keeps a keep_warm 1 sandbox warm
        s.spawn(move || {
            let c = b.create(&json!({"image": "busybox", "keep_warm_seconds": 1}));
            let id = c["id"].as_str().unwrap();
            let o = b.exec(id, &json!({"cmd": ["sleep", "3"]}));
            assert_eq!(o.code(), 0, "exec during keep-warm: {o:?}\n{}", b.log());
            assert_eq!(o.exit["reason"], "exited", "{o:?}");
            let l = listed(b, id);
            assert_eq!(l["state"], "running", "stopped during a running exec: {l}");
            let w = wait(b, id, 6.0);
            assert_eq!(w["state"], "exited", "idle after exec: {w}");
            assert_eq!(w["reason"], "idle", "idle after exec: {w}");
        });
        // (e) PATCH keep_warm -1
        s.spawn(move || {
            let c = b.create(&json!({"image": "busybox", "keep_warm_seconds": 1}));
            let id = c["id"].as_str().unwrap();
            let r = b.request("PATCH", &format!("/v1/sandboxes/{id}"), Some(&json!({"keep_warm_seconds": -1})));
            assert_eq!(r.status, 200, "PATCH: {}", r.text());
            assert_eq!(r.json()["keep_warm_seconds"], -1, "{}", r.text());
            // A bounded wait is the point here: it must still run after 3 s.
            let w = wait(b, id, 3.0);
            assert_eq!(w["state"], "running", "keep_warm -1 sandbox stopped: {w}");
            assert!(w["expires_at"].is_null(), "{w}");
        });
        // (f) an entrypoint that does not exist
        s.spawn(move || {
            let r = b.post("/v1/sandboxes", &json!({"image": "busybox", "entrypoint": ["nosuchcmd"]}));
            assert_eq!(r.status, 201, "create with a missing entrypoint: {}", r.text());
            let id = r.json()["id"].as_str().unwrap().to_string();
            let w = wait(b, &id, 10.0);
            assert_eq!(w["state"], "exited", "{w}");
            assert_eq!(w["reason"], "exited", "{w}");
            assert_eq!(w["exit_code"], 127, "{w}");
            let err = w["error"].as_str().unwrap_or_else(|| panic!("no error: {w}"));
            assert!(err.contains("nosuchcmd"), "{w}");
        });
    });
}

#[test]
#[ignore = "needs root"]
fn exec_streams_100mb() {
    require_root();
    let b = Beamd::start("bigexec");
    let c = b.create(&json!({"image": "busybox"}));
    let id = c["id"].as_str().unwrap();

    const N: usize = 104_857_600;
    let o = b.sh(id, "head -c 104857600 /dev/zero | tr \"\\0\" x; echo done >&2");
    assert_eq!(o.code(), 0, "exit {:?} stderr {}", o.exit, o.err());
    assert_eq!(o.err(), "done\n");
    assert_eq!(o.stdout.len(), N, "stdout length");
    if let Some(p) = o.stdout.iter().position(|&c| c != b'x') {
        panic!("byte {p} of stdout is {:#x}, not 'x'", o.stdout[p]);
    }
    drop(o);

    let o = b.sh(id, "for i in $(seq 1000); do echo o$i; echo e$i >&2; done");
    assert_eq!(o.code(), 0, "{:?}", o.exit);
    let want_out: String = (1..=1000).map(|i| format!("o{i}\n")).collect();
    let want_err: String = (1..=1000).map(|i| format!("e{i}\n")).collect();
    assert_eq!(o.out(), want_out, "stdout");
    assert_eq!(o.err(), want_err, "stderr");
}

#[test]
#[ignore = "needs root"]
fn security_from_inside() {
    require_root();
    let b = Beamd::start("security");
    let landlock_abi = b.get("/v1/version").json()["landlock_abi"].as_u64().expect("landlock_abi");
    let c = b.create(&json!({"image": "busybox"}));
    let id = c["id"].as_str().unwrap();
    let uid_base = c["security"]["uid_base"].as_u64().unwrap_or_else(|| panic!("no uid_base: {c}"));
    assert!(uid_base >= 268_435_456, "uid_base {uid_base}");

    let o = b.sh(id, "cat /proc/self/uid_map");
    assert_eq!(o.code(), 0, "{o:?}");
    let first: Vec<String> = o.out().lines().next().unwrap_or("").split_whitespace().map(str::to_string).collect();
    assert_eq!(first, vec!["0".to_string(), uid_base.to_string(), "65536".to_string()], "uid_map: {}", o.out());

    let o = b.sh(id, "cat /proc/self/status");
    let status = o.out();
    // podman's 11 capabilities (Docker's 14 without NET_RAW, MKNOD, AUDIT_WRITE).
    for want in ["CapEff:\t00000000800405fb", "CapBnd:\t00000000800405fb", "Seccomp:\t2", "NoNewPrivs:\t1"] {
        assert!(status.lines().any(|l| l == want), "no {want:?} in /proc/self/status:\n{status}");
    }

    if landlock_abi > 0 {
        // The default landlock policy leaves the sandbox's own root filesystem writable (tests/beamd_security.rs
        // has the rest: beam's init stays untouchable, the read-only-system preset).
        assert_eq!(c["security"]["landlock"]["preset"], "writable-root", "{c}");
        let o = b.sh(id, "touch /usr/beam-x /tmp/ok && ls /usr/beam-x /tmp/ok");
        assert_eq!((o.code(), o.out()), (0, "/tmp/ok\n/usr/beam-x\n".to_string()), "{o:?}");
    } else {
        eprintln!("landlock_abi 0: landlock checks skipped");
    }

    let pid = c["pid"].as_i64().expect("pid");
    let host_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
    let uid_line = host_status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    let uids: Vec<u64> = uid_line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
    assert_eq!(uids, vec![uid_base; 4], "init's host uids: {uid_line}");

    let o = b.exec(id, &json!({"cmd": ["id", "-u"]}));
    assert_eq!((o.code(), o.out()), (0, "0\n".to_string()), "{o:?}");
    let o = b.exec(id, &json!({"cmd": ["id", "-u"], "user": "65534"}));
    assert_eq!((o.code(), o.out()), (0, "65534\n".to_string()), "{o:?}");

    let c2 = b.create(&json!({"image": "busybox", "insecure_no_landlock": true}));
    let id2 = c2["id"].as_str().unwrap();
    assert!(c2["security"]["landlock"].is_null(), "{c2}");
    let o = b.sh(id2, "touch /usr/x && ls /usr/x");
    assert_eq!((o.code(), o.out()), (0, "/usr/x\n".to_string()), "{o:?}");
}

/// An upgraded exec read frame by frame (stdout kept across reads, the exit frame never dropped).
struct Conn {
    up: Upgraded,
    dec: frames::Decoder,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<Value>,
}

impl Conn {
    fn new(up: Upgraded) -> Conn {
        Conn { up, dec: frames::Decoder::new(), stdout: vec![], stderr: vec![], exit: None }
    }
    fn send(&mut self, stream: u8, data: &[u8]) {
        self.up.send(stream, data);
    }
    /// Read one batch of frames; false at EOF.
    fn pump(&mut self) -> bool {
        let mut buf = vec![0u8; 65536];
        let n = self.up.stream.read(&mut buf).expect("read upgraded stream");
        if n == 0 {
            return false;
        }
        self.dec.push(&buf[..n]);
        while let Some((s, d)) = self.dec.next_frame().expect("valid frames") {
            match s {
                frames::STDOUT => self.stdout.extend(d),
                frames::STDERR => self.stderr.extend(d),
                frames::EXIT => {
                    assert!(self.exit.is_none(), "two exit frames");
                    self.exit = Some(serde_json::from_slice(&d).expect("exit JSON"));
                }
                s => panic!("unexpected stream {s} from the server"),
            }
        }
        true
    }
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn read_until(&mut self, needle: &str) -> String {
        while !self.out().contains(needle) {
            assert!(self.exit.is_none(), "exited before {needle:?}: {:?} {}", self.exit, self.out());
            assert!(self.pump(), "closed before {needle:?}: {}", self.out());
        }
        self.out()
    }
    fn finish(&mut self) -> Value {
        while self.exit.is_none() {
            assert!(self.pump(), "closed before the exit frame: {}", self.out());
        }
        // The exit frame is the last one: the server shuts its side down after it.
        while self.pump() {}
        assert_eq!(self.dec.pending(), 0, "trailing partial frame");
        self.exit.clone().unwrap()
    }
}

#[test]
#[ignore = "needs root"]
fn exec_stdin_and_tty() {
    require_root();
    let b = Beamd::start("stdin");
    let c = b.create(&json!({"image": "busybox"}));
    let id = c["id"].as_str().unwrap();

    // stdin through a pipe; an empty frame closes it.
    let mut x = Conn::new(b.exec_upgraded(id, &json!({"cmd": ["cat"], "stdin": true})));
    x.send(frames::STDIN, b"hello\n");
    x.send(frames::STDIN, b"");
    let e = x.finish();
    assert_eq!(x.out(), "hello\n");
    assert!(x.stderr.is_empty(), "{:?}", String::from_utf8_lossy(&x.stderr));
    assert_eq!(e["exit_code"], 0, "{e}");

    // A tty, resized while it runs.
    let mut x = Conn::new(b.exec_upgraded(id, &json!({"cmd": ["sh"], "tty": true, "stdin": true, "rows": 24, "cols": 80})));
    x.send(frames::STDIN, b"tty; stty size\n");
    let seen = x.read_until("24 80");
    assert!(seen.contains("/dev/") && !seen.contains("not a tty"), "{seen}");
    x.send(frames::RESIZE, br#"{"rows":40,"cols":100}"#);
    x.send(frames::STDIN, b"stty size; exit 3\n");
    x.read_until("40 100");
    let e = x.finish();
    assert_eq!(e["exit_code"], 3, "{e}");
    assert!(x.stderr.is_empty(), "stderr frames with a tty");

    // A signal frame.
    let mut x = Conn::new(b.exec_upgraded(id, &json!({"cmd": ["sleep", "100"]})));
    x.send(frames::SIGNAL, br#"{"signal":"KILL"}"#);
    let t0 = Instant::now();
    let e = x.finish();
    assert!(t0.elapsed() < Duration::from_secs(10), "signal frame took {:?}", t0.elapsed());
    assert_eq!(e["signal"], 9, "{e}");
    assert_eq!(e["exit_code"], 137, "{e}");
    assert_eq!(e["reason"], "killed", "{e}");

    // An exec timeout.
    let t0 = Instant::now();
    let o = b.exec(id, &json!({"cmd": ["sleep", "30"], "timeout_seconds": 1}));
    let took = t0.elapsed();
    assert_eq!(o.exit["reason"], "timeout", "{o:?}");
    assert_eq!(o.exit["signal"], 9, "{o:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "exec timeout 1 s took {took:?}");

    // The processes route sees an exec, and its signal route ends it.
    let mut x = Conn::new(b.exec_upgraded(id, &json!({"cmd": ["sleep", "30"]})));
    let pid = x.up.pid;
    let r = b.get(&format!("/v1/sandboxes/{id}/processes"));
    assert_eq!(r.status, 200, "{}", r.text());
    let procs = r.json();
    let list = procs["processes"].as_array().expect("processes");
    assert!(list.iter().any(|p| p["pid"] == 1), "no pid 1: {procs}");
    let p = list.iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("exec pid {pid} not listed: {procs}"));
    assert!(p["cmd"].as_str().unwrap_or("").contains("sleep"), "{p}");
    let r = b.post(&format!("/v1/sandboxes/{id}/processes/{pid}/signal"), &json!({"signal": "TERM"}));
    assert_eq!(r.status, 204, "{}", r.text());
    let e = x.finish();
    assert_eq!(e["signal"], 15, "{e}");
    assert_eq!(e["exit_code"], 143, "{e}");
    assert_eq!(e["reason"], "killed", "{e}");
}
