//! The key hash: seeded, fast on short keys, well mixed in the low bits the index uses.
//!
//! The seed is random per store (kept in the header) so that keys chosen to collide in one
//! store do not collide in another.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(29)
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

pub fn hash_key(seed: u64, key: &[u8]) -> u64 {
    let mut h = seed ^ (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        h = mix(h, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(buf));
    }
    fmix(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn distinct_keys_spread_over_low_bits() {
        let mut buckets = vec![0u32; 1024];
        for i in 0..100_000 {
            buckets[(hash_key(7, format!("key:{i}").as_bytes()) & 1023) as usize] += 1;
        }
        // ~98 per bucket expected; a poor hash leaves buckets empty or overfull.
        assert!(
            buckets.iter().all(|&n| (40..200).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn seed_and_length_change_the_hash() {
        assert_ne!(hash_key(1, b"abc"), hash_key(2, b"abc"));
        assert_ne!(hash_key(1, b"a"), hash_key(1, b"a\0"));
        let set: HashSet<u64> = (0..1000u32)
            .map(|i| hash_key(0, &i.to_le_bytes()))
            .collect();
        assert_eq!(set.len(), 1000);
    }
}
