//! Base layers made on the host: `busybox` (one layer from the host's busybox-static, built in memory,
//! no network) and `debootstrap:<suite>` (a minbase Debian from the mirror the host's apt uses).

use super::RecipeError;
use super::layer::{LayerWriter, TreeOptions, append_tree};
use crate::image::store::{LayerRecord, Store};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the host's busybox-static lives.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

fn base_err(base: &str, msg: impl std::fmt::Display) -> RecipeError {
    RecipeError::Base { base: base.into(), msg: msg.to_string() }
}

/// The host busybox's bytes (the cache key hashes them, so a busybox upgrade rebuilds).
pub fn read_busybox() -> Result<Vec<u8>, RecipeError> {
    std::fs::read(HOST_BUSYBOX).map_err(|e| {
        base_err("busybox", format!("{HOST_BUSYBOX}: {e}; install busybox-static (apt-get install busybox-static)"))
    })
}

/// One layer: bin/busybox, a relative symlink per applet where `busybox --list-full` puts it, /etc/passwd
/// and /etc/group, and the usual empty dirs. Every entry gets busybox's mtime: same binary, same layer.
pub fn busybox_layer(store: &Store, bytes: &[u8], tmp: &Path) -> Result<LayerRecord, RecipeError> {
    let out = Command::new(HOST_BUSYBOX)
        .arg("--list-full")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| base_err("busybox", format!("running {HOST_BUSYBOX} --list-full: {e}")))?;
    if !out.status.success() {
        return Err(base_err(
            "busybox",
            format!("{HOST_BUSYBOX} --list-full failed ({}): is it busybox-static?", out.status),
        ));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| l.contains('/') && !l.ends_with("/busybox") && !l.split('/').any(|c| c.is_empty() || c == ".."))
        .collect();
    applets.sort();
    applets.dedup();
    let mtime = std::fs::metadata(HOST_BUSYBOX).map(|m| m.mtime().max(0) as u64).unwrap_or(0);
    let mut w = LayerWriter::create(tmp)?;
    let ctx = |e: std::io::Error| base_err("busybox", format!("writing the layer: {e}"));
    let mut dirs: Vec<(String, u32)> = [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("home", 0o755),
    ]
    .iter()
    .map(|(d, m)| (d.to_string(), *m))
    .collect();
    for a in &applets {
        for d in Path::new(a).ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
            let d = d.to_string_lossy().into_owned();
            if !dirs.iter().any(|(x, _)| *x == d) {
                dirs.push((d, 0o755));
            }
        }
    }
    dirs.sort();
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for (d, mode) in &dirs {
        w.tar.append_data(&mut header(tar::EntryType::Directory, *mode, 0), d, std::io::empty()).map_err(ctx)?;
    }
    w.tar
        .append_data(&mut header(tar::EntryType::Regular, 0o755, bytes.len() as u64), "bin/busybox", bytes)
        .map_err(ctx)?;
    for (path, text) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        w.tar
            .append_data(&mut header(tar::EntryType::Regular, 0o644, text.len() as u64), path, text.as_bytes())
            .map_err(ctx)?;
    }
    for a in &applets {
        let depth = a.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        w.tar.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), a, &target).map_err(ctx)?;
    }
    w.finish(store)
}

/// The Debian mirror the host's apt uses: the first `deb` source (deb822 `.sources` first, then
/// sources.list) that serves `suite`, else the first non-security one, else deb.debian.org.
pub fn host_mirror(suite: &str) -> String {
    let mut sources: Vec<(String, Vec<String>)> = Vec::new(); // (uri, suites)
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sources"))
        .collect();
    files.sort();
    for f in files {
        sources.extend(parse_deb822(&std::fs::read_to_string(f).unwrap_or_default()));
    }
    sources.extend(parse_sources_list(&std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()));
    pick_mirror(&sources, suite)
}

fn pick_mirror(sources: &[(String, Vec<String>)], suite: &str) -> String {
    let ok = |u: &String| u.starts_with("http://") || u.starts_with("https://");
    sources
        .iter()
        .find(|(u, s)| ok(u) && s.iter().any(|x| x == suite))
        .or_else(|| {
            sources.iter().find(|(u, s)| ok(u) && !u.contains("security") && !s.iter().any(|x| x.contains("security")))
        })
        .map_or_else(|| "http://deb.debian.org/debian".into(), |(u, _)| u.clone())
}

fn parse_deb822(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Vec<String> {
            stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v))
                .map_or(Vec::new(), |v| v.split_whitespace().map(String::from).collect())
        };
        if !field("Types").iter().any(|t| t == "deb") || field("Enabled").iter().any(|e| e == "no") {
            continue;
        }
        let suites = field("Suites");
        for u in field("URIs") {
            out.push((u, suites.clone()));
        }
    }
    out
}

