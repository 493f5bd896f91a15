//! Helpers for the registry/archive tests: a real `docker-registry` on 127.0.0.1 (killed on drop) and
//! small busybox images written straight into a store.
#![allow(dead_code)]

use beam::image::digest::Digest;
use beam::image::store::{ImageRecord, Store};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const SKOPEO: &str = "/usr/bin/skopeo";

/// Skip the test (with a note) when docker-registry is not installed.
#[macro_export]
macro_rules! require_registry {
    () => {
        if !std::path::Path::new(common_registry::REGISTRY_BIN).exists() {
            eprintln!(
                "skipped: {} is not installed (apt-get install docker-registry)",
                common_registry::REGISTRY_BIN
            );
            return;
        }
    };
}

/// A docker-registry process with its own config and storage; stopped (that child only) on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_inner(None)
    }

    /// With htpasswd basic auth for `user`/`password` (None when no bcrypt implementation is at hand).
    pub fn start_with_auth(user: &str, password: &str) -> Option<Registry> {
        let hash = bcrypt(password)?;
        Some(Self::start_inner(Some(format!("{user}:{hash}\n"))))
    }

    fn start_inner(htpasswd: Option<String>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some(line) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, line).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: beam-test\n    path: {}\n",
                path.display()
            );
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut reg = Registry { child, addr, dir };
        reg.wait_ready();
        reg
    }

    /// Until `GET /v2/` answers (any HTTP status), at most 15 s.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            if let Some(code) = http_status(&self.addr, "GET", "/v2/") {
                assert!(code == 200 || code == 401, "GET /v2/ answered {code}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry keeps blob `d`.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a bodiless request, or None when nothing answers.
pub fn http_status(addr: &str, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A bcrypt hash (cost 4, so the registry checks it quickly) via python3's crypt module.
fn bcrypt(password: &str) -> Option<String> {
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))", password])
        .output()
        .ok()?;
    let h = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && h.starts_with("$2")).then_some(h)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A layer tar: /bin/busybox (when `with_busybox`), /bin/sh → busybox, and /etc/<name> = `content`.
pub fn layer_tar(with_busybox: bool, name: &str, content: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, p, &[][..]).unwrap();
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, p, data).unwrap();
    };
    if with_busybox {
        dir(&mut b, "bin/");
        file(
            &mut b,
            "bin/busybox",
            0o755,
            &std::fs::read("/bin/busybox").unwrap(),
        );
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_link(&mut h, "bin/sh", "busybox").unwrap();
    }
    dir(&mut b, "etc/");
    file(&mut b, &format!("etc/{name}"), 0o644, content.as_bytes());
    b.into_inner().unwrap()
}

pub fn compress(tar: &[u8], c: Comp) -> Vec<u8> {
    match c {
        Comp::None => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

pub struct ImageSpec<'a> {
    pub name: &'a str,
    /// Layers as (compression, file name under /etc, content); the first also holds busybox.
    pub layers: Vec<(Comp, &'a str, &'a str)>,
    pub docker_types: bool,
    pub arch: &'a str,
}

impl<'a> ImageSpec<'a> {
    pub fn new(name: &'a str) -> Self {
        ImageSpec {
            name,
            layers: vec![(Comp::Gzip, "hello", "hello from beam\n")],
            docker_types: false,
            arch: host_arch(),
        }
    }
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// Write an image into `store` through the store API (blobs, then add_image). Returns its record and
/// the manifest bytes.
pub fn make_image(store: &Store, spec: &ImageSpec) -> (ImageRecord, Vec<u8>) {
    let (manifest_type, config_type) = if spec.docker_types {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
        )
    };
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for (i, (comp, name, content)) in spec.layers.iter().enumerate() {
        let tar = layer_tar(i == 0, name, content);
        diff_ids.push(Digest::of(&tar).to_string());
        let blob = compress(&tar, *comp);
        let d = store.put_blob_bytes(&blob).unwrap();
        let media_type = match (spec.docker_types, comp) {
            (true, Comp::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            (true, Comp::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (true, Comp::Zstd) => "application/vnd.docker.image.rootfs.diff.tar.zstd",
            (false, Comp::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (false, Comp::None) => "application/vnd.oci.image.layer.v1.tar",
            (false, Comp::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        layers.push(json!({"mediaType": media_type, "digest": d.to_string(), "size": blob.len()}));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": spec.arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = store.put_blob_bytes(&config).unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let md = store.put_blob_bytes(&manifest).unwrap();
    let rec = store
        .add_image(
            &md,
            &[beam::image::reference::normalize(spec.name).unwrap()],
        )
        .unwrap();
    (rec, manifest)
}

/// A fresh store in its own temp dir (kept alive by the returned guard).
pub fn temp_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Store::open(dir.path()).unwrap(), dir)
}

/// Blob file names in a store (to check that a failed pull added nothing else).
pub fn blob_names(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.root().join("blobs/sha256"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn skopeo(args: &[&str]) {
    let out = Command::new(SKOPEO)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// PUT `body` to the registry (e.g. a manifest list) and return the status code.
pub fn http_put(addr: &str, path: &str, content_type: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "PUT {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len())
        .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
