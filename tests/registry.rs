//! Registry pull/push against a real local `docker-registry`, and OCI layout / oci-archive /
//! docker-archive import. Every test starts its own registry on 127.0.0.1 and uses temp stores. Root only
//! (`#[ignore = "needs root"]`): unpacking a layer gives its files their owners (chown).

mod common_registry;
mod common_root;

use beam::image::archive;
use beam::image::digest::Digest;
use beam::image::registry::{self, PullOptions, PushOptions, RegistryError};
use beam::image::store::ImageRecord;
use common_registry::{Comp, ImageSpec, Registry, blob_names, make_image, path_str, temp_store};
use common_root::require_root;
use serde_json::json;
use std::time::{Duration, Instant};

fn quiet() -> PullOptions {
    PullOptions {
        quiet: true,
        ..Default::default()
    }
}

fn quiet_push() -> PushOptions {
    PushOptions {
        quiet: true,
        ..Default::default()
    }
}

fn same_content(a: &ImageRecord, b: &ImageRecord) {
    assert_eq!(a.manifest, b.manifest);
    assert_eq!(a.id, b.id);
    assert_eq!(a.manifest_media_type, b.manifest_media_type);
    assert_eq!(a.layers, b.layers);
}

#[test]
#[ignore = "needs root"]
fn push_then_pull_by_tag_and_digest() {
    require_root();
    require_registry!();
    let reg = Registry::start();
    let (a, _da) = temp_store();
    let (local, _) = make_image(&a, &ImageSpec::new("beam.local/bb:1"));
    let target = format!("{}/test/busybox:v1", reg.addr);
    let pushed = registry::push(&a, "beam.local/bb:1", &target, &quiet_push()).unwrap();
    assert_eq!(pushed, local.manifest);
    // Pushing again finds every blob there already.
    assert_eq!(
        registry::push(&a, &local.id.to_string(), &target, &quiet_push()).unwrap(),
        local.manifest
    );

    let (b, _db) = temp_store();
    let got = registry::pull(&b, &target, &quiet()).unwrap();
    same_content(&local, &got);
    assert_eq!(got.names, vec![target.clone()]);
    assert_eq!(
        b.read_blob(&got.manifest).unwrap(),
        a.read_blob(&local.manifest).unwrap()
    );
    for l in &got.layers {
        assert!(b.has_blob(&l.blob));
    }

    // By digest, into a third store; and again into the second (everything is there: no downloads).
    let by_digest = format!("{}/test/busybox@{}", reg.addr, local.manifest);
    let (c, _dc) = temp_store();
    let got = registry::pull(&c, &by_digest, &quiet()).unwrap();
    same_content(&local, &got);
    assert!(got.names.contains(&by_digest), "{:?}", got.names);
    let again = registry::pull(&b, &by_digest, &quiet()).unwrap();
    same_content(&local, &again);
}

#[test]
#[ignore = "needs root"]
fn docker_media_types_zstd_and_plain_layers() {
    require_root();
    require_registry!();
    let reg = Registry::start();
    let (a, _da) = temp_store();
    for (name, docker_types) in [("beam.local/oci3:1", false), ("beam.local/docker3:1", true)] {
        let mut spec = ImageSpec::new(name);
        spec.docker_types = docker_types;
        spec.layers = vec![
            (Comp::Zstd, "one", "1\n"),
            (Comp::None, "two", "2\n"),
            (Comp::Gzip, "three", "3\n"),
        ];
        let (local, _) = make_image(&a, &spec);
        let target = format!(
            "{}/test/layers:{}",
            reg.addr,
            if docker_types { "docker" } else { "oci" }
        );
        assert_eq!(
            registry::push(&a, name, &target, &quiet_push()).unwrap(),
            local.manifest
        );
        let (b, _db) = temp_store();
        let got = registry::pull(&b, &target, &quiet()).unwrap();
        same_content(&local, &got);
        let types: Vec<&str> = got.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert!(
            types[0].ends_with("zstd") && types[1].ends_with(".tar") && types[2].ends_with("gzip"),
            "{types:?}"
        );
        for l in &got.layers {
            assert!(b.has_layer(&l.diff_id), "layer {} not unpacked", l.diff_id);
        }
    }
}

