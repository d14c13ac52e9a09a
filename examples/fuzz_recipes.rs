//! Time-boxed mutation fuzzer for the whole front end (parser, resolver
//! with `extends`, checker, graph lowering, plan, RON, DOT, diagnostics).
//!
//! `cargo run --release --example fuzz_recipes -- [SECONDS] [SEED]`
//!
//! It mutates the shipped recipes and the bad-recipe corpus with a seeded
//! RNG, catches any panic, saves the input under `target/fuzz-crashes/`, and
//! prints the number of executions. (`cargo fuzz` needs a nightly toolchain;
//! this project pins stable.)

use mer_registry::SeededRng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus(root: &Path) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "mer") {
                    out.push(p);
                }
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join("recipes"), &mut files);
    walk(&root.join("tests/bad"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

fn mutate(rng: &mut SeededRng, text: &str, others: &[(PathBuf, String)]) -> String {
    let mut t = text.to_string();
    for _ in 0..1 + rng.below(4) {
        let mut p = rng.below(t.len() + 1);
        while !t.is_char_boundary(p) {
            p -= 1;
        }
        match rng.below(6) {
            0 => t.insert_str(
                p,
                frontend::MUTATION_TOKENS[rng.below(frontend::MUTATION_TOKENS.len())],
            ),
            1 => {
                let mut e = (p + 1 + rng.below(30)).min(t.len());
                while !t.is_char_boundary(e) {
                    e -= 1;
                }
                t.replace_range(p..e, "");
            }
            2 => {
                // Splice a slice of another corpus file in.
                let (_, o) = &others[rng.below(others.len())];
                let mut a = rng.below(o.len() + 1);
                while !o.is_char_boundary(a) {
                    a -= 1;
                }
                let mut b = (a + rng.below(120)).min(o.len());
                while !o.is_char_boundary(b) {
                    b -= 1;
                }
                t.insert_str(p, &o[a..b]);
            }
            3 => {
                let c = char::from_u32(rng.below(0x2FF) as u32).unwrap_or('?');
                t.insert(p, c);
            }
            4 => {
                // Duplicate a line.
                let start = t[..p].rfind('\n').map(|i| i + 1).unwrap_or(0);
                let end = t[p..].find('\n').map(|i| p + i).unwrap_or(t.len());
                let line = t[start..end].to_string();
                t.insert_str(end, &format!("\n{line}"));
            }
            _ => {
                let mut e = (p + 1 + rng.below(8)).min(t.len());
                while !t.is_char_boundary(e) {
                    e -= 1;
                }
                t.replace_range(
                    p..e,
                    frontend::MUTATION_TOKENS[rng.below(frontend::MUTATION_TOKENS.len())],
                );
            }
        }
    }
    t
}

#[path = "../tests/common/frontend.rs"]
mod frontend;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = corpus(&root);
    let reg = mer_engine::builtin_registry();
    let mut rng = SeededRng::new(seed);
    let crash_dir = root.join("target/fuzz-crashes");
    std::panic::set_hook(Box::new(|_| {}));
    let t0 = Instant::now();
    let mut execs: u64 = 0;
    let mut crashes = 0;
    let mut last = Instant::now();
    const SETS: &[&str] = &[
        "train.epochs=2",
        "~model",
        "model.x=nn.relu(x)",
        "seed=-1",
        "train=[",
        "a.b.c=1",
    ];
    while t0.elapsed() < Duration::from_secs(secs) {
        let (path, text) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, text, &corpus);
        let sets: Vec<String> = if rng.below(4) == 0 {
            vec![SETS[rng.below(SETS.len())].to_string()]
        } else {
            Vec::new()
        };
        let ok = catch_unwind(AssertUnwindSafe(|| {
            frontend::exercise(&reg, path, &input, &sets)
        }))
        .is_ok();
        execs += 1;
        if !ok {
            crashes += 1;
            let _ = std::fs::create_dir_all(&crash_dir);
            let out = crash_dir.join(format!("crash-{seed}-{execs}.mer"));
            let _ = std::fs::write(&out, &input);
            eprintln!(
                "CRASH #{crashes}: input saved to {} (sets {sets:?})",
                out.display()
            );
        }
        if last.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "{:>5.0}s  {execs} execs  {crashes} crashes",
                t0.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
    }
    let rate = execs as f64 / t0.elapsed().as_secs_f64();
    println!("fuzz_recipes: {execs} execs in {:.0} s ({rate:.0}/s), corpus {} files, seed {seed}, {crashes} crash(es)", t0.elapsed().as_secs_f64(), corpus.len());
    if crashes > 0 {
        std::process::exit(1);
    }
}
