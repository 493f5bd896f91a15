//! Image side, end to end on the real kernel (root): overlay root filesystems, OCI bundles from stored
//! images run by beam-oci, and recipe builds with step caching and committed whiteouts.
//! Every test works in its own temp dir; guards unmount everything they mounted, even on failure.

mod common_root;
use common_root::require_root;

use beam::image::bundle::{self, Overrides};
use beam::image::recipe::{self, BuildOptions};
use beam::image::rootfs::{self, Method};
use beam::image::store::{ImageRecord, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Unmounts and removes a container dir on drop.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = rootfs::remove(&self.0);
    }
}

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("beam-recipes-{name}-")).tempdir().expect("tempdir")
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// `n` layer dirs under `base`: layer i has `layer` = i and its own file `f<i>`.
fn make_layers(base: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let d = base.join(format!("layer-with-a-realistic-long-name-{i:04}-{}", "0123456789abcdef".repeat(3)));
            write(&d.join("layer"), &i.to_string());
            write(&d.join(format!("f{i}")), "x");
            d
        })
        .collect()
}

fn rootfs_300_layers(method: Method) {
    let t = tmp("300");
    let layers = make_layers(&t.path().join("layers"), 300);
    let total: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the lowerdir list must overflow one page ({total} bytes)");
    let dir = t.path().join("c");
    let _g = DirGuard(dir.clone());
    let start = Instant::now();
    let r = rootfs::mount_with(&layers, &dir, false, method).expect("mount 300 layers");
    eprintln!("{method:?}: mounted 300 layers in {:?}", start.elapsed());
    assert!(rootfs::is_mount_point(&r.merged));
    assert_eq!(std::fs::read_to_string(r.merged.join("layer")).unwrap(), "299", "top layer wins");
    assert!(r.merged.join("f0").exists() && r.merged.join("f150").exists());
    std::fs::write(r.merged.join("new"), "w").unwrap();
    assert!(r.upper.join("new").exists(), "writes land in upper");
    rootfs::unmount(&r).unwrap();
    assert!(!rootfs::is_mount_point(&r.merged));
    rootfs::remove(&dir).unwrap();
    assert!(!dir.exists());
    for l in &layers {
        assert!(l.join("layer").exists(), "layers untouched");
    }
}

#[test]
#[ignore = "needs root"]
fn rootfs_300_layers_new_api() {
    require_root();
    if !rootfs::has_lowerdir_plus() {
        eprintln!("skipped: kernel < 6.8");
        return;
    }
    rootfs_300_layers(Method::NewApi);
}

#[test]
#[ignore = "needs root"]
fn rootfs_300_layers_legacy_mount() {
    require_root();
    rootfs_300_layers(Method::Legacy);
}

