//! beamd's gateway: `http://<sandbox>-<port>.localhost:<gw>/` and `/sandbox/<sandbox>/<port>/` proxied into
//! sandboxes (busybox httpd and nc servers inside), keep-alive, large bodies both ways, upgrades, tokens,
//! error pages, and keep-warm through open connections. Needs root (`#[ignore = "needs root"]`: run with
//! `--include-ignored` as root).

mod common_beamd;
mod common_root;

use common_beamd::Beamd;
use common_root::require_root;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A beamd with its gateway on a free port.
fn start(name: &str) -> (Beamd, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    (Beamd::start_with(name, &["--gateway", &addr]), port)
}

#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// A keep-alive HTTP/1.1 connection to the gateway.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn { r: BufReader::new(s) }
    }

    /// Send a request (`head` without the blank line) and read the response.
    fn request(&mut self, head: &str, body: &[u8]) -> std::io::Result<Resp> {
        let mut req = head.trim_end().replace('\n', "\r\n").replace("\r\r", "\r");
        if !body.is_empty() {
            req.push_str(&format!("\r\nContent-Length: {}", body.len()));
        }
        req.push_str("\r\n\r\n");
        let s = self.r.get_mut();
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        self.read_response(head.starts_with("HEAD "))
    }

    fn read_head(&mut self) -> std::io::Result<String> {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {head:?}")));
            }
            if line == "\r\n" {
                return Ok(head);
            }
            head.push_str(&line);
        }
    }

    fn read_response(&mut self, head_only: bool) -> std::io::Result<Resp> {
        let head = self.read_head()?;
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut r = Resp { status, head, body: vec![] };
        if head_only || status == 101 || status == 204 || status == 304 {
            return Ok(r);
        }
        if r.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut line = String::new();
                self.r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let start = r.body.len();
                r.body.resize(start + n, 0);
                self.r.read_exact(&mut r.body[start..])?;
                line.clear();
                self.r.read_line(&mut line)?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = r.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            r.body.resize(n, 0);
            self.r.read_exact(&mut r.body)?;
        } else {
            self.r.read_to_end(&mut r.body)?;
        }
        Ok(r)
    }
}

/// One request on its own connection.
fn get(port: u16, head: &str) -> Resp {
    Conn::open(port).request(head, b"").unwrap_or_else(|e| panic!("{head}: {e}"))
}

/// GET by path.
fn get_path(port: u16, path: &str) -> Resp {
    get(port, &format!("GET {path} HTTP/1.1\nHost: 127.0.0.1:{port}"))
}

