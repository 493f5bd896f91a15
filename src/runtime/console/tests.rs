use super::*;
use std::ffi::CString;
use std::time::{Duration, Instant};

/// Forks a child that sets up a pty on the host's /dev/ptmx with `sock` and execs busybox with `argv`.
/// In the child only async-signal-safe, non-allocating calls; failures are reported by exit code.
fn spawn_on_pty(sock: &OwnedFd, size: Option<(u16, u16)>, argv: &[&str]) -> libc::pid_t {
    let args: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: fork; the child below only makes async-signal-safe calls on pre-built data.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match setup_pty_at(c"/dev/ptmx", sock.as_fd(), size) {
            Ok(()) => {
                // SAFETY: argv is a NUL-terminated array of valid C strings built before fork.
                unsafe { libc::execv(c"/bin/busybox".as_ptr(), ptrs.as_ptr()) };
                121
            }
            Err(ConsoleError::Pty { .. }) => 122,
            Err(_) => 123,
        };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child died of a signal: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

/// Reads from the master until `until` appears in the output (or EIO/EOF when `until` is empty).
fn read_until(master: &OwnedFd, until: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if !until.is_empty() && String::from_utf8_lossy(&out).contains(until) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {until:?}; got {:?}",
            String::from_utf8_lossy(&out)
        );
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(Errno::EIO) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => panic!("read(master): {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn listener() -> (tempfile::TempDir, PathBuf, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.sock");
    let l = bind_console_socket(&path).unwrap();
    (dir, path, l)
}

#[test]
fn pts_name_formatting() {
    let mut b = [0u8; 32];
    let n = format_pts_name(0, &mut b);
    assert_eq!(&b[..n], b"/dev/pts/0");
    let n = format_pts_name(4_294_967_295, &mut b);
    assert_eq!(&b[..n], b"/dev/pts/4294967295");
    assert_eq!(b[19], 0);
}

#[test]
fn tty_name_and_output_arrive_over_a_listening_socket() {
    let (_dir, path, listener) = listener();
    let sock = connect_console_socket(&path).unwrap();
    let pid = spawn_on_pty(&sock, None, &["busybox", "sh", "-c", "tty; echo hello"]);
    drop(sock);
    let (stream, _) = listener.accept().unwrap();
    let (master, name) = recv_master_named(stream.as_fd()).unwrap();
    assert!(name.starts_with("/dev/pts/"), "payload {name:?}");
    let out = read_until(&master, "", Duration::from_secs(10));
    assert_eq!(wait(pid), 0, "output: {out}");
    assert!(
        out.contains(&format!("{name}\r\n")),
        "output {out:?} lacks {name}"
    );
    assert!(out.contains("hello"), "output {out:?}");
}

#[test]
fn interactive_shell_and_window_size() {
    let (_dir, path, listener) = listener();
    let sock = connect_console_socket(&path).unwrap();
    let pid = spawn_on_pty(&sock, Some((40, 100)), &["busybox", "sh"]);
    drop(sock);
    let master = receive_pty_master(&listener).unwrap();
    nix::unistd::write(&master, b"echo $((6*7))\n").unwrap();
    read_until(&master, "42\r\n", Duration::from_secs(10));
    nix::unistd::write(&master, b"stty size\n").unwrap();
    read_until(&master, "40 100\r\n", Duration::from_secs(10));
    nix::unistd::write(&master, b"exit 3\n").unwrap();
    read_until(&master, "", Duration::from_secs(10));
    assert_eq!(wait(pid), 3);
}

#[test]
fn long_socket_path_goes_through_proc_self_fd() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let path = deep.join("console.sock");
    assert!(path.as_os_str().len() > 108);
    let listener = bind_console_socket(&path).unwrap();
    assert!(path.exists());
    let (a, b) = console_socketpair().unwrap();
    let _client = connect_console_socket(&path).unwrap();
    listener.accept().unwrap();
    drop((a, b));
    let err = connect_console_socket(&dir.path().join("missing.sock"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing.sock") && err.contains("--console-socket"),
        "{err}"
    );
}

#[test]
fn relay_over_a_socketpair_copies_both_ways() {
    let (child_end, our_end) = console_socketpair().unwrap();
    let pid = spawn_on_pty(
        &child_end,
        None,
        &["busybox", "sh", "-c", "read x; echo got:$x"],
    );
    drop(child_end);
    let master = recv_pty_master(our_end.as_fd()).unwrap();
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&in_w, b"hi\n").unwrap();
    drop(in_w);
    relay_fds(master.as_fd(), in_r.as_fd(), out_w.as_fd(), true).unwrap();
    drop(out_w);
    let out = std::io::read_to_string(std::fs::File::from(out_r)).unwrap();
    assert_eq!(wait(pid), 0);
    assert!(out.contains("got:hi"), "output {out:?}");
}

#[test]
fn closed_socket_without_master_is_a_clear_error() {
    let (a, b) = console_socketpair().unwrap();
    drop(a);
    let err = recv_pty_master(b.as_fd()).unwrap_err().to_string();
    assert!(err.contains("without sending a pty master"), "{err}");
}