#[test]
#[ignore = "needs root"]
fn rootfs_whiteout_and_opaque_dir() {
    require_root();
    let t = tmp("wh");
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    write(&low.join("gone"), "lower");
    write(&low.join("kept"), "lower");
    write(&low.join("d/old"), "lower");
    std::fs::create_dir_all(up.join("d")).unwrap();
    write(&up.join("d/new"), "upper");
    nix::sys::stat::mknod(&up.join("gone"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).unwrap();
    let d = std::ffi::CString::new(up.join("d").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path and name; value is a 1-byte buffer.
    let r = unsafe { libc::setxattr(d.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
    for (readonly, method) in
        [(false, Method::Auto), (true, Method::Auto), (false, Method::Legacy), (true, Method::Legacy)]
    {
        let dir = t.path().join(format!("c-{readonly}-{method:?}"));
        let _g = DirGuard(dir.clone());
        let r = rootfs::mount_with(&[low.clone(), up.clone()], &dir, readonly, method).unwrap();
        assert!(!r.merged.join("gone").exists(), "whiteout hides the lower file");
        assert!(r.merged.join("kept").exists());
        let names: Vec<_> = std::fs::read_dir(r.merged.join("d")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["new"], "opaque dir hides lower contents");
        assert_eq!(std::fs::write(r.merged.join("w"), "x").is_err(), readonly, "readonly={readonly}");
        assert_eq!(r.upper.exists(), !readonly);
        rootfs::remove(&dir).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn rootfs_errors_name_the_dir() {
    require_root();
    let t = tmp("err");
    let dir = t.path().join("c");
    let _g = DirGuard(dir.clone());
    let e = rootfs::mount(&[t.path().join("nope")], &dir, false).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("pull"), "{e}");
}

/// A temp store plus scratch space; on drop, lazily unmounts anything still mounted below it.
struct World {
    tmp: tempfile::TempDir,
    store: Store,
}

impl World {
    fn new(name: &str) -> Self {
        let tmp = tmp(name);
        let store = Store::open(&tmp.path().join("store")).expect("open store");
        Self { tmp, store }
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn quiet() -> BuildOptions {
        BuildOptions { tag: None, quiet: true }
    }
    fn busybox(&self) -> ImageRecord {
        recipe::build_str(&self.store, recipe::BUSYBOX_RECIPE, None, &Self::quiet()).expect("build busybox")
    }
    fn recipe(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join("recipes").join(format!("{name}.toml"));
        write(&p, text);
        p
    }
    /// Bundle `img` and run it with `beam-oci run`; returns (exit code, stdout, stderr). The bundle is
    /// destroyed afterwards (and by its Drop if an assertion fires first).
    fn run(&self, img: &ImageRecord, o: &Overrides) -> (i32, String, String) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let b = bundle::create(&self.store, img, &self.path().join(format!("bundle{n}")), o).expect("bundle");
        let (out, err) = (self.path().join(format!("out{n}")), self.path().join(format!("err{n}")));
        let status = Command::new(env!("CARGO_BIN_EXE_beam-oci"))
            .arg("--root")
            .arg(self.path().join("oci"))
            .args(["run", "--bundle"])
            .arg(&b.dir)
            .arg(format!("t{}-{n}", std::process::id()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .expect("spawn beam-oci");
        b.destroy().expect("destroy bundle");
        (status.code().unwrap_or(-1), std::fs::read_to_string(out).unwrap(), std::fs::read_to_string(err).unwrap())
    }
    fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.store.root().join(sub)).map_or(0, |d| d.count())
    }
    fn mounts_below(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let me = self.path().to_string_lossy().into_owned();
        info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&me)).map(String::from).collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let mut points = self.mounts_below();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn sh(script: &str) -> Overrides {
    Overrides { entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]), ..Overrides::default() }
}

#[test]
#[ignore = "needs root"]
fn busybox_recipe_builds_in_seconds_and_runs() {
    require_root();
    let w = World::new("bb");
    let start = Instant::now();
    let img = w.busybox();
    let took = start.elapsed();
    eprintln!("busybox recipe built in {took:?}");
    assert!(took < Duration::from_secs(20), "busybox build took {took:?}");
    assert_eq!(img.layers.len(), 1);
    assert!(img.names.iter().any(|n| n == "beam.local/busybox:latest"), "{:?}", img.names);
    let (code, out, err) = w.run(&img, &sh("echo hi"));
    assert_eq!((code, out.as_str()), (0, "hi\n"), "stderr: {err}");
    // The image's own Cmd (sh) with a script on stdin is not used here; Cmd alone:
    let (code, out, _) =
        w.run(&img, &Overrides { cmd: Some(vec!["echo".into(), "from-cmd".into()]), ..Overrides::default() });
    assert_eq!((code, out.as_str()), (0, "from-cmd\n"));
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert_eq!(w.count("pins"), 0, "bundles unpinned");
}

#[test]
#[ignore = "needs root"]
fn bundle_honours_env_workdir_user_and_readonly() {
    require_root();
    let w = World::new("ovr");
    let img = w.busybox();
    let o = Overrides {
        env: vec!["FOO=bar".into(), "PATH=/bin:/usr/bin".into()],
        workdir: Some("/srv/app".into()),
        user: Some("nobody".into()),
        hostname: Some("boxy".into()),
        ..sh("echo $FOO $PATH; pwd; id -u; id -g; hostname; touch /tmp/x && echo writable")
    };
    let (code, out, err) = w.run(&img, &o);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "bar /bin:/usr/bin\n/srv/app\n65534\n65534\nboxy\nwritable\n");
    let o = Overrides {
        user: Some("123:456".into()),
        readonly: true,
        ..sh("id -u; id -g; touch /x 2>/dev/null || echo read-only")
    };
    let (code, out, err) = w.run(&img, &o);
    assert_eq!((code, out.as_str()), (0, "123\n456\nread-only\n"), "stderr: {err}");
    // A user the image doesn't know: a clear error, nothing left mounted or pinned.
    let e =
        bundle::create(&w.store, &img, &w.path().join("bad"), &Overrides { user: Some("nosuch".into()), ..sh("true") })
            .unwrap_err()
            .to_string();
    assert!(e.contains("nosuch") && e.contains("passwd"), "{e}");
    assert!(!w.path().join("bad").exists());
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert_eq!(w.count("pins"), 0);
}

#[test]
#[ignore = "needs root"]
fn bundle_drop_unmounts_and_unpins() {
    require_root();
    let w = World::new("drop");
    let img = w.busybox();
    let b = bundle::create(&w.store, &img, &w.path().join("b"), &sh("true")).unwrap();
    assert!(rootfs::is_mount_point(&b.rootfs.merged));
    assert_eq!(w.count("pins"), 1);
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(b.config_path()).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], b.rootfs.merged.to_str().unwrap());
    assert!(spec["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "network"));
    drop(b);
    assert!(w.mounts_below().is_empty(), "Drop must unmount");
    assert_eq!(w.count("pins"), 0, "Drop must unpin");
}

#[test]
#[ignore = "needs root"]
fn recipe_commands_are_cached_layers_with_whiteouts() {
    require_root();
    let w = World::new("cmds");
    let path = w.recipe(
        "greet",
        r#"
name = "beam.local/greet:1"
base = "busybox"
env = { GREETING = "hello" }
workdir = "/data"
commands = ["echo $GREETING > /greeting", "rm /bin/vi"]
cmd = ["cat", "/greeting"]
expose = [8080]
"#,
    );
    let start = Instant::now();
    let img = recipe::build(&w.store, &path, &World::quiet()).expect("build");
    eprintln!("first build: {:?}", start.elapsed());
    assert_eq!(img.layers.len(), 3, "busybox + 2 command layers");
    assert!(img.names.iter().any(|n| n == "beam.local/greet:1"), "{:?}", img.names);
    let cfg = w.store.config(&img).unwrap();
    let c = cfg.config().as_ref().unwrap();
    assert_eq!(c.working_dir().as_deref(), Some("/data"));
    assert!(c.env().as_ref().unwrap().contains(&"GREETING=hello".to_string()));
    assert_eq!(c.exposed_ports().as_ref().unwrap(), &["8080/tcp".to_string()]);
    assert!(!c.env().as_ref().unwrap().iter().any(|e| e.contains("CERT")), "step-only env stays out of the image");
    // The rm step's layer holds an overlay whiteout for bin/vi.
    let rm_layer = w.store.layer_dir(&img.layers[2].diff_id);
    let m = std::fs::symlink_metadata(rm_layer.join("bin/vi")).expect("whiteout in the unpacked layer");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(m.file_type().is_char_device() && m.rdev() == 0, "bin/vi should be a whiteout");

    let (blobs, layers, images) = (w.count("blobs/sha256"), w.count("layers"), w.count("images"));
    let start = Instant::now();
    let again = recipe::build(&w.store, &path, &World::quiet()).expect("rebuild");
    let took = start.elapsed();
    eprintln!("cached rebuild: {took:?}");
    assert_eq!(again.id, img.id, "every step is a cache hit");
    assert_eq!(
        (w.count("blobs/sha256"), w.count("layers"), w.count("images")),
        (blobs, layers, images),
        "nothing new stored"
    );
    assert!(took < Duration::from_secs(3), "cached rebuild took {took:?}");

    let (code, out, err) = w.run(&img, &Overrides::default());
    assert_eq!((code, out.as_str()), (0, "hello\n"), "stderr: {err}");
    let (code, out, err) = w.run(&img, &sh("pwd; test -e /bin/vi && echo vi-present || echo vi-gone; echo $GREETING"));
    assert_eq!((code, out.as_str()), (0, "/data\nvi-gone\nhello\n"), "stderr: {err}");
    // The parent image still has vi: layers are shared, never modified.
    let (_, out, _) = w.run(
        &w.store.resolve("beam.local/busybox:latest").unwrap_or_else(|_| w.busybox()),
        &sh("test -e /bin/vi && echo vi-present"),
    );
    assert_eq!(out, "vi-present\n");
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
}

#[test]
#[ignore = "needs root"]
fn recipe_commit_keeps_opaque_dirs_and_links() {
    require_root();
    let w = World::new("opq");
    // Build steps see the host's CA bundle when it has one (TLS-inspecting egress).
    let ca_check =
        if Path::new("/etc/ssl/certs/ca-certificates.crt").is_file() { "test -s $SSL_CERT_FILE && " } else { "" };
    let first = format!("{ca_check}mkdir -p /data/sub && echo x > /data/x && echo y > /data/sub/y");
    let second =
        "rm -rf /data && mkdir /data && echo only > /data/only && echo a > /a && ln /a /b && ln -s /a /c && mkfifo /p";
    let path = w.recipe("opq", &format!("base = \"busybox\"\ncommands = [{first:?}, {second:?}]\n"));
    let img = recipe::build(&w.store, &path, &World::quiet()).expect("build");
    let (code, out, err) = w.run(&img, &sh("ls /data; cat /b; readlink /c; test -p /p && echo fifo; stat -c %h /a"));
    assert_eq!((code, out.as_str()), (0, "only\na\n/a\nfifo\n2\n"), "stderr: {err}");
    let top = w.store.layer_dir(&img.layers[2].diff_id);
    let mut v = [0u8; 1];
    let c = std::ffi::CString::new(top.join("data").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path and name; `v` is writable for 1 byte.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), v.as_mut_ptr().cast(), 1) };
    assert_eq!((n, v[0]), (1, b'y'), "the committed dir is opaque in the unpacked layer");
}

