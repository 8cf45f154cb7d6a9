//! Test memory: a heap block standing in for the SharedArrayBuffer.
#![allow(dead_code)]

use shared_kv_store::{Region, Store};

pub struct Mem {
    words: Vec<u64>,
}

impl Mem {
    pub fn new(bytes: usize) -> Mem {
        Mem {
            words: vec![0; bytes.div_ceil(8)],
        }
    }
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }
    /// A view of the first `len` bytes (the memory never moves, like a growable SAB).
    pub fn region(&self, len: usize) -> Region {
        assert!(len <= self.bytes());
        // SAFETY: the words outlive every region in these tests, which end before Mem drops;
        // all access through a Region is atomic.
        unsafe { Region::new(self.words.as_ptr() as *mut u8, len) }
    }
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: a u64 slice reinterpreted as bytes; no Region is alive while this borrow is.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.words.len() * 8)
        }
    }
    pub fn create(&self, len: usize) -> Store {
        Store::create(self.region(len), 0x5eed).unwrap()
    }
    pub fn attach(&self, len: usize) -> Store {
        Store::attach(self.region(len)).unwrap()
    }
}

/// xorshift64*: deterministic randomness without a dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