#[test]
#[ignore = "needs root"]
fn index_resolves_to_host_platform() {
    require_root();
    require_registry!();
    let reg = Registry::start();
    let (a, _da) = temp_store();
    let other_arch = if common_registry::host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mut host_spec = ImageSpec::new("beam.local/multi:host");
    host_spec.layers = vec![(Comp::Gzip, "arch", "host\n")];
    let (host, host_m) = make_image(&a, &host_spec);
    let mut other_spec = ImageSpec::new("beam.local/multi:other");
    other_spec.arch = other_arch;
    other_spec.layers = vec![(Comp::Gzip, "arch", "other\n")];
    let (other, other_m) = make_image(&a, &other_spec);
    let repo = format!("{}/test/multi", reg.addr);
    registry::push(
        &a,
        "beam.local/multi:host",
        &format!("{repo}:host"),
        &quiet_push(),
    )
    .unwrap();
    registry::push(
        &a,
        "beam.local/multi:other",
        &format!("{repo}:other"),
        &quiet_push(),
    )
    .unwrap();

    for (index_type, entry_type, tag) in [
        (
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "oci",
        ),
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "list",
        ),
    ] {
        let entry = |m: &[u8], arch: &str| {
            json!({"mediaType": entry_type, "digest": Digest::of(m).to_string(), "size": m.len(),
                   "platform": {"architecture": arch, "os": "linux"}})
        };
        // Other arch first, so a resolver that takes the first entry fails.
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": index_type,
            "manifests": [entry(&other_m, other_arch), entry(&host_m, common_registry::host_arch())]}))
        .unwrap();
        let code = common_registry::http_put(
            &reg.addr,
            &format!("/v2/test/multi/manifests/{tag}"),
            index_type,
            &index,
        );
        assert_eq!(code, 201, "{}", reg.log());

        let (b, _db) = temp_store();
        let got = registry::pull(&b, &format!("{repo}:{tag}"), &quiet()).unwrap();
        same_content(&host, &got);
        let opts = PullOptions {
            platform: Some(format!("linux/{other_arch}")),
            ..quiet()
        };
        let got = registry::pull(&b, &format!("{repo}:{tag}"), &opts).unwrap();
        same_content(&other, &got);
        let opts = PullOptions {
            platform: Some("linux/s390x".into()),
            ..quiet()
        };
        let err = registry::pull(&b, &format!("{repo}:{tag}"), &opts).unwrap_err();
        eprintln!("{err}");
        assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
        assert!(err.to_string().contains("linux/s390x"), "{err}");
    }
}

#[test]
#[ignore = "needs root"]
fn missing_tag_and_unreachable_registry_are_clear_errors() {
    require_root();
    require_registry!();
    let reg = Registry::start();
    let (a, _da) = temp_store();
    make_image(&a, &ImageSpec::new("beam.local/bb:1"));
    registry::push(
        &a,
        "beam.local/bb:1",
        &format!("{}/test/bb:1", reg.addr),
        &quiet_push(),
    )
    .unwrap();

    let (b, _db) = temp_store();
    for missing in [
        format!("{}/test/bb:nope", reg.addr),
        format!("{}/test/nothing:1", reg.addr),
    ] {
        let err = registry::pull(&b, &missing, &quiet()).unwrap_err();
        eprintln!("{err}");
        assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("not found"), "{err}");
    }
    assert!(b.images().unwrap().is_empty());
    assert!(blob_names(&b).is_empty());

    // Nothing listens on a port we just closed; the error says so, after a few quick retries.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let err = registry::pull(&b, &format!("127.0.0.1:{port}/x:1"), &quiet()).unwrap_err();
    eprintln!("{err} ({:?})", t.elapsed());
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot reach registry"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let err = registry::push(
        &a,
        "beam.local/bb:1",
        &format!("127.0.0.1:{port}/x:1"),
        &quiet_push(),
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert!(b.images().unwrap().is_empty());

    // The synchronous API also works from inside an async runtime (it moves to a helper thread).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(async { registry::pull(&b, &format!("{}/test/bb:nope", reg.addr), &quiet()) })
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");

    // Neither does a local name.
    let err = registry::pull(&b, "beam.local/bb:1", &quiet()).unwrap_err();
    assert!(matches!(err, RegistryError::Unsupported { .. }), "{err:?}");

    // A bad reference never reaches the network.
    assert!(matches!(
        registry::pull(&b, "Not A Ref", &quiet()).unwrap_err(),
        RegistryError::Reference(_)
    ));
}