#[test]
#[ignore = "needs root"]
fn recipe_step_failure_names_command_and_code() {
    require_root();
    let w = World::new("fail");
    let path = w.recipe("bad", "base = \"busybox\"\ncommands = [\"echo oops >&2; exit 3\"]\n");
    let e = recipe::build(&w.store, &path, &World::quiet()).unwrap_err().to_string();
    assert!(e.contains("exit 3") && e.contains("code 3") && e.contains("oops"), "{e}");
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert_eq!(w.count("pins"), 0);
}

#[test]
#[ignore = "needs root"]
fn recipe_build_cleans_up_after_killed_builds() {
    require_root();
    let w = World::new("stale");
    let img = w.busybox();
    // A bundle left behind by a build process that no longer exists (pid 4194399: above the largest possible pid_max).
    let stale = w.store.root().join("build").join("step-4194399-0-0000");
    let b = bundle::create(&w.store, &img, &stale, &sh("true")).unwrap();
    std::mem::forget(b); // as if the process was killed: still mounted and pinned
    assert!(!w.mounts_below().is_empty());
    w.busybox();
    assert!(!stale.exists(), "stale build dir removed");
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert_eq!(w.count("pins"), 0);
}

#[test]
fn recipe_unknown_key_is_named() {
    let w = World::new("key");
    let path = w.recipe("typo", "base = \"busybox\"\ncomands = [\"true\"]\n");
    let e = recipe::build(&w.store, &path, &World::quiet()).unwrap_err().to_string();
    assert!(e.contains("comands") && e.contains("typo.toml"), "{e}");
    let path = w.recipe("cycle", "base = \"recipe:cycle\"\n");
    let e = recipe::build(&w.store, &path, &World::quiet()).unwrap_err().to_string();
    assert!(e.contains("cycle"), "{e}");
}

/// debootstrap (~40 s) + apt (python3, pip) from the host's Debian mirror: needs the network.
#[test]
#[ignore = "needs root"]
fn python_recipe_builds_and_runs() {
    require_root();
    let w = World::new("py");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
    let start = Instant::now();
    let img = recipe::build(&w.store, &images.join("python.toml"), &BuildOptions::default()).expect("build python");
    eprintln!("python.toml built in {:?}", start.elapsed());
    let (code, out, err) = w.run(
        &img,
        &Overrides {
            cmd: Some(vec!["python3".into(), "-c".into(), "import sys; print(sys.version_info[0])".into()]),
            ..Overrides::default()
        },
    );
    assert_eq!((code, out.as_str()), (0, "3\n"), "stderr: {err}");
    eprintln!("ran python3 at {:?}", start.elapsed());
    // A second build is all cache hits: the same image, no new blob.
    let blobs = std::fs::read_dir(w.store.root().join("blobs/sha256")).unwrap().count();
    let again = recipe::build(&w.store, &images.join("python.toml"), &World::quiet()).expect("rebuild");
    assert_eq!(again.id, img.id);
    assert_eq!(std::fs::read_dir(w.store.root().join("blobs/sha256")).unwrap().count(), blobs);
}
