//! Store round trips on the real file system, with images built in memory. Adding an image unpacks its
//! layers, which gives their files their owners (chown): those tests are `#[ignore = "needs root"]`.

use super::*;
use crate::image::unpack::tests::Tar;
use crate::test_support::require_root;
use std::io::Write as _;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZST: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Put an image made of `layers` (uncompressed tar, media type) into `store`; returns the manifest digest.
/// `diff_ids` overrides the config's diff ids.
fn put_image(store: &Store, layers: &[(Vec<u8>, &str)], diff_ids: Option<Vec<String>>, manifest_type: &str) -> Digest {
    let mut descs = Vec::new();
    let mut ids = Vec::new();
    for (tar, mt) in layers {
        let blob = if *mt == ZST { zstd::encode_all(&tar[..], 3).unwrap() } else { gzip(tar) };
        let d = store.put_blob_bytes(&blob).unwrap();
        descs.push(serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": blob.len()}));
        ids.push(Digest::of(tar).to_string());
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.unwrap_or(ids)},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = store.put_blob_bytes(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    });
    store.put_blob_bytes(&serde_json::to_vec(&manifest).unwrap()).unwrap()
}

fn base_layer() -> Vec<u8> {
    Tar::new().dir("bin/", 0o755).file("bin/sh", 0o755, b"#!shell").file("etc/os-release", 0o644, b"ID=test").finish()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn tmp_is_empty(store: &Store) -> bool {
    std::fs::read_dir(store.root().join("tmp")).unwrap().next().is_none()
}

#[test]
fn blobs_are_verified() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let (d, n) = store.put_blob(&mut &b"hello"[..], Some(&Digest::of(b"hello"))).unwrap();
    assert_eq!((d.clone(), n), (Digest::of(b"hello"), 5));
    assert_eq!(store.read_blob(&d).unwrap(), b"hello");

    let wrong = Digest::of(b"other");
    let err = store.put_blob(&mut &b"tampered"[..], Some(&wrong)).unwrap_err();
    assert!(matches!(&err, StoreError::DigestMismatch { expected, .. } if *expected == wrong), "{err}");
    assert!(!store.has_blob(&wrong) && !store.has_blob(&Digest::of(b"tampered")));
    assert!(tmp_is_empty(&store));
    assert!(matches!(store.read_blob(&wrong), Err(StoreError::BlobMissing(_))));
}

#[test]
#[ignore = "needs root"]
fn add_image_unpacks_gzip_and_zstd_layers() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let top = Tar::new().file("app/main.py", 0o644, b"print(1)").file(".wh.etc", 0o644, b"").finish();
    let m = put_image(&store, &[(base_layer(), GZ), (top.clone(), ZST)], None, OCI_MANIFEST);
    let rec = store.add_image(&m, &names(&["beam.local/app:latest"])).unwrap();

    assert_eq!(rec.manifest, m);
    assert_eq!(rec.manifest_media_type, OCI_MANIFEST);
    assert_eq!(rec.names, names(&["beam.local/app:latest"]));
    assert_eq!(rec.layers.len(), 2);
    assert_eq!(rec.layers[1].media_type, ZST);
    assert_eq!(rec.layers[1].diff_id, Digest::of(&top));
    let base = store.layer_dir(&rec.layers[0].diff_id);
    assert_eq!(std::fs::read(base.join("bin/sh")).unwrap(), b"#!shell");
    assert_eq!(std::fs::read(store.layer_dir(&rec.layers[1].diff_id).join("app/main.py")).unwrap(), b"print(1)");
    assert_eq!(store.config(&rec).unwrap().config().as_ref().unwrap().cmd().as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(store.images().unwrap(), vec![rec.clone()]);
    assert!(tmp_is_empty(&store));

    // Adding it again (another name) keeps one record with both names and unpacks nothing new.
    let again = store.add_image(&m, &names(&["beam.local/app:v2"])).unwrap();
    assert_eq!(again.names, names(&["beam.local/app:latest", "beam.local/app:v2"]));
    assert_eq!(again.added, rec.added);
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
#[ignore = "needs root"]
fn docker_manifests_are_accepted() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let m = put_image(
        &store,
        &[(base_layer(), "application/vnd.docker.image.rootfs.diff.tar.gzip")],
        None,
        DOCKER_MANIFEST,
    );
    let rec = store.add_image(&m, &[]).unwrap();
    assert_eq!(rec.manifest_media_type, DOCKER_MANIFEST);
    assert!(store.has_layer(&rec.layers[0].diff_id));
    assert!(rec.names.is_empty());
    assert_eq!(store.resolve(&rec.id.to_string()).unwrap(), rec);
}

