//! What a sandbox's `/etc/resolv.conf` and `/etc/hosts` say. beam forwards no DNS: a sandbox asks the host's
//! upstream resolvers directly (through NAT). Loopback resolvers of the host (systemd-resolved's
//! 127.0.0.53, a local dnsmasq) are unreachable from a sandbox, so they are skipped; when the host has only
//! such resolvers, the upstream list of systemd-resolved (`/run/systemd/resolve/resolv.conf`) is used; when
//! that has none either, the file names no nameserver (and says why), and the sandbox has no DNS.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The host's resolver configuration files, in the order they are consulted.
pub const HOST_SOURCES: [&str; 2] = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// A sandbox's resolv.conf from the host's files (`sources`, first one with a usable nameserver wins;
/// its `search` and `options` lines are kept).
pub fn resolv_conf_from(sources: &[&Path]) -> String {
    for src in sources {
        let Ok(text) = std::fs::read_to_string(src) else { continue };
        if let Some(conf) = usable(&text) {
            return conf;
        }
    }
    "# beam: the host has no nameserver a sandbox can reach (only loopback ones, or none); no DNS here.\n".into()
}

/// The lines of `text` a sandbox can use, if it names at least one non-loopback nameserver.
pub fn usable(text: &str) -> Option<String> {
    let mut servers = Vec::new();
    let mut other = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && !ip.is_loopback()
                    && !ip.is_unspecified()
                    && ip.is_ipv4()
                {
                    servers.push(format!("nameserver {ip}"));
                }
            }
            Some("search") | Some("domain") | Some("options") => other.push(line.trim().to_string()),
            _ => {}
        }
    }
    if servers.is_empty() {
        return None;
    }
    let mut out = String::from("# written by beam from the host's resolvers\n");
    for l in servers.iter().chain(other.iter()) {
        out.push_str(l);
        out.push('\n');
    }
    Some(out)
}

/// A sandbox's /etc/hosts: localhost and its own name on its address.
pub fn hosts_file(ip: Ipv4Addr, hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_skipped() {
        assert_eq!(usable("nameserver 127.0.0.53\noptions edns0\n"), None);
        let c = usable("# x\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org\n").unwrap();
        assert!(c.contains("nameserver 192.0.2.53\n") && !c.contains("127.0.0.53") && c.contains("search example.org"));
    }

    #[test]
    fn falls_back_to_the_next_source() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "nameserver 127.0.0.53\n").unwrap();
        std::fs::write(&b, "nameserver 203.0.113.9\n").unwrap();
        assert!(resolv_conf_from(&[&a, &b]).contains("nameserver 203.0.113.9"));
        assert!(resolv_conf_from(&[&a]).starts_with("# beam: the host has no nameserver"));
    }

    #[test]
    fn hosts_names_the_sandbox() {
        assert!(hosts_file(Ipv4Addr::new(10, 88, 0, 2), "sbx-1").contains("10.88.0.2\tsbx-1\n"));
    }
}
