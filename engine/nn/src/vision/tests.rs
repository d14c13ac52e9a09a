//! The towers against `transformers` (tests/golden, made by
//! tests/golden/make_vision_language.py: tiny random CLIP and SigLIP
//! folders and the outputs transformers computed for fixed inputs), and
//! finite-difference gradients of every trainable part.

use super::clip_vision::Family;
use super::*;
use mer_registry::candle::Device;
use mer_registry::{ExampleInput, Registry, Value};
use std::collections::BTreeMap;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn fixtures() -> HashMap<String, Tensor> {
    mer_registry::candle::safetensors::load(
        golden().join("vision_language.safetensors"),
        &Device::Cpu,
    )
    .expect("tests/golden/vision_language.safetensors")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn close(what: &str, ours: &Tensor, theirs: &Tensor) {
    let d = max_diff(ours, theirs);
    assert!(d < 1e-4, "{what}: max |mer − transformers| = {d:.2e}");
}

#[test]
fn clip_vision_matches_transformers() {
    let f = fixtures();
    let tower = VisionTower::load(
        &golden().join("clip-tiny"),
        Family::Clip,
        &Device::Cpu,
        false,
        None,
    )
    .unwrap();
    let out = tower.forward(&f["clip.pixel_values"]).unwrap();
    assert_eq!(out.hidden_states.len(), 3);
    for (i, h) in out.hidden_states.iter().enumerate() {
        close(
            &format!("vision hidden state {i}"),
            h,
            &f[&format!("clip.vision.hidden_states.{i}")],
        );
    }
    close(
        "vision last_hidden_state",
        &out.last,
        &f["clip.vision.last_hidden_state"],
    );
    close(
        "vision pooler_output",
        &out.pooled,
        &f["clip.vision.pooler_output"],
    );
    close("image embeds", &out.embeds, &f["clip.image_embeds"]);
    // LLaVA-style features: the penultimate layer without CLS.
    let t = tower.tokens(&out, -2, false).unwrap();
    close(
        "tokens -2 without CLS",
        &t,
        &f["clip.vision.hidden_states.1"].narrow(1, 1, 16).unwrap(),
    );
}

fn golden_ids(f: &HashMap<String, Tensor>) -> Vec<Vec<u32>> {
    let ids: Vec<Vec<i64>> = f["clip.input_ids"].to_vec2().unwrap();
    let mask: Vec<Vec<i64>> = f["clip.attention_mask"].to_vec2().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, &m)| m == 1)
                .map(|(&t, _)| t as u32)
                .collect()
        })
        .collect()
}

#[test]
fn clip_text_and_its_tokenizer_match_transformers() {
    let f = fixtures();
    let folder = golden().join("clip-tiny");
    let ids = golden_ids(&f);
    let tok = tokenizer::ClipTokenizer::from_folder(&folder).unwrap();
    let texts = [
        "a photo of a happy face",
        "sad",
        "a surprised face with raised brows",
    ];
    for (t, want) in texts.iter().zip(&ids) {
        assert_eq!(&tok.encode(t).unwrap(), want, "{t}");
    }
    let tower = TextTower::load(&folder, &Device::Cpu).unwrap();
    let out = tower.forward(&ids, None).unwrap();
    // Padded positions are compared too: transformers masks padded keys
    // the same way.
    for (i, h) in out.hidden_states.iter().enumerate() {
        close(
            &format!("text hidden state {i}"),
            h,
            &f[&format!("clip.text.hidden_states.{i}")],
        );
    }
    close(
        "text last_hidden_state",
        &out.last,
        &f["clip.text.last_hidden_state"],
    );
    close(
        "text pooler_output",
        &out.pooled,
        &f["clip.text.pooler_output"],
    );
    close("text embeds", &out.embeds, &f["clip.text_embeds"]);
    // CLIPModel's logits: exp(logit_scale) · cos.
    let scale =
        mer_registry::candle::safetensors::load(folder.join("model.safetensors"), &Device::Cpu)
            .unwrap()["logit_scale"]
            .to_scalar::<f32>()
            .unwrap()
            .exp() as f64;
    let vision = VisionTower::load(&folder, Family::Clip, &Device::Cpu, false, None).unwrap();
    let img = vision.forward(&f["clip.pixel_values"]).unwrap().embeds;
    let logits = (unit(&img)
        .unwrap()
        .matmul(&unit(&out.embeds).unwrap().t().unwrap())
        .unwrap()
        * scale)
        .unwrap();
    close("logits_per_image", &logits, &f["clip.logits_per_image"]);
}

