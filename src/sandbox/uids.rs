//! Sandbox uid ranges: each sandbox with a user namespace maps its 0–65535 onto a range of host ids of
//! its own, from a fixed pool of slots; a slot is taken at create and free again once the sandbox exits.

use std::collections::HashSet;

/// First host uid/gid of sandbox uid ranges, and the size of each range.
pub const UID_BASE: u32 = 0x1000_0000;
pub const UID_RANGE: u32 = 65536;
/// Number of ranges (keeps every host id below 2^31).
pub const UID_SLOTS: u32 = 0x7000;

/// The lowest slot not in `used`, and the first host id of its range; None when every slot is taken.
pub fn free_slot(used: &HashSet<u32>) -> Option<(u32, u32)> {
    (0..UID_SLOTS).find(|s| !used.contains(s)).map(|s| (s, UID_BASE + s * UID_RANGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots() {
        assert_eq!(free_slot(&HashSet::new()), Some((0, UID_BASE)));
        assert_eq!(free_slot(&[0, 1, 3].into_iter().collect()), Some((2, UID_BASE + 2 * UID_RANGE)));
        let all: HashSet<u32> = (0..UID_SLOTS).collect();
        assert_eq!(free_slot(&all), None);
        // The last range ends below 2^31: host ids stay positive as i32 (what the kernel and tools assume).
        assert!(u64::from(UID_BASE) + u64::from(UID_SLOTS) * u64::from(UID_RANGE) <= 1 << 31);
    }
}