/// Poll until the gateway answers 200 (the server inside may still be starting: 502 until then).
fn await_ok(b: &Beamd, port: u16, path: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get_path(port, path);
        if r.status == 200 {
            return r;
        }
        assert!(Instant::now() < deadline, "{path} never answered 200; last: {} {}\n{}", r.status, r.text(), b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sandbox's state from the list (which, unlike GET /v1/sandboxes/{ref}, is not activity).
fn listed(b: &Beamd, id: &str) -> Value {
    let v = b.get("/v1/sandboxes").json();
    v["sandboxes"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap_or_else(|| panic!("{id} not listed"))
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An entrypoint that serves /tmp/www with busybox httpd on 8080, with a 20 MiB file `big`.
fn httpd_sandbox(b: &Beamd, extra: Value) -> Value {
    let script = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && mkdir /tmp/www/sub && echo sub > /tmp/www/sub/index.html \
                  && yes 0123456789abcdef | head -c 20971520 > /tmp/www/big && exec httpd -f -p 8080 -h /tmp/www";
    let mut req = json!({"image": "busybox", "ports": [8080], "entrypoint": ["sh", "-c", script]});
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    b.create(&req)
}

#[test]
#[ignore = "needs root"]
fn proxies_by_host_and_by_path() {
    require_root();
    let (b, gw) = start("gw-proxy");
    let s = httpd_sandbox(&b, json!({"name": "web"}));
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["urls"]["8080"], format!("http://{id}-8080.localhost:{gw}/"), "{s}");

    // By path, then by Host header (id and name); the gateway strips /sandbox/<id>/<port>.
    assert_eq!(await_ok(&b, gw, &format!("/sandbox/{id}/8080/")).text(), "hello\n");
    let r = get(gw, &format!("GET /index.html HTTP/1.1\nHost: {id}-8080.localhost:{gw}"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"), "{r:?}");
    let r = get(gw, &format!("GET /sub/ HTTP/1.1\nHost: web-8080.localhost:{gw}"));
    assert_eq!((r.status, r.text().as_str()), (200, "sub\n"), "{r:?}");
    assert_eq!(get_path(gw, "/sandbox/web/8080/sub/").text(), "sub\n");
    // No trailing slash: a redirect to it.
    let r = get_path(gw, &format!("/sandbox/{id}/8080"));
    assert_eq!((r.status, r.header("location")), (308, Some(format!("/sandbox/{id}/8080/"))));

    // Keep-alive: several requests on one downstream connection (busybox httpd closes its side after each
    // answer, so the gateway reconnects upstream as needed).
    let mut c = Conn::open(gw);
    for path in ["/", "/sub/", "/index.html"] {
        let r = c.request(&format!("GET /sandbox/{id}/8080{path} HTTP/1.1\nHost: 127.0.0.1:{gw}"), b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let r = c.request(&format!("GET /x HTTP/1.1\nHost: {id}-8080.localhost"), b"").unwrap();
    assert_eq!(r.status, 404, "httpd's own 404: {r:?}");
    assert!(r.header("x-beam-gateway").is_none(), "{r:?}");

    // A large body, streamed intact.
    let r = get_path(gw, &format!("/sandbox/{id}/8080/big"));
    assert_eq!(r.status, 200);
    let want: Vec<u8> = b"0123456789abcdef\n".iter().copied().cycle().take(20 << 20).collect();
    assert_eq!(r.body.len(), want.len());
    assert_eq!(sha(&r.body), sha(&want));

    // Errors: the gateway's own pages (HTML, or JSON when asked).
    let json_get = |path: &str| get(gw, &format!("GET {path} HTTP/1.1\nHost: 127.0.0.1:{gw}\nAccept: application/json"));
    let r = json_get("/sandbox/nope/8080/");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no sandbox \\\"nope\\\""), "{}", r.text());
    assert_eq!(r.header("x-beam-gateway").as_deref(), Some("not_found"));
    let r = get(gw, &format!("GET / HTTP/1.1\nHost: nope-8080.localhost:{gw}"));
    assert_eq!(r.status, 404);
    assert!(r.header("content-type").unwrap().starts_with("text/html") && r.text().contains("nope"), "{}", r.text());
    let r = json_get(&format!("/sandbox/{id}/9999/"));
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not exposed") && r.text().contains("8080"), "{}", r.text());
    for bad in ["0", "65536", "http", "-1"] {
        let r = json_get(&format!("/sandbox/{id}/{bad}/"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains("not a port"), "{}", r.text());
    }
    let r = get(gw, &format!("GET / HTTP/1.1\nHost: {id}-99999.localhost:{gw}"));
    assert_eq!(r.status, 400);
    let r = json_get("/");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("beam's gateway"), "{}", r.text());

    // Exposed, but nothing listens: 502 naming the port. Then expose one more port and serve it.
    let r = b.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 9090}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["urls"]["9090"], format!("http://{id}-9090.localhost:{gw}/"));
    assert_eq!(r.json()["ports"], json!([8080, 9090]));
    let r = json_get(&format!("/sandbox/{id}/9090/"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("nothing listens on port 9090"), "{}", r.text());
    let r = b.sh(&id, "httpd -p 9090 -h /tmp/www/sub");
    assert_eq!(r.code(), 0, "{}", r.err());
    assert_eq!(await_ok(&b, gw, &format!("/sandbox/{id}/9090/")).text(), "sub\n");
    // Exposing again is a no-op; bad ports are 400.
    let r = b.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 9090}));
    assert_eq!(r.json()["ports"], json!([8080, 9090]));
    for bad in [json!({"port": 0}), json!({"port": 70000}), json!({"port": -1}), json!({})] {
        let r = b.post(&format!("/v1/sandboxes/{id}/ports"), &bad);
        r.api_error(400);
    }
    b.post("/v1/sandboxes/nope/ports", &json!({"port": 1})).api_error(404);

    // The sandbox can't reach the gateway (its network namespace has only loopback).
    let r = b.sh(&id, &format!("echo x | nc -w 2 127.0.0.1 {gw} && echo reached || echo unreachable"));
    assert!(r.out().contains("unreachable"), "{} {}", r.out(), r.err());

    // Exited: 410 naming it; no URLs in its view; exposing a port is a conflict.
    let r = b.post(&format!("/v1/sandboxes/{id}/stop"), &json!({"grace_seconds": 1}));
    assert_eq!(r.json()["state"], "exited");
    assert_eq!(r.json()["urls"], json!({}));
    let r = json_get(&format!("/sandbox/{id}/8080/"));
    assert_eq!(r.status, 410, "{}", r.text());
    assert!(r.text().contains(&format!("sandbox {id} has exited")), "{}", r.text());
    b.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 1})).api_error(409);
}

