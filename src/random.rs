//! Random names from the kernel's pool: sandbox ids, gateway tokens, temp-file suffixes. One place for
//! all of them, on the `getrandom` crate (already in the tree through ring), which retries short reads
//! and EINTR and returns an error — never loops — when the kernel can't give randomness.

#[derive(Debug, thiserror::Error)]
#[error("no randomness from the kernel ({0}); check that getrandom(2) is allowed (seccomp) and /dev/urandom exists")]
pub struct RandomError(getrandom::Error);

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Fill `buf` from the kernel's pool.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::getrandom(buf).map_err(RandomError)
}

/// `len` characters of [a-z0-9], each equally likely (`len` 12 ≈ 62 bits, 32 ≈ 165 bits).
pub fn alnum(len: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(len);
    let mut raw = [0u8; 64];
    while out.len() < len {
        fill(&mut raw)?;
        // 252 = 7 · 36: dropping the top values keeps every character equally likely. Each round keeps
        // 63 of 64 bytes on average, so this ends after one or two.
        for b in raw.iter().filter(|b| **b < 252).take(len - out.len()) {
            out.push(ALPHABET[(*b % 36) as usize] as char);
        }
    }
    Ok(out)
}

/// A random u64.
pub fn u64() -> Result<u64, RandomError> {
    let mut buf = [0u8; 8];
    fill(&mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    #[test]
    fn alnum_is_what_it_says() {
        for len in [0, 1, 12, 32, 200] {
            let a = super::alnum(len).unwrap();
            assert_eq!(a.len(), len);
            assert!(a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{a}");
        }
        assert_ne!(super::alnum(32).unwrap(), super::alnum(32).unwrap());
        assert_ne!(super::u64().unwrap(), super::u64().unwrap());
    }
}
