//! Annotation parsing, ABI handling on every ABI (pure), and real rulesets in forked children.
//!
//! The test binary is multi-threaded: plans, paths and C strings are prepared before `fork`, and
//! the child only makes raw syscalls, reporting failures on stderr (stack buffers) and through
//! its exit code.

use super::*;
use crate::runtime::sys::{self, StackBuf};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use std::fmt::Write as _;
use std::net::TcpListener;

// ---- Annotations. ------------------------------------------------------------------------------

fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn no_landlock_key_means_no_policy() {
    assert_eq!(parse_annotations(&HashMap::new()).unwrap(), None);
    assert_eq!(parse_annotations(&ann(&[("org.example", "x")])).unwrap(), None);
    // best_effort alone asks for nothing, but is still validated.
    assert_eq!(parse_annotations(&ann(&[(ANNOTATION_BEST_EFFORT, "true")])).unwrap(), None);
    assert!(parse_annotations(&ann(&[(ANNOTATION_BEST_EFFORT, "yes")])).is_err());
}

#[test]
fn annotations_parse_paths_ports_and_best_effort() {
    let p = parse_annotations(&ann(&[
        (ANNOTATION_RO, "/usr:/bin: /etc :"),
        (ANNOTATION_RW, "/tmp"),
        (ANNOTATION_TCP_BIND, ""),
        (ANNOTATION_TCP_CONNECT, "443, 80,443"),
        (ANNOTATION_BEST_EFFORT, "TRUE"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(p.read_only, vec![PathBuf::from("/usr"), PathBuf::from("/bin"), PathBuf::from("/etc")]);
    assert_eq!(p.read_write, vec![PathBuf::from("/tmp")]);
    assert_eq!(p.tcp_bind, Some(vec![]));
    assert_eq!(p.tcp_connect, Some(vec![80, 443]));
    assert!(p.best_effort);

    let p = parse_annotations(&ann(&[(ANNOTATION_TCP_CONNECT, "53")])).unwrap().unwrap();
    assert!(p.read_only.is_empty() && p.read_write.is_empty() && p.tcp_bind.is_none() && !p.best_effort);
}

#[test]
fn annotation_errors_name_the_key_and_the_fix() {
    let err = |pairs: &[(&str, &str)]| parse_annotations(&ann(pairs)).unwrap_err().to_string();
    let e = err(&[(ANNOTATION_RO, "/usr:usr/lib")]);
    assert!(e.contains(ANNOTATION_RO) && e.contains("\"usr/lib\"") && e.contains("\"/usr/lib\""), "{e}");
    let e = err(&[(ANNOTATION_RW, " : ")]);
    assert!(e.contains(ANNOTATION_RW) && e.contains("absolute paths separated by ':'"), "{e}");
    let e = err(&[(ANNOTATION_TCP_BIND, "80,http")]);
    assert!(e.contains(ANNOTATION_TCP_BIND) && e.contains("\"http\"") && e.contains("0-65535"), "{e}");
    let e = err(&[(ANNOTATION_TCP_CONNECT, "70000")]);
    assert!(e.contains(ANNOTATION_TCP_CONNECT) && e.contains("\"70000\""), "{e}");
    let e = err(&[(ANNOTATION_RO, "/usr"), (ANNOTATION_BEST_EFFORT, "1")]);
    assert!(e.contains(ANNOTATION_BEST_EFFORT) && e.contains("\"true\" or \"false\""), "{e}");
    let e = err(&[("run.beam.landlock.readonly", "/usr")]);
    assert!(e.contains("run.beam.landlock.readonly") && e.contains(ANNOTATION_RO), "{e}");
    let e = err(&[(ANNOTATION_RO, "/us\0r")]);
    assert!(e.contains("NUL"), "{e}");
}

// ---- ABI handling (no kernel involved). ---------------------------------------------------------

fn fs_policy() -> LandlockPolicy {
    LandlockPolicy { read_only: vec!["/usr".into()], read_write: vec!["/tmp".into()], ..Default::default() }
}

#[test]
fn handled_masks_follow_the_abi() {
    let mut p = fs_policy();
    p.tcp_bind = Some(vec![8080]);
    p.tcp_connect = Some(vec![]);
    let plan = LandlockPlan::for_abi(&p, Ok(4)).unwrap();
    assert_eq!(plan.attr.handled_access_fs, 0x7fff);
    assert_eq!(plan.attr.handled_access_net, NET_BIND_TCP | NET_CONNECT_TCP);
    assert_eq!(plan.attr.scoped, 0);
    assert_eq!(plan.attr_size, 16);
    assert_eq!(plan.paths[0].access, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR);
    assert_eq!(plan.paths[1].access, 0x7fff);
    assert_eq!(plan.ports.len(), 1);
    assert_eq!((plan.ports[0].port, plan.ports[0].allowed_access), (8080, NET_BIND_TCP));
    assert!(plan.dropped().is_empty());

    for (abi, fs) in [(3, 0x7fff), (5, 0xffff), (6, 0xffff), (7, 0xffff), (99, 0xffff)] {
        let plan = LandlockPlan::for_abi(&fs_policy(), Ok(abi)).unwrap();
        assert_eq!(plan.attr.handled_access_fs, fs, "abi {abi}");
        assert_eq!(plan.attr.handled_access_net, 0, "abi {abi}");
        assert_eq!(plan.paths[1].access, fs, "abi {abi}");
    }
    assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
    assert_eq!(std::mem::size_of::<RulesetAttr>(), 24);
    assert_eq!(std::mem::size_of::<NetPortAttr>(), 16);

    // Only TCP asked: the filesystem is not handled at all.
    let net = LandlockPolicy { tcp_connect: Some(vec![443]), ..Default::default() };
    let plan = LandlockPlan::for_abi(&net, Ok(7)).unwrap();
    assert_eq!((plan.attr.handled_access_fs, plan.attr.handled_access_net), (0, NET_CONNECT_TCP));
    assert!(plan.paths.is_empty());
    assert!(LandlockPlan::for_abi(&LandlockPolicy::default(), Ok(7)).unwrap().is_noop());
}

#[test]
fn old_kernels_fail_unless_best_effort_then_report_what_was_dropped() {
    let mut p = fs_policy();
    p.tcp_bind = Some(vec![]);
    let e = LandlockPlan::for_abi(&p, Ok(3)).unwrap_err().to_string();
    assert!(e.contains("TCP") && e.contains("ABI 4") && e.contains("has ABI 3") && e.contains("best_effort"), "{e}");
    let e = LandlockPlan::for_abi(&fs_policy(), Ok(2)).unwrap_err().to_string();
    assert!(e.contains("truncate") && e.contains("ABI 3"), "{e}");
    let e = LandlockPlan::for_abi(&fs_policy(), Err(Errno::EOPNOTSUPP)).unwrap_err().to_string();
    assert!(e.contains("not available") && e.contains("best_effort"), "{e}");

    p.best_effort = true;
    let plan = LandlockPlan::for_abi(&p, Ok(3)).unwrap();
    assert_eq!((plan.attr.handled_access_fs, plan.attr.handled_access_net), (0x7fff, 0));
    assert!(plan.ports.is_empty());
    assert_eq!(plan.dropped().len(), 1, "{:?}", plan.dropped());
    assert!(plan.dropped()[0].contains("TCP"));

    let plan = LandlockPlan::for_abi(&p, Ok(1)).unwrap();
    assert_eq!(plan.attr.handled_access_fs, 0x1fff);
    assert_eq!(plan.attr_size, 8);
    assert_eq!(plan.dropped().len(), 2, "{:?}", plan.dropped());

    let plan = LandlockPlan::for_abi(&p, Err(Errno::ENOSYS)).unwrap();
    assert!(plan.is_noop() && plan.paths.is_empty());
    assert!(plan.dropped()[0].contains("whole policy"), "{:?}", plan.dropped());
    assert_eq!(plan.apply(), Ok(()));
}

#[test]
fn relative_policy_paths_are_refused_by_the_plan() {
    let p = LandlockPolicy { read_write: vec!["tmp".into()], ..Default::default() };
    let e = LandlockPlan::for_abi(&p, Ok(7)).unwrap_err().to_string();
    assert!(e.contains("LandlockPolicy.read_write") && e.contains("\"/tmp\""), "{e}");
}

#[test]
fn apply_error_formats_step_path_and_errno() {
    let path = c"/usr";
    let e = ApplyError { step: "open(O_PATH)", path: Some(path), errno: Errno::EACCES };
    assert_eq!(e.to_string(), "landlock: open(O_PATH) \"/usr\": Permission denied");
    let mut b = StackBuf::<128>::new();
    write!(b, "{e}").unwrap();
    assert_eq!(b.as_bytes(), e.to_string().as_bytes());
}

// ---- Real rulesets in forked children. ----------------------------------------------------------

/// The kernel's ABI, or None after saying why the kernel tests are skipped.
fn kernel_abi(need: u32) -> Option<u32> {
    match abi_version() {
        Ok(abi) if abi >= need => Some(abi),
        Ok(abi) => {
            eprintln!("skipping: needs landlock ABI {need}, kernel has {abi}");
            None
        }
        Err(e) => {
            eprintln!("skipping: landlock is not available on this kernel ({})", e.desc());
            None
        }
    }
}

#[test]
fn abi_detection_matches_the_lsm_list() {
    let abi = abi_version();
    if let Ok(lsm) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        assert_eq!(lsm.split(',').any(|l| l.trim() == "landlock"), abi.is_ok(), "lsm={lsm} abi={abi:?}");
    }
    match abi {
        Ok(v) => {
            assert!(v >= 1);
            let plan = LandlockPlan::new(&fs_policy()).unwrap();
            assert_eq!(plan.abi(), v);
        }
        Err(e) => assert!(matches!(e, Errno::ENOSYS | Errno::EOPNOTSUPP), "{e}"),
    }
}

/// Fork; the child runs `body` (raw syscalls on memory prepared before the fork) and exits with
/// its result, which is returned.
fn in_child(body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `body`, which makes raw syscalls on memory prepared before the
    // fork, and leaves with `_exit`, so it never touches locks held by other threads.
    match unsafe { fork() }.expect("fork") {
        // SAFETY: _exit is async-signal-safe.
        ForkResult::Child => unsafe { libc::_exit(body()) },
        ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child ended with {other:?}"),
        },
    }
}

/// Child side: no_new_privs, then the plan. Returns false after reporting on stderr.
fn enter(plan: &LandlockPlan) -> bool {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    match plan.apply() {
        Ok(()) => true,
        Err(e) => {
            let mut b = StackBuf::<512>::new();
            let _ = writeln!(b, "child: {e}");
            sys::write_stderr(&[b.as_bytes()]);
            false
        }
    }
}

/// 0 when a raw call succeeded, else errno.
fn errno_of(rc: libc::c_long) -> i32 {
    if rc < 0 { Errno::last_raw() } else { 0 }
}

/// Child side: compare an errno with the expected one, reporting a mismatch on stderr.
fn ok(what: &str, got: i32, want: i32) -> bool {
    if got != want {
        let mut b = StackBuf::<512>::new();
        let _ = writeln!(b, "child: {what}: errno {got}, expected {want}");
        sys::write_stderr(&[b.as_bytes()]);
    }
    got == want
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn open(p: &CStr, flags: libc::c_int) -> i32 {
    // SAFETY: open on a NUL-terminated path prepared before the fork.
    errno_of(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) } as libc::c_long)
}

#[test]
fn read_only_read_write_and_unlisted_paths() {
    let Some(abi) = kernel_abi(1) else { return };
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    for d in ["ro", "rw", "other"] {
        std::fs::create_dir(b.join(d)).unwrap();
    }
    for f in ["ro/f", "other/f", "single.txt", "sibling.txt", "rwfile.txt"] {
        std::fs::write(b.join(f), "hello").unwrap();
    }
    let policy = LandlockPolicy {
        read_only: vec![b.join("ro"), b.join("single.txt"), "/nonexistent/beam-landlock-test".into()],
        read_write: vec![b.join("rw"), b.join("rwfile.txt")],
        best_effort: abi < 3,
        ..Default::default()
    };
    let plan = LandlockPlan::new(&policy).unwrap();
    let c = |p: &str| cstr(&b.join(p));
    let (ro, ro_f, ro_new, ro_d) = (c("ro"), c("ro/f"), c("ro/new"), c("ro/d"));
    let (rw_new, rw_new2, rw_d, rw_d_new3) = (c("rw/new"), c("rw/new2"), c("rw/d"), c("rw/d/new3"));
    let (other_f, single, sibling, rwfile, base_c) =
        (c("other/f"), c("single.txt"), c("sibling.txt"), c("rwfile.txt"), cstr(b));
    let (eacces, rdonly, wronly) = (libc::EACCES, libc::O_RDONLY, libc::O_WRONLY);
    let code = in_child(|| {
        if !enter(&plan) {
            return 90;
        }
        // SAFETY: (the whole block) raw syscalls on C strings and stack buffers prepared before fork.
        unsafe {
            let fd = libc::open(ro_f.as_ptr(), rdonly | libc::O_CLOEXEC);
            let mut buf = [0u8; 8];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if !ok("read ro/f", if n == 5 && &buf[..5] == b"hello" { 0 } else { -1 }, 0) {
                return 1;
            }
            let checks: [(&str, i32, i32); 17] = [
                ("open ro/f for writing", open(&ro_f, wronly), eacces),
                ("create ro/new", open(&ro_new, wronly | libc::O_CREAT), eacces),
                ("unlink ro/f", errno_of(libc::unlink(ro_f.as_ptr()) as _), eacces),
                ("mkdir ro/d", errno_of(libc::mkdir(ro_d.as_ptr(), 0o755) as _), eacces),
                (
                    "truncate ro/f",
                    if abi >= 3 { errno_of(libc::truncate(ro_f.as_ptr(), 0) as _) } else { eacces },
                    eacces,
                ),
                ("list ro", open(&ro, rdonly | libc::O_DIRECTORY), 0),
                ("create rw/new", open(&rw_new, wronly | libc::O_CREAT), 0),
                ("rename rw/new", errno_of(libc::rename(rw_new.as_ptr(), rw_new2.as_ptr()) as _), 0),
                ("mkdir rw/d", errno_of(libc::mkdir(rw_d.as_ptr(), 0o755) as _), 0),
                (
                    "rename rw/new2 into rw/d (REFER)",
                    if abi >= 2 { errno_of(libc::rename(rw_new2.as_ptr(), rw_d_new3.as_ptr()) as _) } else { 0 },
                    0,
                ),
                (
                    "truncate rw/d/new3",
                    if abi >= 2 { errno_of(libc::truncate(rw_d_new3.as_ptr(), 0) as _) } else { 0 },
                    0,
                ),
                ("open other/f (unlisted)", open(&other_f, rdonly), eacces),
                ("list the unlisted base dir", open(&base_c, rdonly | libc::O_DIRECTORY), eacces),
                ("read single.txt (file rule)", open(&single, rdonly), 0),
                ("write single.txt (ro file rule)", open(&single, wronly), eacces),
                ("read sibling.txt (unlisted)", open(&sibling, rdonly), eacces),
                ("write rwfile.txt (rw file rule)", open(&rwfile, wronly | libc::O_TRUNC), 0),
            ];
            for (i, (what, got, want)) in checks.iter().enumerate() {
                if !ok(what, *got, *want) {
                    return 2 + i as i32;
                }
            }
        }
        0
    });
    assert_eq!(code, 0, "child failed check {code} (its message is on stderr)");
    assert_eq!(std::fs::read_to_string(b.join("ro/f")).unwrap(), "hello");
    assert!(b.join("rw/d").is_dir());
}

#[test]
fn exec_under_read_only_works_and_the_domain_survives_exec() {
    let Some(_) = kernel_abi(3) else { return };
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!("skipping: /bin/busybox not installed");
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let unlisted = tempfile::tempdir().unwrap();
    let policy = LandlockPolicy {
        read_only: ["/bin", "/lib", "/lib64", "/usr/bin"].iter().map(PathBuf::from).collect(),
        read_write: vec![rw.path().into()],
        ..Default::default()
    };
    let plan = LandlockPlan::new(&policy).unwrap();
    let (d, u) = (rw.path().display(), unlisted.path().display());
    let script = format!(
        "/bin/busybox cat /etc/passwd >{d}/out 2>&1 && exit 3\n\
         echo ok >{d}/f || exit 4\n\
         /bin/busybox cat {d}/f >{d}/g || exit 5\n\
         (echo x >{u}/f) 2>{d}/err2 && exit 6\n\
         exit 7"
    );
    let argv_owned = [c"busybox".to_owned(), c"sh".to_owned(), c"-c".to_owned(), CString::new(script).unwrap()];
    let argv: Vec<*const libc::c_char> =
        argv_owned.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let exe = cstr(busybox);
    let code = in_child(|| {
        if !enter(&plan) {
            return 90;
        }
        // SAFETY: execve with NUL-terminated strings and NULL-terminated arrays prepared before fork.
        unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        ok("execve /bin/busybox", Errno::last_raw(), 0);
        91
    });
    let out = std::fs::read_to_string(rw.path().join("out")).unwrap_or_default();
    assert_eq!(code, 7, "script failed (3: /etc readable, 4/5: rw dir not writable, 6: unlisted dir writable); out={out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert_eq!(std::fs::read_to_string(rw.path().join("g")).unwrap(), "ok\n");
    assert!(!unlisted.path().join("f").exists());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
        sin_zero: [0; 8],
    }
}

/// Child side: bind (`connect == false`) or connect a new TCP socket to 127.0.0.1:`port`; errno.
fn tcp(port: u16, connect: bool) -> i32 {
    let addr = loopback(port);
    // SAFETY: socket/bind/connect on a stack sockaddr_in of the length passed.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Errno::last_raw();
        }
        let (a, len) = (&addr as *const libc::sockaddr_in as *const libc::sockaddr, size_of_val(&addr) as u32);
        let rc = if connect { libc::connect(s, a, len) } else { libc::bind(s, a, len) };
        let e = errno_of(rc as _);
        libc::close(s);
        e
    }
}

