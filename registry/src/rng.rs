//! mer's own seeded randomness. candle's CPU RNG cannot be seeded, so every
//! random number (initialisation, dropout masks, shuffling) comes from here:
//! same recipe and seed, same numbers.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A seeded ChaCha8 stream.
#[derive(Debug, Clone)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// A stream from a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        SeededRng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A stream for one named purpose under a run seed. Streams for
    /// different names are independent, so adding a node to a model does
    /// not change the initialisation of the others.
    pub fn derive(seed: u64, name: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(name.as_bytes());
        let bytes = h.finalize();
        let mut s = [0u8; 32];
        s.copy_from_slice(bytes.as_bytes());
        SeededRng(ChaCha8Rng::from_seed(s))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        // 24 random bits: every value exactly representable in f32.
        (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn uniform_range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.uniform() as f64).max(1e-12);
        let u2 = self.uniform() as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// A tensor of standard normal values (f32) with the given dims.
    pub fn normal_tensor(
        &mut self,
        dims: &[usize],
        device: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.normal()).collect();
        candle_core::Tensor::from_vec(data, dims, device)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }

    /// Shuffles `items` in place (Fisher–Yates from the last position):
    /// the same stream gives the same order on every machine.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// A raw 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_names_are_independent() {
        let a: Vec<f32> = (0..5)
            .map({
                let mut r = SeededRng::derive(1, "cnn.weight");
                move |_| r.uniform()
            })
            .collect();
        let b: Vec<f32> = (0..5)
            .map({
                let mut r = SeededRng::derive(1, "cnn.weight");
                move |_| r.uniform()
            })
            .collect();
        let c: Vec<f32> = (0..5)
            .map({
                let mut r = SeededRng::derive(1, "cnn.bias");
                move |_| r.uniform()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = SeededRng::new(3);
        let n: f32 = (0..20000).map(|_| r.normal()).sum::<f32>() / 20000.0;
        assert!(n.abs() < 0.05, "{n}");
    }
}
