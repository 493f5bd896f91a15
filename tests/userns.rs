//! User namespaces over shared layers, on the real kernel (root): idmapped lower layers stay unshifted on
//! disk while each container's root maps to its own host range; two ranges share one layer dir at once.
//! Every test works in its own temp dir; guards unmount everything mounted below it, even on failure.

mod common_root;
use common_root::require_root;

use beam::image::bundle::{self, Overrides};
use beam::image::recipe::{self, BuildOptions};
use beam::image::rootfs::{self, Idmap, Method};
use beam::image::store::{ImageRecord, Store};
use beam::image::userns::UserNs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temp dir (and store); on drop, lazily unmounts anything still mounted below it.
struct World {
    tmp: tempfile::TempDir,
    store: Store,
}

impl World {
    fn new(name: &str) -> Self {
        let tmp = tempfile::Builder::new().prefix(&format!("beam-userns-{name}-")).tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("store")).expect("open store");
        Self { tmp, store }
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn busybox(&self) -> ImageRecord {
        let opts = BuildOptions { tag: None, quiet: true };
        recipe::build_str(&self.store, recipe::BUSYBOX_RECIPE, None, &opts).expect("build busybox")
    }
    fn mounts_below(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let me = std::fs::canonicalize(self.path()).unwrap().to_string_lossy().into_owned();
        info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&me)).map(String::from).collect()
    }
    fn pins(&self) -> usize {
        std::fs::read_dir(self.store.root().join("images/pins")).map_or(0, |d| d.count())
    }
    /// `beam-oci run` of a bundle, stdout/stderr to files `<name>.out`/`.err` in the world.
    fn spawn(&self, b: &bundle::Bundle, name: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_beam-oci"))
            .arg("--root")
            .arg(self.path().join("oci"))
            .args(["run", "--bundle"])
            .arg(&b.dir)
            .arg(format!("userns-{}-{name}", std::process::id()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path().join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(self.path().join(format!("{name}.err"))).unwrap())
            .spawn()
            .expect("spawn beam-oci")
    }
    /// Wait for a spawned run; (exit code, stdout, stderr).
    fn wait(&self, mut c: Child, name: &str) -> (i32, String, String) {
        let code = c.wait().unwrap().code().unwrap_or(-1);
        let read = |ext: &str| std::fs::read_to_string(self.path().join(format!("{name}.{ext}"))).unwrap();
        (code, read("out"), read("err"))
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

fn sh(script: &str, userns: (u32, u32, u32)) -> Overrides {
    Overrides {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        userns: Some(userns),
        ..Overrides::default()
    }
}

fn uid(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).uid()
}

fn gid(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).gid()
}