#[test]
fn tcp_bind_and_connect_policies() {
    let Some(_) = kernel_abi(4) else { return };
    let (port, other) = (free_port(), free_port());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = listener.local_addr().unwrap().port();
    let passwd = c"/etc/passwd";
    let plan = |bind: Option<Vec<u16>>, connect: Option<Vec<u16>>| {
        LandlockPlan::new(&LandlockPolicy { tcp_bind: bind, tcp_connect: connect, ..Default::default() }).unwrap()
    };
    let run = |plan: &LandlockPlan, checks: &[(&str, u16, bool, &[i32])]| {
        in_child(|| {
            if !enter(plan) {
                return 90;
            }
            // The filesystem is not restricted by a TCP-only policy.
            if !ok("open /etc/passwd", open(passwd, libc::O_RDONLY), 0) {
                return 1;
            }
            for (i, (what, port, connect, want)) in checks.iter().enumerate() {
                let got = tcp(*port, *connect);
                if !want.contains(&got) {
                    ok(what, got, want[0]);
                    return 2 + i as i32;
                }
            }
            0
        })
    };
    // A race with another process taking `port` gives EADDRINUSE, which landlock checks before.
    let allowed: &[i32] = &[0, libc::EADDRINUSE];
    let denied: &[i32] = &[libc::EACCES];
    let none = plan(Some(vec![]), None);
    let code = run(&none, &[("bind with no port allowed", port, false, denied), ("connect (unrestricted)", lport, true, &[0])]);
    assert_eq!(code, 0, "check {code}");
    let one = plan(Some(vec![port]), None);
    let code = run(&one, &[("bind the allowed port", port, false, allowed), ("bind another port", other, false, denied)]);
    assert_eq!(code, 0, "check {code}");
    let no_connect = plan(None, Some(vec![]));
    let code =
        run(&no_connect, &[("connect with no port allowed", lport, true, denied), ("bind (unrestricted)", 0, false, &[0])]);
    assert_eq!(code, 0, "check {code}");
    let connect_l = plan(None, Some(vec![lport]));
    let code = run(&connect_l, &[("connect the allowed port", lport, true, &[0]), ("connect another port", other, true, denied)]);
    assert_eq!(code, 0, "check {code}");
    drop(listener);
}

