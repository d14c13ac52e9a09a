//! Writes frames of generated clips as a PGM contact sheet, for eyeballing
//! the generator: `cargo run -p mer-data --example synth_preview -- OUT.pgm [intensity]`.

use mer_data::synth::{Flavor, Synth};
use mer_registry::{Dataset, Value};
use std::collections::BTreeMap;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "synth.pgm".into());
    let intensity: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.15);
    let size: i64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let p: BTreeMap<String, Value> = [
        ("subjects", Value::Int(4)),
        ("clips_per_subject", Value::Int(4)),
        ("frames", Value::Int(8)),
        (
            "size",
            Value::List(vec![Value::Int(size), Value::Int(size)]),
        ),
        ("intensity", Value::Float(intensity)),
        (
            "aus",
            Value::List(vec![Value::Int(1), Value::Int(4), Value::Int(12)]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let s = match Synth::new(Flavor::Me, &p) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", e.0);
            std::process::exit(2);
        }
    };
    let n = 16;
    let b = match s.load(&(0..n).collect::<Vec<_>>(), None) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let v = b.ports["video"]
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_default();
    let (t, h, w) = (8usize, size as usize, size as usize);
    let mut img = vec![0u8; n * h * t * w];
    for c in 0..n {
        for f in 0..t {
            for y in 0..h {
                for x in 0..w {
                    let val = v[((c * t + f) * h + y) * w + x];
                    img[(c * h + y) * (t * w) + f * w + x] = (val * 255.0) as u8;
                }
            }
        }
    }
    let mut bytes = format!("P5\n{} {}\n255\n", t * w, n * h).into_bytes();
    bytes.extend(img);
    if let Err(e) = std::fs::write(&out, bytes) {
        eprintln!("{out}: {e}");
        std::process::exit(1);
    }
    for id in &b.ids {
        println!("{id}");
    }
}