fn parse_sources_list(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            if words.next()? != "deb" {
                return None;
            }
            let mut w = words.next()?;
            if w.starts_with('[') {
                while !w.ends_with(']') {
                    w = words.next()?;
                }
                w = words.next()?;
            }
            Some((w.to_string(), vec![words.next()?.to_string()]))
        })
        .collect()
}

/// Unmounts whatever is still mounted under a dir (debootstrap mounts proc/sys in its target and may
/// die before unmounting), then removes the dir.
struct TargetGuard(PathBuf);

impl Drop for TargetGuard {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lazily unmount every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
            // SAFETY: `c` is NUL-terminated.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        }
    }
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `debootstrap --variant=minbase <suite> <tmp> <mirror>` into a temp dir under `work`, archived as one
/// layer (without the host's resolv.conf/hostname that debootstrap copies in, and without apt's caches).
pub fn debootstrap_layer(
    store: &Store,
    suite: &str,
    mirror: &str,
    work: &Path,
    quiet: bool,
) -> Result<LayerRecord, RecipeError> {
    let base = format!("debootstrap:{suite}");
    if !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || suite.is_empty() {
        return Err(base_err(&base, "the suite must be a Debian suite name such as bookworm"));
    }
    let exe = ["/usr/sbin/debootstrap", "/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| base_err(&base, "debootstrap is not installed: apt-get install debootstrap"))?;
    std::fs::create_dir_all(work).map_err(|e| base_err(&base, format!("{}: {e}", work.display())))?;
    let target = work.join("target");
    let _guard = TargetGuard(target.clone());
    let log = work.join("debootstrap.log");
    let mut cmd = Command::new(exe);
    cmd.args(["--variant=minbase", suite]).arg(&target).arg(mirror).stdin(Stdio::null());
    if quiet {
        let f = std::fs::File::create(&log).map_err(|e| base_err(&base, format!("{}: {e}", log.display())))?;
        let f2 = f.try_clone().map_err(|e| base_err(&base, e))?;
        cmd.stdout(f).stderr(f2);
    }
    let started = std::time::Instant::now();
    let status = cmd.status().map_err(|e| base_err(&base, format!("running {exe}: {e}")))?;
    unmount_under(&target);
    if !status.success() {
        let mut tail = String::new();
        if quiet {
            let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut tail));
            tail = format!(":\n{}", last_lines(&tail, 20));
        }
        return Err(base_err(
            &base,
            format!(
                "`debootstrap --variant=minbase {suite} {} {mirror}` failed ({status}); is the mirror reachable?{tail}",
                target.display()
            ),
        ));
    }
    if !quiet {
        eprintln!("beam build:   debootstrap done in {:.1?}; archiving the root filesystem", started.elapsed());
    }
    for f in ["etc/resolv.conf", "etc/hostname"] {
        let _ = std::fs::remove_file(target.join(f));
    }
    for d in ["var/cache/apt/archives", "var/lib/apt/lists", "var/log"] {
        clean_dir(&target.join(d));
    }
    let mut w = LayerWriter::create(&work.join("layer.tar.zst"))?;
    let started = std::time::Instant::now();
    append_tree(&mut w.tar, &target, &TreeOptions { overlay_upper: false, skip_files: &[], mtime: None, id_range: None })?;
    let layer = w.finish(store)?;
    if !quiet {
        eprintln!(
            "beam build:   archived {} ({} bytes compressed) in {:.1?}",
            layer.diff_id.short(),
            layer.size,
            started.elapsed()
        );
    }
    Ok(layer)
}

/// Delete the regular files directly and below `dir` (keeping the dirs: apt wants `partial/` etc.).
fn clean_dir(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => clean_dir(&e.path()),
            Ok(_) if e.file_name() != "lock" => {
                let _ = std::fs::remove_file(e.path());
            }
            _ => {}
        }
    }
}

pub fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        let s = parse_deb822(deb822);
        assert_eq!(s.len(), 2);
        assert_eq!(pick_mirror(&s, "bookworm"), "http://deb.debian.org/debian");
        assert_eq!(pick_mirror(&s, "trixie"), "http://deb.debian.org/debian");
        let list =
            "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian trixie main\ndeb-src http://x y z\n";
        let s = parse_sources_list(list);
        assert_eq!(s, [("http://mirror.example/debian".to_string(), vec!["trixie".to_string()])]);
        assert_eq!(pick_mirror(&[], "bookworm"), "http://deb.debian.org/debian");
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }
}