#[test]
fn restrict_self_without_nnp_or_cap_sys_admin_names_the_step() {
    let Some(_) = kernel_abi(1) else { return };
    let plan = LandlockPlan::new(&LandlockPolicy { read_only: vec!["/".into()], best_effort: true, ..Default::default() })
        .unwrap();
    let code = in_child(|| {
        // SAFETY: dropping to an unprivileged uid clears every capability (no keepcaps).
        if unsafe { libc::setresuid(65534, 65534, 65534) } < 0 {
            return 1;
        }
        match plan.apply() {
            Err(e) if e.step.starts_with("landlock_restrict_self") && e.errno == Errno::EPERM && e.path.is_none() => 0,
            Err(e) => {
                let mut b = StackBuf::<512>::new();
                let _ = writeln!(b, "child: unexpected {e}");
                sys::write_stderr(&[b.as_bytes()]);
                2
            }
            Ok(()) => 3,
        }
    });
    assert_eq!(code, 0);
}

#[test]
fn annotations_to_plan_end_to_end() {
    let Some(_) = kernel_abi(4) else { return };
    let p = parse_annotations(&ann(&[(ANNOTATION_RO, "/"), (ANNOTATION_TCP_BIND, "")])).unwrap().unwrap();
    let plan = LandlockPlan::new(&p).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tmp = cstr(&dir.path().join("f"));
    let code = in_child(|| {
        if !enter(&plan) {
            return 90;
        }
        if !ok("create under ro /", open(&tmp, libc::O_WRONLY | libc::O_CREAT), libc::EACCES) {
            return 1;
        }
        if !ok("read under ro /", open(c"/etc/passwd", libc::O_RDONLY), 0) {
            return 2;
        }
        if !ok("bind", tcp(0, false), libc::EACCES) {
            return 3;
        }
        0
    });
    assert_eq!(code, 0, "check {code}");
}
