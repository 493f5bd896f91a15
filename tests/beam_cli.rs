//! The `beam` CLI end to end against a real beamd: run, exec (exit status passed through), list, cp both
//! ways, logs, stop, rm — and the one line it prints when beamd isn't there. Root only.

mod common_beamd;
mod common_root;
use common_beamd::*;
use common_root::require_root;
use std::process::Output;

fn run(b: &Beamd, args: &[&str]) -> Output {
    b.beam().args(args).output().expect("spawn beam")
}

fn ok(b: &Beamd, args: &[&str]) -> String {
    let o = run(b, args);
    assert!(
        o.status.success(),
        "beam {args:?} failed ({:?}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn cli_lifecycle() {
    require_root();
    let b = Beamd::start("cli");
    // run: progress on stderr, the id on stdout
    let o = run(&b, &["run", "--image", "busybox", "--name", "box", "--memory", "512Mi", "--env", "A=1", "--tag", "k=v"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(id.starts_with("sbx-"), "{id:?}");
    assert!(err.contains(&format!("Container created successfully ===> {id}")), "{err}");

    // exec: output and exit status
    let o = run(&b, &["exec", "box", "--", "sh", "-c", "echo out $A; echo err >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out 1\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // stdin through -i
    let mut child = b
        .beam()
        .args(["exec", "-i", &id, "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped input\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED INPUT\n");

    // list: table and JSON
    let table = ok(&b, &["container", "list"]);
    assert!(table.lines().next().unwrap().contains("ID") && table.contains(&id) && table.contains("running"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&ok(&b, &["ps", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().map(|a| a.len()).or_else(|| json["sandboxes"].as_array().map(|a| a.len())), Some(1), "{json}");

    // cp: a file up, a dir down
    let local = b.tmp.path().join("up.txt");
    std::fs::write(&local, "uploaded\n").unwrap();
    ok(&b, &["cp", local.to_str().unwrap(), &format!("{id}:/tmp/up.txt")]);
    assert_eq!(ok(&b, &["exec", &id, "--", "cat", "/tmp/up.txt"]), "uploaded\n");
    ok(&b, &["exec", &id, "--", "sh", "-c", "mkdir -p /tmp/out/sub && echo deep > /tmp/out/sub/f"]);
    let down = b.tmp.path().join("down");
    std::fs::create_dir(&down).unwrap();
    ok(&b, &["cp", &format!("{id}:/tmp/out"), down.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(down.join("out/sub/f")).unwrap(), "deep\n");

    // stop, then exec is refused with one line; rm removes it
    assert!(ok(&b, &["stop", &id]).contains(&id));
    let o = run(&b, &["exec", &id, "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("not running"), "{e}");
    ok(&b, &["rm", &id]);
    assert!(b.ids().is_empty());
}

#[test]
#[ignore = "needs root"]
fn cli_pod_logs_and_exit_code() {
    require_root();
    let b = Beamd::start("clipod");
    // Not detached: follows the entrypoint's output and exits with its code.
    let o = run(&b, &["run", "--image", "busybox", "--entrypoint", "sh -c 'echo from the pod; exit 3'"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from the pod\n");
    let id = b.ids().pop().unwrap();
    assert_eq!(ok(&b, &["logs", &id]), "from the pod\n");
}

#[test]
fn cli_without_beamd_says_how_to_start_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(beam_bin())
        .env("BEAM_SOCKET", tmp.path().join("none.sock"))
        .args(["container", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("beamd"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn cli_ports_urls_and_forwards() {
    require_root();
    let gw = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b = Beamd::start_with("cli-ports", &["--gateway", &format!("127.0.0.1:{gw}")]);
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (h1, h2) = (free(), free());
    // run -d with a gateway port and a TCP forward: both announced on stderr
    let o = run(&b, &["run", "-d", "--image", "busybox", "--name", "web", "--ports", "8080", "--publish", &format!("{h1}:7000")]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("-8080.localhost:{gw}/")), "{err}");
    assert!(err.contains(&format!("Port 7000 forwarded from 127.0.0.1:{h1}")), "{err}");
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // port: list, then expose one more with a forward
    let listed = ok(&b, &["port", "web"]);
    assert_eq!(listed, format!("8080 -> http://{id}-8080.localhost:{gw}/\n7000/tcp -> 127.0.0.1:{h1}\n"));
    let added = ok(&b, &["container", "port", "web", "9090", "--publish", &format!("127.0.0.1:{h2}")]);
    assert!(added.contains(&format!("9090 -> http://{id}-9090.localhost:{gw}/")), "{added}");
    assert!(added.contains(&format!("9090/tcp -> 127.0.0.1:{h2}")), "{added}");
    // a taken host port and a malformed spec: one line each, non-zero
    for (args, want) in [
        (vec!["port", "web", "9091", "--publish", &*h2.to_string()], "in use"),
        (vec!["run", "-d", "--image", "busybox", "--publish", "nope"], "--publish"),
    ] {
        let o = run(&b, &args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && err.contains(want) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
