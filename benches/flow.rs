//! TV-L1 optical flow: endpoint error against fields with known motion,
//! and throughput (frame pairs per second) at micro-expression sizes.
//!
//! `cargo bench --bench flow`

use mer_engine::data::flow::reference::{epe, field};
use mer_engine::data::flow::TvL1;
use std::time::Instant;

fn main() {
    let tv = TvL1::default();
    println!("TV-L1 (λ 0.15, θ 0.3, τ 0.25, 3 scales, 5 warps, ε 0.01)");
    type Motion = Box<dyn Fn(f32, f32) -> (f32, f32)>;
    let cases: Vec<(&str, Motion)> = vec![
        ("translation (1.5, -0.75) px", Box::new(|_, _| (1.5, -0.75))),
        ("translation (3, 2) px", Box::new(|_, _| (3.0, 2.0))),
        (
            "rotation 0.04 rad",
            Box::new(|x, y| {
                let (dx, dy, t) = (x - 32.0, y - 32.0, 0.04f32);
                (
                    dx * t.cos() - dy * t.sin() - dx,
                    dx * t.sin() + dy * t.cos() - dy,
                )
            }),
        ),
        (
            "zoom 3%",
            Box::new(|x, y| (0.03 * (x - 32.0), 0.03 * (y - 32.0))),
        ),
    ];
    for (name, m) in &cases {
        let (a, b) = field(64, 64, m);
        let f = tv.flow(&a, &b);
        println!("  64×64 {name:<30} mean EPE {:.3} px", epe(&f, m));
    }
    for size in [64usize, 128] {
        let (a, b) = field(size, size, |_, _| (1.0, 0.5));
        let n = if size == 64 { 20 } else { 5 };
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(tv.flow(&a, &b));
        }
        let s = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "  {size}×{size}: {:.1} ms per pair, {:.1} pairs/s (one core)",
            s * 1e3,
            1.0 / s
        );
    }
}
