//! `cargo bench --bench train_step`: training-step throughput on this
//! machine's CPU for the demo 3D-CNN, AU-LLM's backbone, a ViT block and
//! an LLM with LoRA; GFLOP/s against the machine's measured f32 matmul
//! peak; and, when a Python with torch is at hand (`MER_BENCH_PYTHON`, or
//! `target/bench-venv` from `benches/reference/setup.sh`), the same steps
//! in PyTorch eager at the same thread count, side by side. Prints
//! figures; asserts nothing. `MER_BENCH_DEVICE=cuda:0` (a CUDA build, as
//! `scripts/gpu-check.sh` runs it) times the same steps on the GPU beside
//! PyTorch's CUDA eager.

use mer_engine::exec::Model;
use mer_engine::optim::Optimizer;
use mer_registry::candle::{DType, Device, Tensor};
use mer_registry::dsl::resolve::Session;
use mer_registry::{Dim, Mode, ParamStore, Registry, SeededRng, TensorType, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// `MER_BENCH_DEVICE` (cpu, cuda:N), read once.
fn device() -> &'static Device {
    static DEV: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEV.get_or_init(|| {
        let spec = std::env::var("MER_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
        match mer_engine::runner::device(&spec) {
            Ok((d, _)) => d,
            Err(m) => panic!("MER_BENCH_DEVICE: {m}"),
        }
    })
}

fn randn(dims: &[usize], seed: u64) -> Tensor {
    SeededRng::new(seed)
        .normal_tensor(dims, &Device::Cpu)
        .and_then(|t| t.to_device(device()))
        .expect("tensor")
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
         // GPU kernels run asynchronously: time to the device's completion.
    device().synchronize().expect("sync");
    let t0 = Instant::now();
    for _ in 0..reps {
        f();
    }
    device().synchronize().expect("sync");
    t0.elapsed().as_secs_f64() / reps as f64
}

/// One measured step: name, seconds per step, batch, FLOPs per step (when counted).
struct Step {
    name: &'static str,
    what: String,
    secs: f64,
    batch: usize,
    flops: Option<f64>,
}

/// Forward + backward + Adam of a recipe's model on random inputs.
fn recipe_step(reg: &Registry, recipe: &str, data: BTreeMap<String, Tensor>) -> f64 {
    let mut s = Session::new();
    let fc = mer_registry::dsl::check_file(&mut s, reg, std::path::Path::new(recipe), &[], None);
    let Some(v) = fc.experiments.first().and_then(|e| e.variants.first()) else {
        panic!("{recipe} does not check: {:?}", s.diags);
    };
    let model = Model::build(&v.graph, reg, 1, device()).expect("build");
    let opt_params = match v.recipe.config.get("optimizer") {
        Some(Value::Call(c)) => c.params.clone(),
        _ => BTreeMap::new(),
    };
    let mut opt = Optimizer::new(
        reg,
        "optim.adam",
        &opt_params,
        &model.params,
        &model.component_names(),
        None,
    )
    .expect("optimizer");
    let data = BTreeMap::from([("clips".to_string(), data)]);
    let mut step = 0u64;
    time(5, || {
        step += 1;
        let f = model
            .forward(&data, Mode::Train, &mut SeededRng::new(step))
            .expect("forward");
        let g = f.loss.expect("loss").backward().expect("backward");
        opt.step(&g, 0, 1.0).expect("step");
    })
}

fn clips(batch: usize, frames: usize, side: usize, aus: usize) -> BTreeMap<String, Tensor> {
    BTreeMap::from([
        (
            "video".to_string(),
            randn(&[batch, 1, frames, side, side], 3),
        ),
        (
            "aus".to_string(),
            randn(&[batch, aus], 4)
                .ge(0.0)
                .expect("ge")
                .to_dtype(DType::F32)
                .expect("f32"),
        ),
    ])
}

/// Forward + backward of one component built from the registry.
fn component_step(
    reg: &Registry,
    kind: &str,
    params: BTreeMap<String, Value>,
    x: &Tensor,
    output: usize,
) -> f64 {
    let k = reg.get(kind).expect("kind");
    let mut store = ParamStore::new(1, device().clone());
    let dims = x.dims();
    let mut ty_dims = vec![Dim::sym("B")];
    ty_dims.extend(dims[1..].iter().map(|d| Dim::Size(*d)));
    let ty = [TensorType::features(ty_dims)];
    let c = k.build("bench", &params, &ty, &mut store).expect("build");
    time(5, || {
        let y = c
            .forward(std::slice::from_ref(x), Mode::Train, &mut SeededRng::new(0))
            .expect("forward")
            .remove(output);
        std::hint::black_box(
            y.sqr()
                .expect("sqr")
                .mean_all()
                .expect("mean")
                .backward()
                .expect("backward"),
        );
    })
}

fn params(kv: &[(&str, Value)]) -> BTreeMap<String, Value> {
    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// `{"name": .., "ms": ..}` lines from the PyTorch reference, when it can run.
fn pytorch(threads: usize, llm: (usize, usize, usize)) -> Result<BTreeMap<String, f64>, String> {
    let torch_device = if device().is_cuda() { "cuda" } else { "cpu" };
    let python = std::env::var("MER_BENCH_PYTHON").ok().or_else(|| {
        let p = std::path::Path::new("target/bench-venv/bin/python");
        p.exists().then(|| p.display().to_string())
    });
    let Some(python) = python else {
        return Err("not run: set MER_BENCH_PYTHON to a Python with torch, or run benches/reference/setup.sh".into());
    };
    let out = std::process::Command::new(&python)
        .args([
            "benches/reference/train_step.py",
            "--threads",
            &threads.to_string(),
            "--llm-layers",
            &llm.0.to_string(),
            "--llm-batch",
            &llm.1.to_string(),
            "--llm-tokens",
            &llm.2.to_string(),
            "--device",
            torch_device,
        ])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{python} benches/reference/train_step.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut ms = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{line}: {e}"))?;
        if v["name"] == "torch" {
            println!(
                "PyTorch {} eager on {}, {} threads",
                v["version"].as_str().unwrap_or("?"),
                v["device"].as_str().unwrap_or("cpu"),
                v["threads"]
            );
        }
        if let (Some(n), Some(t)) = (v["name"].as_str(), v["ms"].as_f64()) {
            ms.insert(n.to_string(), t);
        }
        if let (Some("matmul"), Some(g)) = (v["name"].as_str(), v["gflops"].as_f64()) {
            println!("PyTorch matmul f32 1024³: {g:.1} GFLOP/s");
        }
    }
    Ok(ms)
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("device: {:?}, CPU threads: {threads}\n", device());

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

    let mut reg = mer_engine::builtin_registry();
    reg.add_static_plugin("au_llm", "bench", mer_plugin_au_llm::register)
        .expect("au_llm");
    let mut steps = Vec::new();

    steps.push(Step {
        name: "demo_3dcnn",
        what: "demo 3D-CNN (synth_me_3dcnn), 6×32×32, batch 16, fwd+bwd+Adam".into(),
        secs: recipe_step(&reg, "recipes/demo/synth_me_3dcnn.mer", clips(16, 6, 32, 4)),
        batch: 16,
        flops: None,
    });
    steps.push(Step {
        name: "au_llm_backbone",
        what: "AU-LLM backbone (LED, 3D-CNN, SE, F_high), 6×64×64, batch 16, fwd+bwd+Adam".into(),
        secs: recipe_step(
            &reg,
            "benches/recipes/au_llm_backbone.mer",
            clips(16, 6, 64, 8),
        ),
        batch: 16,
        flops: None,
    });

    // A ViT-Ti block: D 192, 3 heads, 197 tokens, batch 8.
    let (b, tokens, d) = (8, 197, 192);
    let secs = component_step(
        &reg,
        "nn.transformer_encoder",
        params(&[
            ("layers", Value::Int(1)),
            ("heads", Value::Int(3)),
            ("mlp_ratio", Value::Float(4.0)),
            ("dropout", Value::Float(0.0)),
        ]),
        &randn(&[b, tokens, d], 5),
        0,
    );
    // Forward FLOPs of one block: 24·N·D² (projections, MLP) + 4·N²·D
    // (scores, mixing); backward ≈ 2× forward.
    steps.push(Step {
        name: "vit_block",
        what: format!("ViT-Ti block (D {d}, {tokens} tokens), batch {b}, fwd+bwd"),
        secs,
        batch: b,
        flops: Some(
            3.0 * b as f64 * (24.0 * (tokens * d * d) as f64 + 4.0 * (tokens * tokens * d) as f64),
        ),
    });

    // An LLM at SmolLM2-135M's width (576, 9 heads, 3 KV heads, MLP 1536),
    // 4 layers, random weights; one visual token + 15 prompt tokens; LoRA
    // r8 on q/v. The base is frozen, so the backward pass computes input
    // gradients only: ≈ 1× forward.
    let (layers, lb, lt) = (4usize, 8usize, 16usize);
    let dir = std::env::temp_dir().join(format!("mer-bench-llm-{}", std::process::id()));
    let cfg = mer_engine::llm::LlmConfig {
        arch: "llama".into(),
        vocab: 0,
        hidden: 576,
        intermediate: 1536,
        layers,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        rope_theta: 100_000.0,
        rms_eps: 1e-5,
        tie_embeddings: true,
        attn_bias: false,
        bos: Some(0),
        eos: vec![1],
    };
    let (folder, _, c) = mer_engine::llm::tiny::checkpoint_with(cfg, &dir).expect("checkpoint");
    let lora = Value::Map(
        [
            ("rank".to_string(), Value::Int(8)),
            ("alpha".to_string(), Value::Float(16.0)),
            ("dropout".to_string(), Value::Float(0.0)),
            (
                "targets".to_string(),
                Value::List(vec![
                    Value::Str("q_proj".into()),
                    Value::Str("v_proj".into()),
                ]),
            ),
        ]
        .into(),
    );
    // 15 single-byte tokens in the benchmark vocabulary.
    let prompt = "Action units: ?";
    let k = reg.get("llm.causal").expect("llm.causal");
    let mut p: BTreeMap<String, Value> = k
        .schema
        .params
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.default.clone()?)))
        .collect();
    p.extend(params(&[
        ("weights", Value::Str(folder.display().to_string())),
        ("prompt", Value::Str(prompt.into())),
        ("lora", lora),
    ]));
    let secs = component_step(&reg, "llm.causal", p, &randn(&[lb, 1, c.hidden], 6), 0);
    let per_token = 2.0
        * (c.hidden * c.heads * c.head_dim * 2
            + c.hidden * c.kv_heads * c.head_dim * 2
            + 3 * c.hidden * c.intermediate) as f64
        + 4.0 * (lt * c.heads * c.head_dim) as f64;
    steps.push(Step {
        name: "llm_lora",
        what: format!(
            "LLM + LoRA (SmolLM2 width, {layers} layers, {lt} tokens), batch {lb}, fwd+bwd"
        ),
        secs,
        batch: lb,
        flops: Some(2.0 * (lb * lt * layers) as f64 * per_token),
    });
    let _ = std::fs::remove_dir_all(&dir);

    for s in &steps {
        print!(
            "{}: {:.1} ms/step, {:.0} samples/s",
            s.what,
            s.secs * 1e3,
            s.batch as f64 / s.secs
        );
        if let Some(f) = s.flops {
            let g = f / s.secs / 1e9;
            print!(
                ", {g:.1} GFLOP/s = {:.0}% of the matmul peak",
                100.0 * g / peak
            );
        }
        println!();
    }

    println!();
    match pytorch(threads, (layers, lb, lt)) {
        Ok(torch) => {
            println!("\n| step | mer ms | PyTorch ms | mer / PyTorch time |\n|---|---|---|---|");
            for s in &steps {
                match torch.get(s.name) {
                    Some(t) => println!(
                        "| {} | {:.1} | {t:.1} | {:.2} |",
                        s.name,
                        s.secs * 1e3,
                        s.secs * 1e3 / t
                    ),
                    None => println!("| {} | {:.1} | – | – |", s.name, s.secs * 1e3),
                }
            }
        }
        Err(m) => println!("PyTorch reference {m}"),
    }
}
