//! Parsers for the sandbox commands' flag values: `--entrypoint` command lines, `--env`, `--tag`,
//! `--publish`, `--memory`, `--filter`. They turn a bad value into a usage error naming the flag.

use crate::client::{Error, q, usage};
use beam::api::MemorySize;
use std::collections::BTreeMap;

/// Split a command line like a POSIX shell would (quotes and backslashes; no expansions).
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("{s:?}: unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("{s:?}: unterminated double quote")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("{s:?}: unterminated double quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => return Err(format!("{s:?}: ends with a lone backslash")),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `--env` values: KEY=VALUE, or KEY alone for `lookup(KEY)` (skipped when that is unset).
pub fn parse_env(list: &[String], lookup: impl Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>, Error> {
    let mut m = BTreeMap::new();
    for e in list {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (e.as_str(), lookup(e)),
        };
        if k.is_empty() || k.contains(char::is_whitespace) || k.contains('\0') {
            return Err(usage(format!("--env {e:?}: use KEY=VALUE (or KEY to pass on this shell's value)")));
        }
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    Ok(m)
}

/// `--tag` values: KEY=VALUE.
pub fn parse_tags(list: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut m = BTreeMap::new();
    for t in list {
        match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k.to_string(), v.to_string());
            }
            _ => return Err(usage(format!("--tag {t:?}: use KEY=VALUE"))),
        }
    }
    Ok(m)
}

/// `--publish [IP:]HOST_PORT:PORT` (Docker's `-p` form; an IPv6 address in brackets).
pub fn parse_publish(spec: &str) -> Result<beam::api::Publish, Error> {
    let bad = || usage(format!("--publish {spec:?}: use [HOST_IP:]HOST_PORT:PORT with ports 1-65535, e.g. 15432:5432"));
    let (rest, port) = spec.rsplit_once(':').ok_or_else(bad)?;
    let (ip, host_port) = match rest.rsplit_once(':') {
        Some((ip, hp)) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let ip = ip.parse().map_err(|_| usage(format!("--publish {spec:?}: {ip:?} is not an IP address; use e.g. 127.0.0.1 or 0.0.0.0")))?;
            (ip, hp)
        }
        None => (beam::api::DEFAULT_HOST_IP, rest),
    };
    let num = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    Ok(beam::api::Publish { port: num(port)?, host_port: num(host_port)?, host_ip: ip })
}

/// `--memory`: a number is MiB; anything else (`512Mi`, `1Gi`, `2G`) goes to beamd as written.
pub fn parse_memory(m: &str) -> MemorySize {
    match m.trim().parse::<f64>() {
        Ok(n) => MemorySize::MiB(n),
        Err(_) => MemorySize::Text(m.to_string()),
    }
}

/// The query string for `--filter`s; whether one names a state.
pub fn list_query(filters: &[String]) -> Result<(String, bool), Error> {
    let mut qs = Vec::new();
    let mut state = false;
    for f in filters {
        let bad = || usage(format!("--filter {f:?}: use state=STATE, name=NAME or tag=KEY=VALUE"));
        let (k, v) = f.split_once('=').ok_or_else(bad)?;
        match k {
            "state" | "status" => {
                if !["pending", "running", "stopping", "exited"].contains(&v) {
                    return Err(usage(format!("--filter {f:?}: the states are pending, running, stopping and exited")));
                }
                state = true;
                qs.push(format!("state={}", q(v)));
            }
            "name" if !v.is_empty() => qs.push(format!("name={}", q(v))),
            "tag" | "label" if v.split_once('=').is_some_and(|(k, _)| !k.is_empty()) => qs.push(format!("tag={}", q(v))),
            _ => return Err(bad()),
        }
    }
    let s = if qs.is_empty() { String::new() } else { format!("?{}", qs.join("&")) };
    Ok((s, state))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    /// One command's flags parsed on their own, as `beam VERB ARGS…` would.
    #[derive(Parser)]
    struct Only<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }

    pub fn parse<A: clap::Args>(args: &[&str]) -> Result<A, clap::Error> {
        Only::<A>::try_parse_from(std::iter::once("beam").chain(args.iter().copied())).map(|o| o.args)
    }

    fn sv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splitting() {
        assert_eq!(split("python3 -m http.server 8888").unwrap(), sv(&["python3", "-m", "http.server", "8888"]));
        assert_eq!(split("  sh -c 'echo hi; exit 3'  ").unwrap(), sv(&["sh", "-c", "echo hi; exit 3"]));
        assert_eq!(split(r#"echo "a \"b\" \n $x" c\ d '' """#).unwrap(), sv(&["echo", r#"a "b" \n $x"#, "c d", "", ""]));
        assert_eq!(split(r"a\\b it's\ ok").unwrap_err(), r#""a\\\\b it's\\ ok": unterminated single quote"#);
        assert_eq!(split("a\\\nb").unwrap(), sv(&["ab"]));
        assert!(split("echo \"open").is_err());
        assert!(split("trailing\\").is_err());
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split("x'y'\"z\"").unwrap(), sv(&["xyz"]));
    }

    #[test]
    fn publish_specs() {
        let p = |s: &str| parse_publish(s).map(|p| (p.host_ip.to_string(), p.host_port, p.port));
        assert_eq!(p("15432:5432").unwrap(), ("127.0.0.1".into(), 15432, 5432));
        assert_eq!(p("0.0.0.0:8022:22").unwrap(), ("0.0.0.0".into(), 8022, 22));
        assert_eq!(p("[::1]:8022:22").unwrap(), ("::1".into(), 8022, 22));
        for bad in ["5432", "0:5432", "15432:70000", "a:b", "", "nope:80:80"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envs() {
        let look = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let m = parse_env(&sv(&["A=1", "B=x=y", "HOME", "UNSET", "E="]), look).unwrap();
        assert_eq!(m, BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into()), ("HOME".into(), "/root".into()), ("E".into(), "".into())]));
        assert!(parse_env(&sv(&["=x"]), look).is_err());
        assert_eq!(parse_env(&sv(&["A B=1"]), look).unwrap_err().to_string(), "--env \"A B=1\": use KEY=VALUE (or KEY to pass on this shell's value)");
        assert!(parse_tags(&sv(&["team=a", "x="])).is_ok());
        assert!(parse_tags(&sv(&["team"])).is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(list_query(&[]).unwrap(), (String::new(), false));
        let f = |v: &[&str]| list_query(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(f(&["state=exited", "tag=team=a b"]).unwrap(), ("?state=exited&tag=team%3Da%20b".into(), true));
        assert_eq!(f(&["name=web"]).unwrap(), ("?name=web".into(), false));
        for bad in ["state=gone", "colour=red", "tag=novalue", "tag==x", "name=", "plain"] {
            assert!(f(&[bad]).is_err(), "{bad}");
        }
    }
}