#[test]
#[ignore = "needs root"]
fn wrong_diff_id_is_refused_and_leaves_nothing() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let layer = base_layer();
    let bogus = Digest::of(b"not the layer");
    let m = put_image(&store, &[(layer.clone(), GZ)], Some(vec![bogus.to_string()]), OCI_MANIFEST);
    let err = store.add_image(&m, &names(&["x/y:z"])).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{msg}");
    let blob = Digest::of(&gzip(&layer));
    assert!(msg.contains(&blob.to_string()) && msg.contains(&bogus.to_string()), "{msg}");
    assert!(!store.has_layer(&bogus) && !store.has_layer(&Digest::of(&layer)));
    assert!(tmp_is_empty(&store));
    assert!(store.images().unwrap().is_empty());

    // A blob that is not what its media type says: an error naming the blob and the cause.
    let plain = base_layer();
    let d = store.put_blob_bytes(&plain).unwrap();
    let err = store.unpack_layer(&d, "application/vnd.oci.image.layer.v1.tar+bzip2", None).unwrap_err();
    assert!(matches!(&err, StoreError::Unpack { blob, source: UnpackError::Unsupported(_) } if *blob == d), "{err}");
    let mut gz = gzip(&plain);
    gz.truncate(gz.len() / 2);
    let d = store.put_blob_bytes(&gz).unwrap();
    let err = store.unpack_layer(&d, GZ, None).unwrap_err();
    assert!(err.to_string().contains(&d.to_string()), "{err}");
    assert!(tmp_is_empty(&store));
    assert_eq!(std::fs::read_dir(store.root().join("layers")).unwrap().count(), 0);

    // A layer count that disagrees with the config.
    let m = put_image(&store, &[(layer, GZ)], Some(vec![]), OCI_MANIFEST);
    assert!(matches!(store.add_image(&m, &[]), Err(StoreError::Invalid(_))));
}

#[test]
#[ignore = "needs root"]
fn resolve_tag_and_remove() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let m1 = put_image(&store, &[(base_layer(), GZ)], None, OCI_MANIFEST);
    let a = store.add_image(&m1, &names(&["beam.local/busybox:latest", "docker.io/library/alpine:3.20"])).unwrap();
    let other = Tar::new().file("x", 0o644, b"x").finish();
    let m2 = put_image(&store, &[(base_layer(), GZ), (other, GZ)], None, OCI_MANIFEST);
    let b = store.add_image(&m2, &names(&["127.0.0.1:5000/busybox:latest"])).unwrap();

    let id = |r: &str| store.resolve(r).map(|rec| rec.id);
    assert_eq!(id("beam.local/busybox:latest").unwrap(), a.id);
    assert_eq!(id(&format!("docker.io/library/alpine@{m1}")).unwrap(), a.id);
    assert_eq!(id(&format!("alpine@{m1}")).unwrap(), a.id);
    assert!(matches!(id(&format!("alpine@{m2}")), Err(StoreError::NotFound(_))));
    assert_eq!(id(&a.id.to_string()).unwrap(), a.id);
    assert_eq!(id(&b.id.hex()[..12]).unwrap(), b.id);
    assert_eq!(id("alpine:3.20").unwrap(), a.id);
    assert_eq!(id("library/alpine:3.20").unwrap(), a.id);
    assert!(matches!(id("alpine"), Err(StoreError::NotFound(_)))); // no alpine:latest
    assert!(matches!(id("busybox"), Err(StoreError::Ambiguous { .. })));
    assert!(matches!(id("nothing"), Err(StoreError::NotFound(_))));
    assert!(matches!(id(&a.id.hex()[..3]), Err(StoreError::NotFound(_))));

    // Moving a name: b takes busybox from a; a keeps alpine.
    store.tag(&b, "beam.local/busybox:latest").unwrap();
    assert_eq!(id("busybox").unwrap(), b.id); // two of b's names, one image
    assert!(matches!(store.remove("busybox"), Err(StoreError::Invalid(_))));
    assert_eq!(id("beam.local/busybox:latest").unwrap(), b.id);
    assert_eq!(store.resolve(&a.id.to_string()).unwrap().names, names(&["docker.io/library/alpine:3.20"]));

    // By id with several names: refused; by name: untag, then the record goes with its last name.
    assert!(matches!(store.remove(&b.id.to_string()), Err(StoreError::Invalid(_))));
    store.remove("127.0.0.1:5000/busybox:latest").unwrap();
    assert_eq!(id("busybox").unwrap(), b.id);
    store.remove("busybox").unwrap();
    assert!(matches!(id(&b.id.to_string()), Err(StoreError::NotFound(_))));
    store.remove(&a.id.hex()[..8]).unwrap();
    assert!(store.images().unwrap().is_empty());
    assert!(matches!(store.remove("alpine:3.20"), Err(StoreError::NotFound(_))));
    // Layers stay until gc.
    assert!(store.has_layer(&a.layers[0].diff_id));
}

