//! `cargo bench --bench check`: how long `mer check` takes, in process and
//! as a whole command (process start, registry, parse, resolve, check,
//! graph). Prints medians, throughput and ratios; asserts nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn in_process(path: &Path, iters: usize) -> (Duration, usize) {
    let reg = mer_engine::builtin_registry();
    let mut times = Vec::with_capacity(iters);
    let mut variants = 0;
    for _ in 0..iters {
        let t0 = Instant::now();
        let mut s = mer_dsl::resolve::Session::new();
        let fc = mer_dsl::check_file(&mut s, &reg, path, &[], None);
        times.push(t0.elapsed());
        variants = fc.experiments.iter().map(|e| e.variants.len()).sum();
        std::hint::black_box(&fc);
    }
    (median(times), variants)
}

fn whole_command(bin: &Path, path: &Path, iters: usize) -> Duration {
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = Command::new(bin)
            .arg("check")
            .arg(path)
            .output()
            .expect("mer runs");
        times.push(t0.elapsed());
        std::hint::black_box(out);
    }
    median(times)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd to the workspace");
    // The bench profile builds the binary next to this bench's deps folder.
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(|d| d.parent()).map(|d| d.join("mer")))
        .filter(|p| p.exists());
    let reg_t0 = Instant::now();
    let reg = mer_engine::builtin_registry();
    let reg_time = reg_t0.elapsed();
    println!(
        "registry: {} builtin kinds built in {:.3} ms\n",
        reg.kinds().count(),
        reg_time.as_secs_f64() * 1e3
    );
    println!(
        "{:<40} {:>8} {:>10} {:>12} {:>12} {:>10}",
        "recipe", "variants", "bytes", "in-process", "per variant", "checks/s"
    );
    let cases = [
        "recipes/demo/synth_me_au.mer",
        "recipes/demo/synth_me_sweep.mer",
        "recipes/mtcae_dfer/ravdess.mer",
        "recipes/au_llm/casme2.mer",
    ];
    let mut base = None;
    for c in cases {
        let p = Path::new(c);
        let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let (t, variants) = in_process(p, 200);
        let ms = t.as_secs_f64() * 1e3;
        let per = if variants > 0 {
            ms / variants as f64
        } else {
            ms
        };
        println!(
            "{c:<40} {variants:>8} {bytes:>10} {ms:>9.3} ms {per:>9.3} ms {:>10.0}",
            1.0 / t.as_secs_f64()
        );
        if base.is_none() {
            base = Some(t);
        }
    }
    if let Some(bin) = bin {
        let t = whole_command(&bin, Path::new(cases[0]), 30);
        let inproc = base.unwrap_or_default();
        println!(
            "\nwhole `mer check {}`: {:.2} ms median of 30 (process start ≈ {:.1}× the check itself)",
            cases[0],
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / inproc.as_secs_f64().max(1e-9)
        );
    } else {
        println!("\n(mer binary not found next to the bench; run `cargo build --release` for the whole-command figure)");
    }
}