#[test]
#[ignore = "needs root"]
fn streams_request_bodies_and_upgrades() {
    require_root();
    let (b, gw) = start("gw-upgrade");
    // 9000: answers an upgrade with 101 and then echoes; 9100: reads a 5 MiB body, answers its sha256.
    let ws = "while read -r l; do l=${l%?}; [ -z \"$l\" ] && break; done\n\
              printf 'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n'\n\
              exec cat\n";
    let up = "while read -r l; do l=${l%?}; [ -z \"$l\" ] && break; done\n\
              h=$(head -c 5242880 | sha256sum | cut -d' ' -f1)\n\
              printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 64\\r\\nConnection: close\\r\\n\\r\\n%s' \"$h\"\n";
    // 9200: keep-alive, answers "conn <shell pid> req <n>" (one shell per TCP connection).
    let ka = "n=0\nwhile :; do\n\
              while :; do read -r l || exit 0; l=${l%?}; [ -z \"$l\" ] && break; done\n\
              n=$((n+1)); b=\"conn $$ req $n\"\n\
              printf 'HTTP/1.1 200 OK\\r\\nContent-Length: %s\\r\\n\\r\\n%s' ${#b} \"$b\"\ndone\n";
    let script = format!(
        "cat > /tmp/ws.sh <<'EOF'\n{ws}EOF\ncat > /tmp/up.sh <<'EOF'\n{up}EOF\ncat > /tmp/ka.sh <<'EOF'\n{ka}EOF\n\
         nc -ll -p 9100 -e sh /tmp/up.sh & nc -ll -p 9200 -e sh /tmp/ka.sh & exec nc -ll -p 9000 -e sh /tmp/ws.sh"
    );
    let s = b.create(&json!({"image": "busybox", "ports": [9000, 9100, 9200], "entrypoint": ["sh", "-c", script]}));
    let id = s["id"].as_str().unwrap().to_string();

    // A 5 MiB request body streams up intact.
    let body: Vec<u8> = (0..5u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = Conn::open(gw)
            .request(&format!("POST /upload HTTP/1.1\nHost: {id}-9100.localhost:{gw}\nContent-Type: application/octet-stream"), &body)
            .unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((r.status, r.text()), (200, sha(&body)), "{r:?}\n{}", b.log());

    // A keep-alive server upstream: one downstream connection reuses one upstream connection.
    let first = await_ok(&b, gw, &format!("/sandbox/{id}/9200/")).text();
    assert!(first.ends_with(" req 1"), "{first}");
    let mut c = Conn::open(gw);
    let mut answers = vec![];
    for path in ["/a", "/b", "/c"] {
        let r = c.request(&format!("GET /sandbox/{id}/9200{path} HTTP/1.1\nHost: 127.0.0.1:{gw}"), b"").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        answers.push(r.text());
    }
    let conn = answers[0].rsplit_once(" req ").unwrap().0.to_string();
    assert_eq!(answers, [1, 2, 3].map(|n| format!("{conn} req {n}")), "one upstream connection for the three");
    assert_ne!(first.rsplit_once(" req ").unwrap().0, conn, "a new downstream connection gets a new upstream one");
    drop(c);

    // An upgrade: 101 through the gateway, then bytes both ways.
    let mut c = upgrade(&b, gw, &format!("/sandbox/{id}/9000/ws"));
    for msg in ["hello through the gateway\n", "second\n"] {
        c.r.get_mut().write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.r.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), msg);
    }
    // A second upgraded connection after the first one closed.
    drop(c);
    let mut c = upgrade(&b, gw, &format!("/sandbox/{id}/9000/"));
    c.r.get_mut().write_all(b"again\n").unwrap();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert_eq!(line, "again\n");
}