#[test]
#[ignore = "needs root"]
fn corrupt_blob_in_registry_is_detected() {
    require_root();
    require_registry!();
    let reg = Registry::start();
    let (a, _da) = temp_store();
    let (local, _) = make_image(&a, &ImageSpec::new("beam.local/bb:1"));
    let target = format!("{}/test/corrupt:1", reg.addr);
    registry::push(&a, "beam.local/bb:1", &target, &quiet_push()).unwrap();
    let layer = &local.layers[0].blob;
    let data = reg.blob_data(layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let (b, _db) = temp_store();
    let err = registry::pull(&b, &target, &quiet()).unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&layer.to_string()), "{err}");
    assert!(b.images().unwrap().is_empty());
    assert!(!b.has_blob(layer));
    assert!(!b.has_blob(&local.manifest));
}

#[test]
#[ignore = "needs root"]
fn basic_auth_with_flags_and_docker_config() {
    require_root();
    require_registry!();
    let Some(reg) = Registry::start_with_auth("beam", "s3cret") else {
        eprintln!("skipped: no bcrypt implementation (python3 crypt) to write the htpasswd file");
        return;
    };
    let (a, _da) = temp_store();
    let (local, _) = make_image(&a, &ImageSpec::new("beam.local/bb:1"));
    let target = format!("{}/private/bb:1", reg.addr);

    let err = registry::push(&a, "beam.local/bb:1", &target, &quiet_push()).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let wrong = PushOptions {
        username: Some("beam".into()),
        password: Some("nope".into()),
        ..quiet_push()
    };
    let err = registry::push(&a, "beam.local/bb:1", &target, &wrong).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let creds = PushOptions {
        username: Some("beam".into()),
        password: Some("s3cret".into()),
        ..quiet_push()
    };
    assert_eq!(
        registry::push(&a, "beam.local/bb:1", &target, &creds).unwrap(),
        local.manifest
    );

    let (b, _db) = temp_store();
    let err = registry::pull(&b, &target, &quiet()).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    // Credentials from a docker config.json: base64("beam:s3cret").
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YmVhbTpzM2NyZXQ="}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let opts = PullOptions {
        docker_config: Some(cfg),
        ..quiet()
    };
    same_content(&local, &registry::pull(&b, &target, &opts).unwrap());
}

