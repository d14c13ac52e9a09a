//! Random CLIP, SigLIP and LanguageBind-video folders in Hugging Face's
//! layout (`mer models tiny --arch clip|siglip|languagebind`): config.json,
//! model.safetensors and, for CLIP, a byte-level tokenizer.json. Not a model of anything; a way to run every
//! code path of the towers in seconds without pretrained weights, which no
//! package registry ships.

use super::tokenizer::{tiny_tokenizer, tiny_tokenizer_json};
use mer_registry::candle::{Device, Tensor};
use mer_registry::{BuildError, SeededRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tiny towers' sizes.
#[derive(Debug, Clone, Copy)]
pub struct TinySize {
    /// Hidden width of both towers (a multiple of 4: 4 heads).
    pub hidden: usize,
    /// Encoder layers of each tower.
    pub layers: usize,
    /// Input side in pixels.
    pub image: usize,
    /// Patch side in pixels.
    pub patch: usize,
    /// CLIP's shared embedding width.
    pub projection: usize,
}

impl TinySize {
    fn check(&self) -> Result<(), BuildError> {
        if self.hidden == 0
            || !self.hidden.is_multiple_of(4)
            || self.patch == 0
            || !self.image.is_multiple_of(self.patch)
        {
            return Err(BuildError(format!(
                "a tiny tower needs a width that is a multiple of 4 and an image side that is a multiple of the patch ({self:?})"
            )));
        }
        Ok(())
    }
}

impl Default for TinySize {
    fn default() -> Self {
        TinySize {
            hidden: 32,
            layers: 2,
            image: 32,
            patch: 8,
            projection: 16,
        }
    }
}

struct Writer {
    rng: SeededRng,
    w: HashMap<String, Tensor>,
}

impl Writer {
    fn randn(&mut self, name: String, dims: &[usize], std: f64) -> Result<(), BuildError> {
        let t = (self.rng.normal_tensor(dims, &Device::Cpu)? * std)?;
        self.w.insert(name, t);
        Ok(())
    }
    fn norm(&mut self, prefix: &str, d: usize) -> Result<(), BuildError> {
        self.randn(format!("{prefix}.weight"), &[d], 0.1)?;
        let w = (self.w[&format!("{prefix}.weight")].clone() + 1.0)?;
        self.w.insert(format!("{prefix}.weight"), w);
        self.randn(format!("{prefix}.bias"), &[d], 0.1)
    }
    fn linear(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<(), BuildError> {
        self.randn(
            format!("{prefix}.weight"),
            &[d_out, d_in],
            1.0 / (d_in as f64).sqrt(),
        )?;
        if bias {
            self.randn(format!("{prefix}.bias"), &[d_out], 0.02)?;
        }
        Ok(())
    }
    /// CLIP's image tower up to its encoder, under `vision_model.`.
    fn clip_vision(&mut self, s: &TinySize) -> Result<(), BuildError> {
        let (d, p) = (s.hidden, s.patch);
        let n = (s.image / p).pow(2);
        self.randn("vision_model.embeddings.class_embedding".into(), &[d], 0.5)?;
        self.randn(
            "vision_model.embeddings.patch_embedding.weight".into(),
            &[d, 3, p, p],
            0.1,
        )?;
        self.randn(
            "vision_model.embeddings.position_embedding.weight".into(),
            &[n + 1, d],
            0.1,
        )?;
        self.norm("vision_model.pre_layrnorm", d)?;
        self.encoder("vision_model.encoder", s)
    }

    fn encoder(&mut self, prefix: &str, s: &TinySize) -> Result<(), BuildError> {
        let d = s.hidden;
        for i in 0..s.layers {
            let p = format!("{prefix}.layers.{i}");
            self.norm(&format!("{p}.layer_norm1"), d)?;
            for x in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                self.linear(&format!("{p}.self_attn.{x}"), d, d, true)?;
            }
            self.norm(&format!("{p}.layer_norm2"), d)?;
            self.linear(&format!("{p}.mlp.fc1"), d, 2 * d, true)?;
            self.linear(&format!("{p}.mlp.fc2"), 2 * d, d, true)?;
        }
        Ok(())
    }
}

fn encoder_config(s: &TinySize, act: &str, eps: f64) -> serde_json::Value {
    serde_json::json!({
        "hidden_size": s.hidden, "intermediate_size": 2 * s.hidden,
        "num_hidden_layers": s.layers, "num_attention_heads": 4,
        "hidden_act": act, "layer_norm_eps": eps,
    })
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn write(
    folder: &Path,
    config: serde_json::Value,
    w: &HashMap<String, Tensor>,
) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError(format!("{}: {e}", folder.display()));
    std::fs::create_dir_all(folder).map_err(io)?;
    std::fs::write(
        folder.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap_or_default(),
    )
    .map_err(io)?;
    mer_registry::candle::safetensors::save(w, folder.join("model.safetensors"))?;
    Ok(())
}

/// A random `CLIPModel` (both towers) with its tokenizer in `dir/clip-tiny`.
pub fn tiny_clip(dir: &Path, s: TinySize, seed: u64) -> Result<PathBuf, BuildError> {
    s.check()?;
    let tok = tiny_tokenizer()?;
    let vocab = tok.vocab_size();
    let (sot, eot) = (vocab as u32 - 2, vocab as u32 - 1);
    let mut wr = Writer {
        rng: SeededRng::new(seed),
        w: HashMap::new(),
    };
    let (d, p) = (s.hidden, s.patch);
    wr.clip_vision(&s)?;
    wr.norm("vision_model.post_layernorm", d)?;
    wr.linear("visual_projection", d, s.projection, false)?;
    let max_len = 77; // OpenAI CLIP's context length: real prompts fit as they would.
    wr.randn(
        "text_model.embeddings.token_embedding.weight".into(),
        &[vocab, d],
        0.5,
    )?;
    wr.randn(
        "text_model.embeddings.position_embedding.weight".into(),
        &[max_len, d],
        0.1,
    )?;
    wr.encoder("text_model.encoder", &s)?;
    wr.norm("text_model.final_layer_norm", d)?;
    wr.linear("text_projection", d, s.projection, false)?;
    wr.w.insert("logit_scale".into(), Tensor::new(2.6592f32, &Device::Cpu)?);
    let config = serde_json::json!({
        "architectures": ["CLIPModel"], "model_type": "clip",
        "projection_dim": s.projection, "logit_scale_init_value": 2.6592,
        "vision_config": merge(encoder_config(&s, "quick_gelu", 1e-5), serde_json::json!({
            "image_size": s.image, "patch_size": p, "num_channels": 3,
        })),
        "text_config": merge(encoder_config(&s, "quick_gelu", 1e-5), serde_json::json!({
            "vocab_size": vocab, "max_position_embeddings": max_len,
            "bos_token_id": sot, "eos_token_id": eot, "pad_token_id": eot,
        })),
    });
    let folder = dir.join("clip-tiny");
    write(&folder, config, &wr.w)?;
    std::fs::write(folder.join("tokenizer.json"), tiny_tokenizer_json())
        .map_err(|e| BuildError(format!("{}: {e}", folder.display())))?;
    Ok(folder)
}

/// A random `SiglipVisionModel` (with its attention-pooling head) in
/// `dir/siglip-tiny`.
pub fn tiny_siglip(dir: &Path, s: TinySize, seed: u64) -> Result<PathBuf, BuildError> {
    s.check()?;
    let mut wr = Writer {
        rng: SeededRng::new(seed),
        w: HashMap::new(),
    };
    let (d, p) = (s.hidden, s.patch);
    let n = (s.image / p).pow(2);
    wr.randn(
        "vision_model.embeddings.patch_embedding.weight".into(),
        &[d, 3, p, p],
        0.1,
    )?;
    wr.randn(
        "vision_model.embeddings.patch_embedding.bias".into(),
        &[d],
        0.02,
    )?;
    wr.randn(
        "vision_model.embeddings.position_embedding.weight".into(),
        &[n, d],
        0.1,
    )?;
    wr.encoder("vision_model.encoder", &s)?;
    wr.norm("vision_model.post_layernorm", d)?;
    wr.randn("vision_model.head.probe".into(), &[1, 1, d], 0.5)?;
    wr.randn(
        "vision_model.head.attention.in_proj_weight".into(),
        &[3 * d, d],
        1.0 / (d as f64).sqrt(),
    )?;
    wr.randn(
        "vision_model.head.attention.in_proj_bias".into(),
        &[3 * d],
        0.02,
    )?;
    wr.linear("vision_model.head.attention.out_proj", d, d, true)?;
    wr.norm("vision_model.head.layernorm", d)?;
    wr.linear("vision_model.head.mlp.fc1", d, 2 * d, true)?;
    wr.linear("vision_model.head.mlp.fc2", 2 * d, d, true)?;
    let config = merge(
        encoder_config(&s, "gelu_pytorch_tanh", 1e-6),
        serde_json::json!({
            "architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model",
            "image_size": s.image, "patch_size": p, "num_channels": 3, "vision_use_head": true,
        }),
    );
    let folder = dir.join("siglip-tiny");
    write(&folder, config, &wr.w)?;
    Ok(folder)
}

/// A random LanguageBind video tower (`dir/languagebind-tiny`): CLIP's
/// vision layout, exact GELU, and in every layer the temporal embedding
/// `[1, frames, D]`, `temporal_layer_norm1` and `temporal_attn`, under the
/// names LanguageBind's `CLIPEncoderLayer` gives them (`add_time_attn`).
pub fn tiny_languagebind(
    dir: &Path,
    s: TinySize,
    frames: usize,
    seed: u64,
) -> Result<PathBuf, BuildError> {
    s.check()?;
    let mut wr = Writer {
        rng: SeededRng::new(seed),
        w: HashMap::new(),
    };
    let (d, p) = (s.hidden, s.patch);
    wr.clip_vision(&s)?;
    for i in 0..s.layers {
        let l = format!("vision_model.encoder.layers.{i}");
        wr.randn(format!("{l}.temporal_embedding"), &[1, frames, d], 0.1)?;
        wr.norm(&format!("{l}.temporal_layer_norm1"), d)?;
        for x in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            wr.linear(&format!("{l}.temporal_attn.{x}"), d, d, true)?;
        }
    }
    wr.norm("vision_model.post_layernorm", d)?;
    wr.linear("visual_projection", d, s.projection, false)?;
    let config = serde_json::json!({
        "architectures": ["LanguageBindVideo"], "model_type": "LanguageBindVideo",
        "projection_dim": s.projection,
        "vision_config": merge(encoder_config(&s, "gelu", 1e-5), serde_json::json!({
            "image_size": s.image, "patch_size": p, "num_channels": 3,
            "add_time_attn": true, "num_frames": frames, "force_patch_dropout": 0.0,
        })),
    });
    let folder = dir.join("languagebind-tiny");
    write(&folder, config, &wr.w)?;
    Ok(folder)
}