/// Send an upgrade request and read the 101 head; returns the connection, now spliced.
fn upgrade(b: &Beamd, gw: u16, path: &str) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = Conn::open(gw);
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        c.r.get_mut().write_all(head.as_bytes()).unwrap();
        let h = c.read_head().unwrap();
        if h.starts_with("HTTP/1.1 101") {
            assert!(h.to_ascii_lowercase().contains("upgrade: websocket"), "{h}");
            return c;
        }
        assert!(h.contains(" 502 "), "{h}");
        assert!(Instant::now() < deadline, "no 101 from {path}: {h}\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn authorized_sandboxes_need_their_token() {
    require_root();
    let (b, gw) = start("gw-token");
    let s = httpd_sandbox(&b, json!({"authorized": true}));
    let id = s["id"].as_str().unwrap().to_string();
    let token = s["token"].as_str().unwrap_or_else(|| panic!("no token: {s}")).to_string();
    assert_eq!((s["authorized"].clone(), token.len()), (json!(true), 32));
    assert_eq!(b.get(&format!("/v1/sandboxes/{id}")).json()["token"], token.as_str());

    let host = format!("Host: {id}-8080.localhost:{gw}");
    // Bearer (wait for httpd with it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(gw, &format!("GET / HTTP/1.1\n{host}\nAuthorization: Bearer {token}"));
        if r.status == 200 {
            assert_eq!(r.text(), "hello\n");
            break;
        }
        assert_eq!(r.status, 502, "{r:?}");
        assert!(Instant::now() < deadline, "{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // No token, a wrong one: 401 (by host and by path).
    let r = get(gw, &format!("GET / HTTP/1.1\n{host}"));
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.text().contains("token"), "{}", r.text());
    assert_eq!(get(gw, &format!("GET / HTTP/1.1\n{host}\nAuthorization: Bearer nope")).status, 401);
    assert_eq!(get_path(gw, &format!("/sandbox/{id}/8080/?beam_token=nope")).status, 401);
    assert_eq!(get_path(gw, &format!("/sandbox/{id}/8080/")).status, 401);
    // ?beam_token= once sets a cookie; the browser's next request carries only the cookie.
    let r = get(gw, &format!("GET /?beam_token={token} HTTP/1.1\n{host}"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"), "{r:?}");
    let cookie = r.header("set-cookie").unwrap_or_else(|| panic!("no cookie: {r:?}"));
    assert!(cookie.starts_with(&format!("beam_token_{id}={token};")) && cookie.contains("Path=/;"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let r = get(gw, &format!("GET /sub/ HTTP/1.1\n{host}\nCookie: other=1; {pair}"));
    assert_eq!((r.status, r.text().as_str()), (200, "sub\n"), "{r:?}");
    // By path the cookie is scoped to the sandbox's prefix.
    let r = get_path(gw, &format!("/sandbox/{id}/8080/?beam_token={token}"));
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").unwrap().contains(&format!("Path=/sandbox/{id}/8080;")), "{r:?}");
}

#[test]
#[ignore = "needs root"]
fn open_connections_keep_a_sandbox_warm() {
    require_root();
    let (b, gw) = start("gw-warm");
    let ws = "while read -r l; do l=${l%?}; [ -z \"$l\" ] && break; done\n\
              printf 'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n'\n\
              exec cat\n";
    let script = format!("cat > /tmp/ws.sh <<'EOF'\n{ws}EOF\nexec nc -ll -p 9000 -e sh /tmp/ws.sh");
    let s = b.create(&json!({"image": "busybox", "ports": [9000], "keep_warm_seconds": 2, "entrypoint": ["sh", "-c", script]}));
    let id = s["id"].as_str().unwrap().to_string();
    let mut c = upgrade(&b, gw, &format!("/sandbox/{id}/9000/"));
    let opened = Instant::now();
    // Idle traffic-wise, but the connection is open: still running well past keep_warm_seconds.
    while opened.elapsed() < Duration::from_millis(4500) {
        let v = listed(&b, &id);
        assert_eq!(v["state"], "running", "stopped while a connection was open: {v}");
        assert!(v["expires_at"].is_null(), "an open connection must hold off the idle deadline: {v}");
        std::thread::sleep(Duration::from_millis(250));
    }
    c.r.get_mut().write_all(b"ping\n").unwrap();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert_eq!(line, "ping\n");
    drop(c);
    let closed = Instant::now();
    b.await_until("the idle stop after the connection closed", Duration::from_secs(20), || listed(&b, &id)["state"] == "exited");
    let v = listed(&b, &id);
    assert_eq!(v["reason"], "idle", "{v}");
    assert!(closed.elapsed() >= Duration::from_millis(1500), "stopped too soon after the close: {:?}", closed.elapsed());
}

/// The jupyter recipe (images/jupyter.toml: Debian, python3, pip's `notebook`) behind the gateway: its REST
/// API by host and by path, and a kernel's WebSocket channel (a real one, tornado's) running code. Builds the
/// image in beamd's store first — debootstrap and apt from the host's Debian mirror, pip from PyPI, ≈1 min —
/// so it needs the network, like tests/recipes.rs's python test.
#[test]
#[ignore = "needs root"]
fn jupyter_notebook_through_the_gateway() {
    require_root();
    let (b, gw) = start("jupyter");
    let store = beam::image::store::Store::open(&b.root.join("images")).expect("open beamd's store");
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/jupyter.toml");
    let started = Instant::now();
    let opts = beam::image::recipe::BuildOptions { tag: None, quiet: true };
    beam::image::recipe::build(&store, &recipe, &opts).expect("build images/jupyter.toml");
    eprintln!("jupyter.toml built in {:?}", started.elapsed());

    let token = "beam-test-token";
    let s = b.create(&json!({
        "image": "beam.local/jupyter:latest",
        "ports": [8888],
        "entrypoint": ["jupyter", "notebook", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root",
                       format!("--IdentityProvider.token={token}")],
    }));
    let id = s["id"].as_str().unwrap().to_string();
    let host = format!("{id}-8888.localhost:{gw}");

    // The server's API root, by path (polled until the server listens) and by host.
    let api = await_ok(&b, gw, &format!("/sandbox/{id}/8888/api"));
    let version: Value = serde_json::from_slice(&api.body).unwrap_or_else(|e| panic!("{e}: {}", api.text()));
    assert!(version["version"].is_string(), "{version}");
    let r = get(gw, &format!("GET /api/status HTTP/1.1\nHost: {host}\nAuthorization: token {token}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(gw, &format!("GET /api/status HTTP/1.1\nHost: {host}"));
    assert_eq!(r.status, 403, "jupyter's own token check still applies: {}", r.text());

    // A kernel, and code run in it over its WebSocket channel.
    let body = br#"{"name": "python3"}"#;
    let r = Conn::open(gw)
        .request(&format!("POST /api/kernels HTTP/1.1\nHost: {host}\nAuthorization: token {token}\nContent-Type: application/json"), body)
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let kernel: Value = serde_json::from_slice(&r.body).unwrap();
    let kid = kernel["id"].as_str().unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", gw)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let url = format!("ws://{host}/api/kernels/{kid}/channels?token={token}");
    let (mut ws, resp) = tungstenite::client::client(url.as_str(), tcp).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 101);
    let msg_id = format!("beam-{}", std::process::id());
    let execute = json!({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "beam", "session": "beam-test",
                   "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "print(6 * 7)", "silent": false, "store_history": false, "user_expressions": {},
                    "allow_stdin": false, "stop_on_error": true},
    });
    ws.send(tungstenite::Message::text(execute.to_string())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let printed = loop {
        assert!(Instant::now() < deadline, "no output from the kernel; messages: {seen:?}");
        let m = ws.read().unwrap_or_else(|e| panic!("reading the kernel channel: {e}; messages: {seen:?}"));
        let Ok(text) = m.to_text() else { continue };
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        seen.push(v["msg_type"].as_str().unwrap_or("?").to_string());
        if v["parent_header"]["msg_id"] == msg_id.as_str() && v["msg_type"] == "stream" {
            break v["content"]["text"].as_str().unwrap_or_default().to_string();
        }
    };
    assert_eq!(printed, "42\n");
    let _ = ws.close(None);
}

/// What a TCP server behind `host_port` says first, retried until the server inside listens.
fn tcp_hello(b: &Beamd, host_port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", host_port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && !out.is_empty() {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "nothing came through host port {host_port}\n{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raw TCP forwards (`publish`): at create and on a running sandbox, taken ports and bad addresses refused
/// with nothing made, re-bound after a beamd crash, gone with the sandbox.
#[test]
#[ignore = "needs root"]
fn raw_tcp_forwards() {
    require_root();
    let (mut b, _gw) = start("forward");
    let (p1, p2) = (free_port(), free_port());
    let serve = |port: u16, word: &str| format!("while true; do echo {word} | nc -l -p {port}; done");
    let s = b.create(&json!({
        "image": "busybox",
        "publish": [{"port": 7000, "host_port": p1}],
        "entrypoint": ["sh", "-c", serve(7000, "pong")],
    }));
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["published"], json!([{"port": 7000, "host_port": p1, "host_ip": "127.0.0.1"}]), "{s}");
    assert_eq!(tcp_hello(&b, p1), "pong\n");

    // Refused before anything is made: a taken host port, a bad address, a zero port.
    let before = b.ids().len();
    let e = b.post("/v1/sandboxes", &json!({"image": "busybox", "publish": [{"port": 1, "host_port": p1}]})).api_error(409);
    assert!(e.contains(&p1.to_string()), "{e}");
    b.post("/v1/sandboxes", &json!({"image": "busybox", "publish": [{"port": 1, "host_port": p2, "host_ip": "nope"}]}))
        .api_error(400);
    b.post("/v1/sandboxes", &json!({"image": "busybox", "publish": [{"port": 0, "host_port": p2}]})).api_error(400);
    assert_eq!(b.ids().len(), before, "a refused create left a sandbox");

    // On a running sandbox.
    let mut srv = b.exec_upgraded(&id, &json!({"cmd": ["sh", "-c", serve(7001, "second")]}));
    let r = b.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 7001, "host_port": p2}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["published"].as_array().unwrap().len(), 2);
    assert_eq!(tcp_hello(&b, p2), "second\n");
    b.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 7002, "host_port": p2})).api_error(409);
    b.post(&format!("/v1/sandboxes/{id}/ports"), &json!({"port": 7002, "host_port": 70000})).api_error(400);
    srv.send(beam::api::frames::SIGNAL, br#"{"signal":"KILL"}"#);
    srv.finish();

    // A restarted beamd binds the forwards of the sandboxes it re-adopts.
    b.kill9();
    b.spawn();
    assert_eq!(tcp_hello(&b, p1), "pong\n");

    // They end with the sandbox.
    b.post(&format!("/v1/sandboxes/{id}/stop"), &json!({}));
    b.await_until("the forward to close", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", p1)).is_err());
}
