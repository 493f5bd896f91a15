//! Filesystem snapshots through beamd: a running sandbox's changes committed as one layer on its image,
//! run again as an ordinary image (by id, by tag, from the CLI), with whiteouts, opaque dirs, owners
//! (shifted out of the sandbox's uid range and into the next one's), symlinks and fifos; the source keeps
//! running; bad input is a 4xx that makes no image. Root only.

mod common_beamd;
mod common_registry;
mod common_root;
use common_beamd::*;
use common_root::require_root;
use serde_json::json;
use std::process::Command;

fn image_ids(b: &Beamd) -> Vec<String> {
    let v = b.get("/v1/images").json();
    v["images"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

#[test]
#[ignore = "needs root"]
fn filesystem_snapshot_is_an_image_of_what_changed() {
    require_root();
    let b = Beamd::start("snapfs");
    let src = b.create(&json!({"image": "busybox", "name": "src"}))["id"].as_str().unwrap().to_string();
    let change = "mkdir -p /app/sub && echo v1 > /app/x && chown 1000:1000 /app/x && echo keep > /app/sub/y \
                  && ln -s /app/x /app/link && mkfifo /app/fifo && rm /bin/vi \
                  && rm -rf /usr/sbin && mkdir /usr/sbin && echo new > /usr/sbin/only";
    let o = b.sh(&src, change);
    assert_eq!(o.code(), 0, "{}", o.err());

    // Bad input: a clear 4xx, and no image made.
    let before = image_ids(&b);
    b.post("/v1/sandboxes/nope/snapshots/filesystem", &json!({})).api_error(404);
    let e = b.post(&format!("/v1/sandboxes/{src}/snapshots/filesystem"), &json!({"tag": "Bad Tag!"})).api_error(400);
    assert!(e.contains("tag"), "{e}");
    b.post(&format!("/v1/sandboxes/{src}/snapshots/filesystem"), &json!({"tags": "x"})).api_error(400);
    let stopped = b.create(&json!({"image": "busybox"}))["id"].as_str().unwrap().to_string();
    b.post(&format!("/v1/sandboxes/{stopped}/stop"), &json!({"grace_seconds": 1}));
    let e = b.post(&format!("/v1/sandboxes/{stopped}/snapshots/filesystem"), &json!({})).api_error(409);
    assert!(e.contains("not running"), "{e}");
    assert_eq!(image_ids(&b), before, "a refused snapshot made an image");

    // The snapshot: one small layer; the source is thawed and keeps running.
    let r = b.post(&format!("/v1/sandboxes/{src}/snapshots/filesystem"), &json!({"tag": "snaptest:v1"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let snap = r.json();
    let image = snap["image_id"].as_str().unwrap().to_string();
    assert!(image.starts_with("sha256:"), "{snap}");
    assert_eq!(snap["sandbox"], src.as_str());
    assert!(snap["names"][0].as_str().unwrap().ends_with("snaptest:v1"), "{snap}");
    assert!(snap["layer_size"].as_u64().unwrap() < 64 << 10, "the layer holds only the change: {snap}");
    assert!(image_ids(&b).contains(&image));
    assert_eq!(b.sh(&src, "echo alive").out(), "alive\n");

    // A new sandbox from it sees exactly the change on top of busybox, owners as they were inside.
    let check = "cat /app/x; stat -c %u:%g /app/x; cat /app/sub/y; readlink /app/link; test -p /app/fifo; echo fifo=$?; \
                 test -e /bin/vi; echo vi=$?; ls /usr/sbin; ls /bin/sh";
    let want = "v1\n1000:1000\nkeep\n/app/x\nfifo=0\nvi=1\nonly\n/bin/sh\n";
    let copy = b.create(&json!({"image": image}))["id"].as_str().unwrap().to_string();
    let o = b.sh(&copy, check);
    assert_eq!(o.out(), want, "{}", o.err());
    let by_tag = b.create(&json!({"image": "snaptest:v1"}))["id"].as_str().unwrap().to_string();
    assert_eq!(b.sh(&by_tag, check).out(), want);

    // Independent: a write in the copy is not seen by the source, nor one in the source by the copy.
    b.sh(&copy, "echo copy > /app/x");
    b.sh(&src, "echo src > /app/sub/y");
    assert_eq!(b.sh(&src, "cat /app/x").out(), "v1\n");
    assert_eq!(b.sh(&copy, "cat /app/sub/y").out(), "keep\n");

    // The CLI: prints the new image's id.
    let out = b.beam().args(["snapshot", "fs", "src", "--tag", "snaptest:v2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id2 = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(id2.starts_with("sha256:") && id2 != image, "{id2}");
    assert!(image_ids(&b).contains(&id2));

    // An ordinary image: pushed from beamd's store to a registry, pulled into another store, it runs there.
    if !std::path::Path::new(common_registry::REGISTRY_BIN).exists() {
        eprintln!("skipped the push: {} is not installed (apt-get install docker-registry)", common_registry::REGISTRY_BIN);
        return;
    }
    let reg = common_registry::Registry::start();
    let reference = format!("{}/snap/app:1", reg.addr);
    let beam = |root: &std::path::Path, args: &[&str]| {
        let out = Command::new(beam_bin()).arg("--root").arg(root).args(args).output().unwrap();
        assert!(out.status.success(), "beam {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    beam(&b.root, &["image", "push", "-q", &image, &reference]);
    let other = tempfile::tempdir().unwrap();
    beam(other.path(), &["image", "pull", "-q", &reference]);
    let out = beam(other.path(), &["image", "run", &reference, "--", "sh", "-c", "cat /app/x; stat -c %u /app/x; ls /usr/sbin"]);
    assert_eq!(out, "v1\n1000\nonly\n");
}