#[test]
#[ignore = "needs root"]
fn container_root_maps_to_a_host_range_over_unshifted_layers() {
    require_root();
    let w = World::new("run");
    let img = w.busybox();
    let layer = w.store.layer_dir(&img.layers[0].diff_id);
    assert_eq!(uid(&layer.join("bin/busybox")), 0);
    let script = "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; touch /tmp/x && stat -c %u /tmp/x";
    let b = bundle::create(&w.store, &img, &w.path().join("b"), &sh(script, (100000, 100000, 65536))).unwrap();

    // The config states the maps (and joins the bound namespace by path, if so configured).
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(b.config_path()).unwrap()).unwrap();
    let user: Vec<_> = spec["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] == "user").collect();
    assert_eq!(user.len(), 1);
    if bundle::USERNS_JOIN_BY_PATH {
        assert_eq!(user[0]["path"], b.dir.join("userns").to_str().unwrap());
    } else {
        assert!(user[0].get("path").is_none(), "{}", user[0]);
    }
    assert_eq!(spec["linux"]["uidMappings"], serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    assert_eq!(spec["linux"]["gidMappings"], serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
    // Any process can join the bound namespace and finds the bundle's maps there.
    let out = Command::new("nsenter")
        .arg(format!("--user={}", b.dir.join("userns").display()))
        .args(["cat", "/proc/self/uid_map"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let map = String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect::<Vec<_>>();
            assert_eq!(map, ["0", "100000", "65536"]);
        }
        Ok(o) => panic!("nsenter --user: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("nsenter not available ({e}); not joining the bound namespace"),
    }
    // Only the overlay (and the namespace file) stay mounted: the idmapped lowers live on inside overlayfs.
    let mut mounts = w.mounts_below();
    mounts.sort();
    assert_eq!(mounts, [b.dir.join("rootfs").to_str().unwrap(), b.dir.join("userns").to_str().unwrap()]);
    assert_eq!((uid(&b.rootfs.upper), gid(&b.rootfs.upper)), (100000, 100000));
    assert_eq!((uid(&b.rootfs.work), gid(&b.rootfs.work)), (100000, 100000));

    let (code, out, err) = w.wait(w.spawn(&b, "c"), "c");
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines, [vec!["0", "100000", "65536"], vec!["0"], vec!["0"], vec!["0"]], "stderr: {err}");

    // On the host: the layer is untouched (owned by 0), the container's write is owned by the mapped root.
    assert_eq!(uid(&layer.join("bin/busybox")), 0);
    assert_eq!(uid(&layer.join("bin")), 0);
    assert_eq!((uid(&b.rootfs.upper.join("tmp/x")), gid(&b.rootfs.upper.join("tmp/x"))), (100000, 100000));
    // The host sees the merged tree through the idmapping too.
    assert_eq!(uid(&b.rootfs.merged.join("bin/busybox")), 100000);

    let dir = b.dir.clone();
    b.destroy().unwrap();
    assert!(!dir.exists());
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert_eq!(w.pins(), 0);
    assert!(layer.join("bin/busybox").is_file(), "the shared layer survives the bundle");
}

#[test]
#[ignore = "needs root"]
fn two_ranges_share_one_layer_dir_at_once() {
    require_root();
    let w = World::new("two");
    let img = w.busybox();
    let layer = w.store.layer_dir(&img.layers[0].diff_id);
    // Each container marks that it started, then waits for the test to see both marks (so both run at once).
    let script = "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox; touch /tmp/started; \
                  i=0; while [ ! -e /release ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
                  echo done > /tmp/y && stat -c %u /tmp/y";
    let ranges = [(100000, "a"), (200000, "b")];
    let bundles: Vec<_> = ranges
        .iter()
        .map(|&(base, name)| {
            bundle::create(&w.store, &img, &w.path().join(name), &sh(script, (base, base, 65536))).unwrap()
        })
        .collect();
    let children: Vec<_> = bundles.iter().zip(ranges).map(|(b, (_, name))| w.spawn(b, name)).collect();
    let started = |b: &bundle::Bundle| b.rootfs.upper.join("tmp/started").exists();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bundles.iter().all(started) {
        assert!(Instant::now() < deadline, "both containers should start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both run now, over the same layer dir, each seeing it owned by its own root.
    for (b, (base, _)) in bundles.iter().zip(ranges) {
        assert_eq!(uid(&b.rootfs.upper.join("tmp/started")), base);
        std::fs::write(b.rootfs.merged.join("release"), "").unwrap(); // through the overlay: no stale dentry
    }
    for ((b, child), (base, name)) in bundles.iter().zip(children).zip(ranges) {
        let (code, out, err) = w.wait(child, name);
        assert_eq!(code, 0, "{name}: stdout: {out}\nstderr: {err}");
        let lines: Vec<Vec<String>> = out.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect();
        let want: Vec<Vec<String>> = [
            vec!["0".to_string(), base.to_string(), "65536".into()],
            vec!["0".into()],
            vec!["0".into()],
            vec!["0".into()],
        ]
        .into();
        assert_eq!(lines, want, "{name}: stderr: {err}");
        assert_eq!(uid(&b.rootfs.upper.join("tmp/y")), base);
    }
    assert_eq!(uid(&layer.join("bin/busybox")), 0, "the shared layer stays unshifted");
    for b in bundles {
        b.destroy().unwrap();
    }
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert_eq!(w.pins(), 0);
}

/// `n` layer dirs, all owned by 0: layer i has `layer` = i and its own file `f<i>`.
fn make_layers(base: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let d = base.join(format!("layer-with-a-realistic-long-name-{i:04}-{}", "0123456789abcdef".repeat(3)));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("layer"), i.to_string()).unwrap();
            std::fs::write(d.join(format!("f{i}")), "x").unwrap();
            d
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn idmapped_rootfs_with_many_layers_both_methods() {
    require_root();
    let w = World::new("layers");
    let layers = make_layers(&w.path().join("layers"), 120);
    let ns = UserNs::new(&[(0, 300000, 65536)], &[(0, 310000, 65536)]).unwrap();
    let mut methods = vec![Method::Legacy];
    if rootfs::has_lowerdir_plus() {
        methods.push(Method::NewApi);
    }
    for (i, method) in methods.into_iter().enumerate() {
        for readonly in [false, true] {
            let dir = w.path().join(format!("c{i}{readonly}"));
            let idmap = Idmap { userns: ns.fd(), root_uid: 300000, root_gid: 310000 };
            let r = rootfs::mount_opts(&layers, &dir, readonly, method, Some(idmap))
                .unwrap_or_else(|e| panic!("{method:?} readonly={readonly}: {e}"));
            let canon = std::fs::canonicalize(&dir).unwrap();
            assert_eq!(rootfs::mounts_below(&canon), std::slice::from_ref(&r.merged), "only the overlay stays mounted");
            assert_eq!(std::fs::read_to_string(r.merged.join("layer")).unwrap(), "119");
            assert_eq!(uid(&r.merged.join("f0")), 300000);
            assert_eq!(gid(&r.merged.join("f7")), 310000);
            if !readonly {
                std::fs::write(r.merged.join("f3"), "changed").unwrap();
                assert_eq!(uid(&r.upper.join("f3")), 300000, "copy-up keeps the mapped owner");
                assert_eq!(uid(&r.merged), 300000, "the root dir belongs to the mapped root");
            }
            assert_eq!(
                (uid(&layers[3].join("f3")), std::fs::read_to_string(layers[3].join("f3")).unwrap()),
                (0, "x".into())
            );
            rootfs::unmount(&r).unwrap();
            rootfs::remove(&dir).unwrap();
            assert!(!dir.exists());
        }
    }
    assert!(w.mounts_below().is_empty(), "leaked mounts: {:?}", w.mounts_below());
    assert!(layers.iter().all(|l| l.join("layer").is_file()), "layers survive");
}

#[test]
#[ignore = "needs root"]
fn remove_never_deletes_through_an_attached_layer() {
    require_root();
    let w = World::new("guard");
    let layers = make_layers(&w.path().join("layers"), 1);
    let dir = w.path().join("c");
    // A mount left below a container dir (as after a crash between attaching and mounting the overlay).
    std::fs::create_dir_all(dir.join("other")).unwrap();
    nix::mount::mount(Some(&layers[0]), &dir.join("other"), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .unwrap();
    let e = rootfs::remove(&dir).unwrap_err().to_string();
    assert!(e.contains("still mounted"), "{e}");
    assert!(layers[0].join("f0").is_file(), "the layer must survive");
    nix::mount::umount2(&dir.join("other"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    rootfs::remove(&dir).unwrap();
    assert!(w.mounts_below().is_empty());
}
