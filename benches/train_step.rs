//! `cargo bench --bench train_step`: training-step throughput on this
//! machine's CPU, against its measured f32 matmul peak (the same gemm
//! kernels every layer uses). Prints figures; asserts nothing.

use mer_engine::exec::Model;
use mer_engine::optim::Optimizer;
use mer_registry::candle::{Device, Tensor};
use mer_registry::dsl::resolve::Session;
use mer_registry::{Dim, Mode, ParamStore, SeededRng, TensorType, Value};
use std::collections::BTreeMap;
use std::time::Instant;

fn randn(dims: &[usize], seed: u64) -> Tensor {
    SeededRng::new(seed)
        .normal_tensor(dims, &Device::Cpu)
        .expect("tensor")
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    let t0 = Instant::now();
    for _ in 0..reps {
        f();
    }
    t0.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!("CPU threads: {threads}\n");

    // Peak: f32 matmul, 1024³.
    let n = 1024;
    let (a, b) = (randn(&[n, n], 1), randn(&[n, n], 2));
    let t = time(5, || {
        std::hint::black_box(a.matmul(&b).expect("matmul"));
    });
    let peak = 2.0 * (n * n * n) as f64 / t / 1e9;
    println!(
        "matmul f32 {n}³: {:.1} ms, {peak:.1} GFLOP/s (the peak below)",
        t * 1e3
    );

    // The demo recipe's model: forward + backward + Adam, batch 16.
    let reg = mer_engine::builtin_registry();
    let mut s = Session::new();
    let fc = mer_registry::dsl::check_file(
        &mut s,
        &reg,
        std::path::Path::new("recipes/demo/synth_me_3dcnn.mer"),
        &[],
        None,
    );
    let v = &fc.experiments[0].variants[0];
    let model = Model::build(&v.graph, &reg, 1, &Device::Cpu).expect("build");
    let opt_params = match v.recipe.config.get("optimizer") {
        Some(Value::Call(c)) => c.params.clone(),
        _ => BTreeMap::new(),
    };
    let mut opt = Optimizer::new(
        "optim.adam",
        &opt_params,
        &model.params,
        &model.component_names(),
        None,
    )
    .expect("optimizer");
    let batch = 16;
    let data = BTreeMap::from([(
        "clips".to_string(),
        BTreeMap::from([
            ("video".to_string(), randn(&[batch, 1, 6, 32, 32], 3)),
            (
                "aus".to_string(),
                randn(&[batch, 4], 4)
                    .ge(0.0)
                    .expect("ge")
                    .to_dtype(mer_registry::candle::DType::F32)
                    .expect("f32"),
            ),
        ]),
    )]);
    let mut step = 0u64;
    let t = time(10, || {
        step += 1;
        let f = model
            .forward(&data, Mode::Train, &mut SeededRng::new(step))
            .expect("forward");
        let g = f.loss.expect("loss").backward().expect("backward");
        opt.step(&g, 0, 1.0).expect("step");
    });
    println!(
        "demo 3D-CNN (synth_me_3dcnn), batch {batch}: {:.1} ms/step, {:.0} samples/s",
        t * 1e3,
        batch as f64 / t
    );

    // A ViT-Ti block: D 192, 3 heads, 197 tokens, batch 8, forward + backward.
    let (b, tokens, d) = (8, 197, 192);
    let k = reg.get("nn.transformer_encoder").expect("kind");
    let params: BTreeMap<String, Value> = [
        ("layers", Value::Int(1)),
        ("heads", Value::Int(3)),
        ("mlp_ratio", Value::Float(4.0)),
        ("dropout", Value::Float(0.0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut store = ParamStore::new(1, Device::Cpu);
    let ty = [TensorType::features(vec![
        Dim::sym("B"),
        Dim::Size(tokens),
        Dim::Size(d),
    ])];
    let block = k.build("vit", &params, &ty, &mut store).expect("block");
    let x = randn(&[b, tokens, d], 5);
    let t = time(5, || {
        let y = block
            .forward(
                std::slice::from_ref(&x),
                Mode::Train,
                &mut SeededRng::new(0),
            )
            .expect("forward")
            .remove(0);
        std::hint::black_box(y.sum_all().expect("sum").backward().expect("backward"));
    });
    // Forward FLOPs of one block: 24·N·D² (projections, MLP) + 4·N²·D
    // (scores, mixing); backward ≈ 2× forward.
    let flops =
        3.0 * b as f64 * (24.0 * (tokens * d * d) as f64 + 4.0 * (tokens * tokens * d) as f64);
    let gflops = flops / t / 1e9;
    println!(
        "ViT-Ti block (D {d}, {tokens} tokens), batch {b}: {:.1} ms/step, {:.0} samples/s, {gflops:.1} GFLOP/s = {:.0}% of the matmul peak",
        t * 1e3,
        b as f64 / t,
        100.0 * gflops / peak
    );
}