#[test]
#[ignore = "needs root"]
fn gc_keeps_referenced_and_pinned() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let own_a = Tar::new().file("a", 0o644, b"a").finish();
    let own_b = Tar::new().file("b", 0o644, &[b'b'; 5000]).finish();
    let a = store
        .add_image(&put_image(&store, &[(base_layer(), GZ), (own_a, GZ)], None, OCI_MANIFEST), &names(&["r/a:1"]))
        .unwrap();
    let b = store
        .add_image(&put_image(&store, &[(base_layer(), GZ), (own_b, ZST)], None, OCI_MANIFEST), &names(&["r/b:1"]))
        .unwrap();
    let stray = store.put_blob_bytes(b"stray").unwrap();
    std::fs::create_dir(store.root().join("layers/not-a-digest")).unwrap();

    let nothing = store.gc().unwrap();
    assert_eq!((nothing.blobs, nothing.layers), (1, 0));
    assert!(!store.has_blob(&stray));

    store.pin("sandbox-1", &[b.layers[1].diff_id.clone()]).unwrap();
    store.remove("r/b:1").unwrap();
    let r = store.gc().unwrap();
    // b's manifest, config and own layer blob go; its own layer dir is pinned; the shared base stays.
    assert_eq!((r.blobs, r.layers), (3, 0));
    assert!(r.bytes > 0);
    assert!(store.has_layer(&b.layers[1].diff_id) && store.has_layer(&b.layers[0].diff_id));
    assert!(!store.has_blob(&b.manifest) && !store.has_blob(&b.layers[1].blob));
    for d in [&a.manifest, &a.id, &a.layers[0].blob, &a.layers[1].blob] {
        assert!(store.has_blob(d), "{d}");
    }

    store.unpin("sandbox-1").unwrap();
    store.unpin("sandbox-1").unwrap(); // idempotent
    let r = store.gc().unwrap();
    assert_eq!((r.blobs, r.layers), (0, 1));
    assert!(r.bytes >= 5000, "{r:?}");
    assert!(!store.has_layer(&b.layers[1].diff_id));
    assert!(store.has_layer(&a.layers[0].diff_id) && store.has_layer(&a.layers[1].diff_id));
    assert!(store.root().join("layers/not-a-digest").exists());
    assert!(matches!(store.pin("../x", &[]), Err(StoreError::Invalid(_))));
}

#[test]
fn open_removes_leftovers_of_crashed_writers() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let tmp = t.path().join("tmp");
    std::fs::write(tmp.join("blob-crashed"), b"half a blob").unwrap();
    std::fs::create_dir_all(tmp.join("layer-crashed/usr/bin")).unwrap();
    let live = store.tmp_file("blob", None).unwrap(); // a writer still at work (flocked)
    let store = Store::open(t.path()).unwrap();
    assert!(!tmp.join("blob-crashed").exists() && !tmp.join("layer-crashed").exists());
    assert!(live.path.exists());
    drop(live);
    Store::open(t.path()).unwrap();
    assert!(tmp_is_empty(&store));
}

#[test]
#[ignore = "needs root"]
fn concurrent_adds_unpack_each_layer_once() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let layers: Vec<(Vec<u8>, &str)> =
        (0..6).map(|i| (Tar::new().file(&format!("f{i}"), 0o644, &vec![i as u8; 200_000]).finish(), GZ)).collect();
    let m = put_image(&store, &layers, None, OCI_MANIFEST);
    let recs: Vec<ImageRecord> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                s.spawn({
                    let store = &store;
                    let m = &m;
                    move || store.add_image(m, &names(&[&format!("r/x:{i}")])).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(recs.iter().all(|r| r.id == recs[0].id));
    assert_eq!(store.resolve("r/x:0").unwrap().names.len(), 3);
    assert_eq!(std::fs::read_dir(store.root().join("layers")).unwrap().count(), 6);
    assert!(tmp_is_empty(&store));
}