#[test]
#[ignore = "needs root"]
fn import_oci_layout_oci_archive_and_docker_archive() {
    require_root();
    require_registry!();
    let (a, _da) = temp_store();
    let mut spec = ImageSpec::new("beam.local/imp:1");
    // A layer over the archive reader's in-memory limit, so it is streamed in the second pass.
    let big = "0123456789abcdef".repeat(6 << 16);
    spec.layers = vec![
        (Comp::Gzip, "base", "base\n"),
        (Comp::None, "big", &big),
        (Comp::Gzip, "top", "top\n"),
    ];
    let (local, _) = make_image(&a, &spec);
    let work = tempfile::tempdir().unwrap();

    // Our own export, imported back (no external tools).
    let layout = work.path().join("layout");
    archive::export_oci_layout(&a, "beam.local/imp:1", &layout).unwrap();
    let (b, _db) = temp_store();
    let got = archive::import(&b, &layout, None).unwrap();
    assert_eq!(got.len(), 1);
    same_content(&local, &got[0]);
    assert_eq!(got[0].names, vec!["beam.local/imp:1".to_string()]);
    let renamed = archive::import(&b, &layout, Some("example.com/renamed:2")).unwrap();
    assert!(
        renamed[0]
            .names
            .contains(&"example.com/renamed:2".to_string()),
        "{:?}",
        renamed[0].names
    );
    assert!(matches!(
        archive::import(&b, work.path(), None).unwrap_err(),
        archive::ArchiveError::UnknownFormat { .. }
    ));

    if !std::path::Path::new(common_registry::SKOPEO).exists() {
        eprintln!(
            "skipped the skopeo-made archives: {} is not installed",
            common_registry::SKOPEO
        );
        return;
    }
    let reg = Registry::start();
    let src = format!("docker://{}/test/imp:1", reg.addr);
    registry::push(
        &a,
        "beam.local/imp:1",
        &format!("{}/test/imp:1", reg.addr),
        &quiet_push(),
    )
    .unwrap();
    let dir = work.path().join("skopeo-layout");
    let oci_tar = work.path().join("imp-oci.tar");
    let docker_tar = work.path().join("imp-docker.tar");
    // (Keep the uncompressed layer as it is, so the manifest stays the same.)
    let keep = "--dest-oci-accept-uncompressed-layers";
    common_registry::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        keep,
        &src,
        &format!("oci:{}:v1", path_str(&dir)),
    ]);
    let oci_dest = format!("oci-archive:{}:v1", path_str(&oci_tar));
    common_registry::skopeo(&["copy", "--src-tls-verify=false", keep, &src, &oci_dest]);
    common_registry::skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &src,
        &format!(
            "docker-archive:{}:example.com/saved:3",
            path_str(&docker_tar)
        ),
    ]);

    // OCI layout dir and oci-archive: the very same manifest; named from the file name and ref tag.
    for (path, name) in [
        (&dir, "beam.local/skopeo-layout:v1"),
        (&oci_tar, "beam.local/imp-oci:v1"),
    ] {
        let (s, _ds) = temp_store();
        let got = archive::import(&s, path, None).unwrap();
        assert_eq!(got.len(), 1, "{path:?}");
        same_content(&local, &got[0]);
        assert_eq!(got[0].names, vec![name.to_string()]);
        let err = archive::import(&s, path, Some("nope")).map(|_| ());
        assert!(err.is_ok(), "a single image takes any name: {err:?}");
    }

    // docker-archive: same config and diff ids; layers become uncompressed OCI tar blobs.
    let (s, _ds) = temp_store();
    let got = archive::import(&s, &docker_tar, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, local.id);
    assert_eq!(got[0].names, vec!["example.com/saved:3".to_string()]);
    let diff_ids: Vec<_> = got[0].layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(
        diff_ids,
        local
            .layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>()
    );
    for l in &got[0].layers {
        assert_eq!(l.blob, l.diff_id);
        assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar");
        assert!(s.has_layer(&l.diff_id));
    }
    // Importing it again changes nothing; a name that isn't in a multi-image archive would be an error,
    // but with one image the name is given to it.
    let again = archive::import(&s, &docker_tar, None).unwrap();
    assert_eq!(again[0].manifest, got[0].manifest);

    // A gzip-compressed docker-archive imports the same.
    let gz = work.path().join("imp-docker.tar.gz");
    std::fs::write(
        &gz,
        common_registry::compress(&std::fs::read(&docker_tar).unwrap(), Comp::Gzip),
    )
    .unwrap();
    let (s2, _ds2) = temp_store();
    assert_eq!(
        archive::import(&s2, &gz, None).unwrap()[0].manifest,
        got[0].manifest
    );
}
