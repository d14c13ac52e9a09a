//! `cargo bench --bench feature_cache`: an ablation run over a frozen
//! encoder (benches/recipes/frozen_encoder.mer: 3 variants × 3 folds), with
//! the feature cache and without it. Both runs must produce the same
//! predictions; the cache only changes the time. Prints figures.

use mer_engine::exec::FeatureCache;
use mer_engine::runner::{run_variant, Quiet, RunOptions};
use mer_registry::candle::Device;
use mer_registry::dsl::resolve::Session;
use std::time::Instant;

fn run(disabled: bool) -> (f64, FeatureCache, std::path::PathBuf) {
    let reg = mer_engine::builtin_registry();
    let mut s = Session::new();
    let fc = mer_registry::dsl::check_file(
        &mut s,
        &reg,
        std::path::Path::new("benches/recipes/frozen_encoder.mer"),
        &[],
        None,
    );
    assert!(!s.has_errors(), "{:?}", s.diags);
    let exp = &fc.experiments[0];
    let root =
        std::env::temp_dir().join(format!("mer-bench-cache-{disabled}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let opts = RunOptions {
        root: root.clone(),
        folds: vec![],
        resume: false,
        restart: false,
        device: Device::Cpu,
    };
    let mut cache = FeatureCache::default();
    cache.disabled = disabled;
    let t0 = Instant::now();
    for v in &exp.variants {
        run_variant(exp, v, 1, &reg, &opts, &mut cache, &Quiet).expect("run");
    }
    (t0.elapsed().as_secs_f64(), cache, root)
}

fn predictions(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "predictions.csv") {
                out.push(std::fs::read_to_string(&p).expect("read"));
            }
        }
    }
    out.sort();
    out
}

fn main() {
    let (t_off, off, root_off) = run(true);
    let (t_on, on, root_on) = run(false);
    println!(
        "frozen encoder, 3 variants x 3 folds: without cache {t_off:.2} s ({} encoder passes), with cache {t_on:.2} s ({} computed, {} reused)",
        off.misses, on.misses, on.hits
    );
    println!("feature-cache speed-up: {:.2}x", t_off / t_on);
    let same = predictions(&root_off) == predictions(&root_on);
    println!("identical predictions with and without the cache: {same}");
    let _ = std::fs::remove_dir_all(root_off);
    let _ = std::fs::remove_dir_all(root_on);
    if !same {
        std::process::exit(1);
    }
}