#[test]
fn siglip_vision_matches_transformers() {
    let f = fixtures();
    let tower = VisionTower::load(
        &golden().join("siglip-tiny"),
        Family::Siglip,
        &Device::Cpu,
        false,
        None,
    )
    .unwrap();
    let out = tower.forward(&f["siglip.pixel_values"]).unwrap();
    for (i, h) in out.hidden_states.iter().enumerate() {
        close(
            &format!("siglip hidden state {i}"),
            h,
            &f[&format!("siglip.hidden_states.{i}")],
        );
    }
    close(
        "siglip last_hidden_state",
        &out.last,
        &f["siglip.last_hidden_state"],
    );
    close(
        "siglip pooler_output",
        &out.pooled,
        &f["siglip.pooler_output"],
    );
}

#[test]
fn a_checkpoint_that_does_not_match_its_config_names_the_tensor_and_both_shapes() {
    let dir = std::env::temp_dir().join(format!("mer-vision-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let folder = tiny::tiny_clip(&dir, tiny::TinySize::default(), 1).unwrap();
    let cfg = folder.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"patch_size\": 8", "\"patch_size\": 4");
    std::fs::write(&cfg, text).unwrap();
    let e = VisionTower::load(&folder, Family::Clip, &Device::Cpu, true, None)
        .err()
        .unwrap();
    assert!(
        e.0.contains("vision_model.embeddings.patch_embedding.weight")
            && e.0.contains("[32, 3, 8, 8]")
            && e.0.contains("[32, 3, 4, 4]"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn registry() -> Registry {
    crate::builtin_registry()
}

/// Every tower kind, with its trainable prompts or context, on the tiny
/// folders: gradients reach them (and the images) and match differences.
#[test]
fn prompts_and_context_pass_gradcheck() {
    let dir = std::env::temp_dir().join(format!("mer-vision-grad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let small = tiny::TinySize {
        hidden: 8,
        layers: 2,
        image: 8,
        patch: 4,
        projection: 4,
    };
    let clip = tiny::tiny_clip(&dir, small, 3).unwrap();
    let siglip = tiny::tiny_siglip(&dir, small, 4).unwrap();
    let reg = registry();
    let path = |p: &Path| Value::Str(p.display().to_string());
    type Case<'a> = (&'a str, Vec<(&'a str, Value)>, Vec<ExampleInput>);
    let cases: Vec<Case> = vec![
        (
            "clip.vision",
            vec![
                ("weights", path(&clip)),
                ("prompts", Value::Int(2)),
                ("prompt_layers", Value::Int(1)),
            ],
            vec![ExampleInput::Features(vec![2, 3, 8, 8])],
        ),
        (
            "siglip.vision",
            vec![("weights", path(&siglip)), ("prompts", Value::Int(2))],
            vec![ExampleInput::Features(vec![2, 3, 8, 8])],
        ),
        (
            "clip.text",
            vec![
                ("weights", path(&clip)),
                (
                    "classes",
                    Value::List(vec![Value::Str("happy".into()), Value::Str("sad".into())]),
                ),
                ("context", Value::Int(3)),
            ],
            vec![],
        ),
    ];
    for (kind, params, inputs) in cases {
        let k = reg.get(kind).unwrap();
        let params: BTreeMap<String, Value> = params
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect();
        let params = k.with_defaults(&params);
        let r = mer_registry::gradcheck::gradcheck(k, &params, &inputs, 5).unwrap();
        let names: Vec<&str> = r.checked.iter().map(|c| c.name.as_str()).collect();
        let trainable = if kind == "clip.text" {
            "node.context"
        } else {
            "node.prompts"
        };
        assert!(names.contains(&trainable), "{kind}: {names:?}");
        assert!(r.ok(), "{kind}: {r:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Prompts change the tower's output, and with no prompts the kind is the
/// plain tower.
#[test]
fn deep_prompts_enter_every_prompted_layer_and_leave_the_token_count_alone() {
    let folder = golden().join("clip-tiny");
    let f = fixtures();
    let x = &f["clip.pixel_values"];
    let plain = VisionTower::load(&folder, Family::Clip, &Device::Cpu, false, None).unwrap();
    let p = mer_registry::SeededRng::new(1)
        .normal_tensor(&[2, 3, 32], &Device::Cpu)
        .unwrap();
    let prompted = VisionTower::load(&folder, Family::Clip, &Device::Cpu, false, Some(p)).unwrap();
    let (a, b) = (plain.forward(x).unwrap(), prompted.forward(x).unwrap());
    assert_eq!(a.hidden_states[0].dims(), b.hidden_states[2].dims());
    assert_eq!(max_diff(&a.hidden_states[0], &b.hidden_states[0]), 0.0);
    assert!(max_diff(&a.hidden_states[1], &b.hidden_states[1]) > 1e-3);
    assert!(max_diff(&a.pooled, &b.pooled) > 1e-3);
}

/// A tiny LanguageBind video folder and the plain CLIP folder of the same
/// weights without the temporal parts (`add_time_attn` off).
fn languagebind_pair(dir: &Path, zero_temporal: bool) -> (PathBuf, PathBuf) {
    let small = tiny::TinySize {
        hidden: 8,
        layers: 2,
        image: 8,
        patch: 4,
        projection: 4,
    };
    let lb = tiny::tiny_languagebind(dir, small, 3, 5).unwrap();
    let file = lb.join("model.safetensors");
    let mut w = mer_registry::candle::safetensors::load(&file, &Device::Cpu).unwrap();
    if zero_temporal {
        for (k, t) in w.iter_mut() {
            if k.contains("temporal_embedding") || k.contains("temporal_attn.out_proj") {
                *t = t.zeros_like().unwrap();
            }
        }
        mer_registry::candle::safetensors::save(&w, &file).unwrap();
    }
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    w.retain(|k, _| !k.contains("temporal"));
    mer_registry::candle::safetensors::save(&w, plain.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lb.join("config.json")).unwrap()).unwrap();
    cfg["vision_config"]["add_time_attn"] = false.into();
    std::fs::write(plain.join("config.json"), cfg.to_string()).unwrap();
    (lb, plain)
}

/// LanguageBind's temporal step with its table and output projection at
/// zero is the identity, so the video tower is then CLIP frame by frame;
/// with them it mixes a clip's frames, and only that clip's.
#[test]
fn languagebind_adds_time_to_clip_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("mer-vision-lb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let frames = |seed: u64| {
        mer_registry::SeededRng::new(seed)
            .normal_tensor(&[6, 3, 8, 8], &Device::Cpu)
            .unwrap()
    };
    let x = frames(1);
    let open = |p: &Path| VisionTower::load(p, Family::Clip, &Device::Cpu, false, None).unwrap();
    let (zeroed, plain) = languagebind_pair(&dir.join("zero"), true);
    let (a, b) = (
        open(&zeroed).forward(&x).unwrap(),
        open(&plain).forward(&x).unwrap(),
    );
    for (i, (h1, h2)) in a.hidden_states.iter().zip(&b.hidden_states).enumerate() {
        assert!(max_diff(h1, h2) < 1e-5, "hidden state {i}");
    }
    let (lb, _) = languagebind_pair(&dir.join("real"), false);
    let tower = open(&lb);
    assert_eq!(tower.frames(), Some(3));
    let before = tower.forward(&x).unwrap().last;
    // Frame 1 of clip 0 changes: frame 0 of clip 0 sees it, clip 1 does not.
    let y = Tensor::cat(
        &[
            x.narrow(0, 0, 1).unwrap(),
            frames(2).narrow(0, 1, 1).unwrap(),
            x.narrow(0, 2, 4).unwrap(),
        ],
        0,
    )
    .unwrap();
    let after = tower.forward(&y).unwrap().last;
    let row = |t: &Tensor, i: usize| t.narrow(0, i, 1).unwrap();
    assert!(max_diff(&row(&before, 0), &row(&after, 0)) > 1e-4);
    assert_eq!(
        max_diff(
            &before.narrow(0, 3, 3).unwrap(),
            &after.narrow(0, 3, 3).unwrap()
        ),
        0.0
    );
    // Clips of another length are refused, at check time and at run time.
    let e = tower
        .forward(&x.narrow(0, 0, 4).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("clips of 3 frames"), "{e}");
    let reg = registry();
    let k = reg.get("clip.vision").unwrap();
    let p = k.with_defaults(&BTreeMap::from([
        ("weights".to_string(), Value::Str(lb.display().to_string())),
        ("prompts".to_string(), Value::Int(2)),
    ]));
    let r = mer_registry::gradcheck::gradcheck(
        k,
        &p,
        &[ExampleInput::Features(vec![1, 3, 3, 8, 8])],
        5,
    )
    .unwrap();
    assert!(r.checked.iter().any(|c| c.name == "node.prompts"), "{r:?}");
    assert!(r.ok(), "{r:?}");
    let wrong = mer_registry::gradcheck::gradcheck(
        k,
        &p,
        &[ExampleInput::Features(vec![1, 3, 2, 8, 8])],
        5,
    );
    assert!(wrong.is_err());
    let _ = std::fs::remove_dir_all(dir);
}
