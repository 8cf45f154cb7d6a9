//! The key hash: seeded, fast on short keys, well mixed in the low bits the index uses.
//!
//! The seed is random per store (kept in the header) so that keys chosen to collide in one
//! store do not collide in another.

// MurmurHash3 (x86, 32-bit): only 32-bit multiplies, so `lib/reader.js` computes the same hash
// with Math.imul when it reads the index from JS (a 64-bit multiply would need BigInt there).

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// The key hash (zero-extended to u64, the width of a slot's hash field).
pub fn hash_key(seed: u64, key: &[u8]) -> u64 {
    let mut h = seed as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        h = mix(h, u32::from_le_bytes(c.try_into().unwrap()));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut k = 0u32;
        for (i, b) in rest.iter().enumerate() {
            k |= (*b as u32) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= key.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h as u64
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

    #[test]
    fn matches_the_reference_murmur3_x86_32() {
        // Published MurmurHash3_x86_32 test values.
        assert_eq!(hash_key(0, b""), 0);
        assert_eq!(hash_key(1, b""), 0x514e_28b7);
        assert_eq!(hash_key(0, b"test"), 0xba6b_d213);
        assert_eq!(hash_key(0x9747_b28c, b"Hello, world!"), 0x2488_4cba);
        assert_eq!(
            hash_key(0, b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }
}
