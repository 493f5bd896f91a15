use super::*;

#[test]
fn paths() {
    assert_eq!(norm("./a/b/").as_deref(), Some("a/b"));
    assert_eq!(norm("a/../b").as_deref(), Some("b"));
    assert_eq!(norm("../x"), None);
    let c = Ctx {
        path: "/tmp/My_Busybox.oci.tar".into(),
    };
    assert_eq!(c.local_name("1.0"), "beam.local/my-busybox:1.0");
}

#[test]
fn magic() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, b"hello").unwrap();
    let gz = gz.finish().unwrap();
    let zs = zstd::encode_all(&b"hello"[..], 1).unwrap();
    for input in [&b"hello"[..], &gz, &zs] {
        let mut s = String::new();
        decompressed(input).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
