//! Which record a reference means: exact name, `name@sha256:…`, `sha256:…` id, short name, id prefix.

use super::{ImageRecord, StoreError};
use crate::image::digest::Digest;

/// What a reference matched in a list of records.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Match {
    /// One of the record's names (exactly, or a short name that expands to it).
    Name(usize, String),
    /// The record itself: by id, manifest digest or id prefix.
    Id(usize),
}

impl Match {
    pub fn index(&self) -> usize {
        match self {
            Match::Name(i, _) | Match::Id(i) => *i,
        }
    }
}

/// The repository part of a canonical name: `reg/repo:tag` and `reg/repo@sha256:…` → `reg/repo`.
fn repository(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// `short` names `name` if equal or a `/`-aligned suffix of it (`busybox` ~ `docker.io/library/busybox`).
fn names_repo(name: &str, short: &str) -> bool {
    name == short || name.strip_suffix(short).is_some_and(|head| head.ends_with('/'))
}

fn ambiguous(reference: &str, mut matches: Vec<String>) -> StoreError {
    matches.sort();
    matches.dedup();
    StoreError::Ambiguous { reference: reference.to_string(), matches: matches.join(", ") }
}

/// Resolve `r` among `records`; names win over ids, as in Docker.
pub(super) fn find(records: &[ImageRecord], r: &str) -> Result<Match, StoreError> {
    if r.is_empty() {
        return Err(StoreError::NotFound(r.to_string()));
    }
    // 1. An exact name.
    if let Some(i) = records.iter().position(|rec| rec.names.iter().any(|n| n == r)) {
        return Ok(Match::Name(i, r.to_string()));
    }
    // 2. A full digest: the id, else a manifest digest.
    if r.starts_with("sha256:") {
        let d = Digest::parse(r).map_err(|e| StoreError::Invalid(e.to_string()))?;
        return records
            .iter()
            .position(|rec| rec.id == d)
            .or_else(|| records.iter().position(|rec| rec.manifest == d))
            .map(Match::Id)
            .ok_or_else(|| StoreError::NotFound(r.to_string()));
    }
    // 3. name@digest: the record with that manifest (or id) whose names include the repository.
    if let Some((name, digest)) = r.rsplit_once('@') {
        let d = Digest::parse(digest).map_err(|e| StoreError::Invalid(format!("{r:?}: {e}")))?;
        let hits: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].manifest == d || records[i].id == d)
            .filter(|&i| {
                name.is_empty()
                    || records[i].names.is_empty()
                    || records[i].names.iter().any(|n| names_repo(repository(n), name))
            })
            .collect();
        return match hits[..] {
            [i] => Ok(Match::Id(i)),
            [] => Err(StoreError::NotFound(r.to_string())),
            _ => Err(ambiguous(r, hits.iter().map(|&i| records[i].id.to_string()).collect())),
        };
    }
    // 4. A short name: `busybox` → `…/busybox:latest`, `library/busybox:1.36` → `docker.io/library/busybox:1.36`.
    let last = r.rsplit('/').next().unwrap_or(r);
    let full = if last.contains(':') { r.to_string() } else { format!("{r}:latest") };
    let mut hits: Vec<(usize, &str)> = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        for n in &rec.names {
            if names_repo(n, &full) {
                hits.push((i, n));
            }
        }
    }
    match hits[..] {
        [(i, n)] => return Ok(Match::Name(i, n.to_string())),
        [] => {}
        // Several of one image's names: that image, but no single name.
        [(i, _), ..] if hits.iter().all(|&(j, _)| j == i) => return Ok(Match::Id(i)),
        _ => return Err(ambiguous(r, hits.iter().map(|(_, n)| n.to_string()).collect())),
    }
    // 5. A unique id prefix of at least 4 hex digits.
    if (4..=64).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        let hits: Vec<usize> = (0..records.len()).filter(|&i| records[i].id.hex().starts_with(r)).collect();
        return match hits[..] {
            [i] => Ok(Match::Id(i)),
            [] => Err(StoreError::NotFound(r.to_string())),
            _ => Err(ambiguous(r, hits.iter().map(|&i| records[i].id.short().to_string()).collect())),
        };
    }
    Err(StoreError::NotFound(r.to_string()))
}
