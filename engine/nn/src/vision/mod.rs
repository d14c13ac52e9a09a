//! Frozen vision-language towers loaded from Hugging Face checkpoints:
//! CLIP's image and text encoders (`clip.vision`, `clip.text`), SigLIP's
//! image encoder (`siglip.vision`) and CLIP's scaled cosine logits
//! (`clip.logits`), one kind per file, on the SDK's gradient-safe ops.
//!
//! The pretrained weights stay frozen and outside the optimiser (the
//! frozen matmul computes no weight gradient); what trains are the
//! parameters a recipe adds to them: deep visual prompts on the image
//! towers and learnable context tokens (CoOp) on the text tower. Tensor
//! names and shapes are checked strictly against the folder's
//! `config.json`; an error names the tensor and both shapes.
//! Golden tests hold every output to `transformers` (tests/golden).

mod clip_text;
mod clip_vision;
mod logits;
mod siglip_vision;
pub mod tiny;
pub mod tokenizer;

pub use clip_text::TextOut;
pub use clip_text::TextTower;
pub use clip_vision::{VisionOut, VisionTower};

use mer_registry::candle::{DType, Device, Tensor};
use mer_registry::layers::{frozen_matmul, softmax, LayerNorm};
use mer_registry::{BuildError, Kind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type CResult<T> = mer_registry::candle::Result<T>;

/// Every kind of this module.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        clip_vision::kind(),
        siglip_vision::kind(),
        clip_text::kind(),
        logits::kind(),
    ]
}

/// A checkpoint folder's tensors, taken one by one with their shapes
/// checked, so that a wrong or truncated checkpoint fails at build time
/// with the tensor's name instead of as a shape error mid-forward.
pub(crate) struct Checkpoint {
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
}

impl Checkpoint {
    /// The safetensors of `path` (a folder, its shards, or one file), in f32.
    pub(crate) fn open(path: &Path, device: &Device) -> Result<Checkpoint, BuildError> {
        let mut tensors = mer_registry::weights::load_safetensors(path, device)?;
        for t in tensors.values_mut() {
            if t.dtype() != DType::F32 {
                *t = t.to_dtype(DType::F32)?;
            }
        }
        Ok(Checkpoint {
            tensors,
            path: path.to_path_buf(),
        })
    }

    /// Removes and returns `name`, which must have exactly `dims`.
    pub(crate) fn take(&mut self, name: &str, dims: &[usize]) -> Result<Tensor, BuildError> {
        let t = self.tensors.remove(name).ok_or_else(|| {
            let mut near: Vec<&String> = self.tensors.keys().collect();
            near.sort();
            let near: Vec<&str> = near.iter().take(3).map(|s| s.as_str()).collect();
            BuildError(format!(
                "`{}` has no tensor `{name}` (its {} other tensors include {})",
                self.path.display(),
                self.tensors.len(),
                if near.is_empty() {
                    "none".to_string()
                } else {
                    near.join(", ")
                }
            ))
        })?;
        if t.dims() != dims {
            return Err(BuildError(format!(
                "`{}`: tensor `{name}` is {:?}, its config.json implies {dims:?}",
                self.path.display(),
                t.dims()
            )));
        }
        Ok(t)
    }

    /// A torch `nn.Linear` (`weight` `[out, in]`, optional `bias`) as a
    /// frozen `[in, out]` map.
    pub(crate) fn linear(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Frozen, BuildError> {
        let w = self.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let b = if bias {
            Some(self.take(&format!("{prefix}.bias"), &[d_out])?)
        } else {
            None
        };
        Ok(Frozen {
            w: w.t()?.contiguous()?,
            b,
        })
    }

    /// A torch `nn.LayerNorm` of width `d`.
    pub(crate) fn norm(
        &mut self,
        prefix: &str,
        d: usize,
        eps: f64,
    ) -> Result<LayerNorm, BuildError> {
        Ok(LayerNorm {
            eps,
            affine: Some((
                self.take(&format!("{prefix}.weight"), &[d])?,
                self.take(&format!("{prefix}.bias"), &[d])?,
            )),
            rms: false,
        })
    }

    /// Fails on tensors under `prefix` that nothing took: a checkpoint with
    /// more layers or other modules than its config says is not the model
    /// this config describes.
    pub(crate) fn no_leftovers(&self, prefix: &str) -> Result<(), BuildError> {
        let mut left: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix) && !k.ends_with("position_ids"))
            .collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(first) => Err(BuildError(format!(
                "`{}`: {} tensor(s) under `{prefix}` that its config.json does not describe, e.g. `{first}`",
                self.path.display(),
                left.len()
            ))),
        }
    }
}

/// A pretrained linear map that never trains: `[in, out]` and a bias.
pub(crate) struct Frozen {
    w: Tensor,
    b: Option<Tensor>,
}

impl Frozen {
    pub(crate) fn apply(&self, x: &Tensor) -> CResult<Tensor> {
        let y = frozen_matmul(x, &self.w)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// The MLP activations of the towers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    /// OpenAI CLIP's `x·σ(1.702x)`.
    QuickGelu,
    /// `gelu_pytorch_tanh` (SigLIP).
    GeluTanh,
    /// The exact erf GELU.
    Gelu,
}

impl Act {
    pub(crate) fn from_hf(name: &str) -> Result<Act, BuildError> {
        match name {
            "quick_gelu" => Ok(Act::QuickGelu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Act::GeluTanh),
            "gelu" => Ok(Act::Gelu),
            other => Err(BuildError(format!(
                "hidden_act `{other}` is not supported (quick_gelu, gelu, gelu_pytorch_tanh)"
            ))),
        }
    }

    pub(crate) fn apply(self, x: &Tensor) -> CResult<Tensor> {
        match self {
            // σ from primitives: every op here records its backward.
            Act::QuickGelu => x * ((x * -1.702)?.exp()? + 1.0)?.recip()?,
            Act::GeluTanh => x.gelu(),
            Act::Gelu => x.gelu_erf(),
        }
    }
}

/// One pre-norm transformer layer as CLIP and SigLIP write it:
/// `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`.
pub(crate) struct Layer {
    ln1: LayerNorm,
    q: Frozen,
    k: Frozen,
    v: Frozen,
    o: Frozen,
    ln2: LayerNorm,
    fc1: Frozen,
    fc2: Frozen,
    /// LanguageBind's video layers: attention over time first.
    temporal: Option<Temporal>,
}

/// The temporal step LanguageBind's video tower adds to each CLIP layer
/// (`add_time_attn`, its `CLIPEncoderLayer`): `x += E` (a `[T, D]` table,
/// the same for every token, CLS included), then `x += attn_t(ln_t(x))`
/// where every token attends to itself in the clip's other frames.
pub(crate) struct Temporal {
    /// `[1, T, 1, D]`, broadcast over batch and tokens.
    embedding: Tensor,
    ln: LayerNorm,
    q: Frozen,
    k: Frozen,
    v: Frozen,
    o: Frozen,
}

/// The encoder's shape, from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub eps: f64,
    pub act: Act,
    /// `num_frames` of a tower with LanguageBind's temporal attention
    /// (`add_time_attn`); `None` for image towers.
    pub frames: Option<usize>,
}

impl Shape {
    /// Reads the encoder numbers of a (sub-)config.
    pub(crate) fn from_json(j: &serde_json::Value, file: &Path) -> Result<Shape, BuildError> {
        let need = |k: &str| {
            j.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| BuildError(format!("`{}` has no `{k}`", file.display())))
        };
        let hidden = need("hidden_size")?;
        let heads = need("num_attention_heads")?;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(BuildError(format!(
                "`{}`: hidden_size {hidden} does not split into {heads} heads",
                file.display()
            )));
        }
        Ok(Shape {
            hidden,
            intermediate: need("intermediate_size")?,
            layers: need("num_hidden_layers")?,
            heads,
            eps: j
                .get("layer_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-5),
            act: Act::from_hf(
                j.get("hidden_act")
                    .and_then(|v| v.as_str())
                    .unwrap_or("quick_gelu"),
            )?,
            frames: match j.get("add_time_attn").and_then(|v| v.as_bool()) {
                Some(true) => Some(need("num_frames")?.max(1)),
                _ => None,
            },
        })
    }
}

/// The config of an HF folder (`config.json`), and its `sub` section when
/// it has one (`vision_config` of a `CLIPModel`; a `CLIPVisionModel` keeps
/// the numbers at the top level).
pub(crate) fn config(
    path: &Path,
    sub: &str,
) -> Result<(serde_json::Value, serde_json::Value, PathBuf), BuildError> {
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.with_file_name("config.json")
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        BuildError(format!(
            "`{}`: {e} (a tower is a Hugging Face folder with config.json and model.safetensors)",
            file.display()
        ))
    })?;
    let top: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BuildError(format!("`{}`: {e}", file.display())))?;
    let part = top.get(sub).cloned().unwrap_or_else(|| top.clone());
    Ok((top, part, file))
}

/// A tower's encoder: its layers and head count.
pub(crate) struct Encoder {
    pub layers: Vec<Layer>,
    heads: usize,
    act: Act,
    /// Frames per clip of a video tower: its batch is `(clips · frames)`
    /// rows, clip-major.
    pub frames: Option<usize>,
}

impl Encoder {
    /// Loads `<prefix>.layers.<i>.…` for every layer of `s`.
    pub(crate) fn load(
        ck: &mut Checkpoint,
        prefix: &str,
        s: &Shape,
    ) -> Result<Encoder, BuildError> {
        let d = s.hidden;
        let mut layers = Vec::with_capacity(s.layers);
        for i in 0..s.layers {
            let p = format!("{prefix}.layers.{i}");
            layers.push(Layer {
                ln1: ck.norm(&format!("{p}.layer_norm1"), d, s.eps)?,
                q: ck.linear(&format!("{p}.self_attn.q_proj"), d, d, true)?,
                k: ck.linear(&format!("{p}.self_attn.k_proj"), d, d, true)?,
                v: ck.linear(&format!("{p}.self_attn.v_proj"), d, d, true)?,
                o: ck.linear(&format!("{p}.self_attn.out_proj"), d, d, true)?,
                ln2: ck.norm(&format!("{p}.layer_norm2"), d, s.eps)?,
                fc1: ck.linear(&format!("{p}.mlp.fc1"), d, s.intermediate, true)?,
                fc2: ck.linear(&format!("{p}.mlp.fc2"), s.intermediate, d, true)?,
                temporal: match s.frames {
                    Some(t) => Some(Temporal {
                        embedding: ck
                            .take(&format!("{p}.temporal_embedding"), &[1, t, d])?
                            .reshape((1, t, 1, d))?,
                        ln: ck.norm(&format!("{p}.temporal_layer_norm1"), d, s.eps)?,
                        q: ck.linear(&format!("{p}.temporal_attn.q_proj"), d, d, true)?,
                        k: ck.linear(&format!("{p}.temporal_attn.k_proj"), d, d, true)?,
                        v: ck.linear(&format!("{p}.temporal_attn.v_proj"), d, d, true)?,
                        o: ck.linear(&format!("{p}.temporal_attn.out_proj"), d, d, true)?,
                    }),
                    None => None,
                },
            });
        }
        Ok(Encoder {
            layers,
            heads: s.heads,
            act: s.act,
            frames: s.frames,
        })
    }

    /// Layer `i` on `[B, N, D]`; `mask` `[N, N]` or `[B, 1, N, N]` is added
    /// to the attention scores.
    pub(crate) fn layer(&self, i: usize, x: &Tensor, mask: Option<&Tensor>) -> CResult<Tensor> {
        let l = &self.layers[i];
        let x = match (&l.temporal, self.frames) {
            (Some(tp), Some(t)) => self.temporal(tp, t, x)?,
            _ => x.clone(),
        };
        let x = &x;
        let h = l.ln1.apply(x)?;
        let x = (x + attention(&h, &l.q, &l.k, &l.v, &l.o, self.heads, mask)?)?;
        let m = l
            .fc2
            .apply(&self.act.apply(&l.fc1.apply(&l.ln2.apply(&x)?)?)?)?;
        x + m
    }
}

impl Encoder {
    /// LanguageBind's temporal step on `[(B·T), N, D]`, clip-major rows.
    fn temporal(&self, tp: &Temporal, t: usize, x: &Tensor) -> CResult<Tensor> {
        let (bt, n, d) = x.dims3()?;
        if bt % t != 0 {
            mer_registry::candle::bail!(
                "this video tower takes clips of {t} frames; {bt} frames is not a whole number of clips"
            );
        }
        let b = bt / t;
        // LanguageBind skips the table for single frames, never the attention.
        let x = if t == 1 {
            x.clone()
        } else {
            x.reshape((b, t, n, d))?
                .broadcast_add(&tp.embedding)?
                .reshape((bt, n, d))?
        };
        let across = |y: &Tensor| -> CResult<Tensor> {
            y.reshape((b, t, n, d))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * n, t, d))
        };
        let y = attention(
            &tp.ln.apply(&across(&x)?)?,
            &tp.q,
            &tp.k,
            &tp.v,
            &tp.o,
            self.heads,
            None,
        )?;
        let back = y
            .reshape((b, n, t, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((bt, n, d))?;
        x + back
    }
}

/// Multi-head self-attention with frozen projections; scores scaled by
/// 1/√head_dim as in both towers.
fn attention(
    x: &Tensor,
    q: &Frozen,
    k: &Frozen,
    v: &Frozen,
    o: &Frozen,
    heads: usize,
    mask: Option<&Tensor>,
) -> CResult<Tensor> {
    let (b, n, d) = x.dims3()?;
    let hd = d / heads;
    let split = |t: Tensor| -> CResult<Tensor> {
        t.reshape((b, n, heads, hd))?.transpose(1, 2)?.contiguous()
    };
    let (q, k, v) = (
        split(q.apply(x)?)?,
        split(k.apply(x)?)?,
        split(v.apply(x)?)?,
    );
    let mut scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    if let Some(m) = mask {
        scores = scores.broadcast_add(m)?;
    }
    let y = softmax(&scores)?
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, n, d))?;
    o.apply(&y)
}

/// `[B, C, H, W]` → `[B, (H/p)·(W/p), C·p·p]`: non-overlapping patches in
/// row-major order, each flattened channel-major as a Conv2d weight is.
pub(crate) fn patches(x: &Tensor, p: usize) -> CResult<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (nh, nw) = (h / p, w / p);
    x.reshape((b, c, nh, p, nw, p))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b, nh * nw, c * p * p))
}

/// Per-channel `(x − mean) / std` with a preprocessor's constants, on
/// `[B, 3, H, W]`.
pub(crate) fn normalize(x: &Tensor, mean: [f32; 3], std: [f32; 3]) -> CResult<Tensor> {
    let dev = x.device();
    let m = Tensor::new(&mean, dev)?.reshape((1, 3, 1, 1))?;
    let s = Tensor::new(&std, dev)?.reshape((1, 3, 1, 1))?;
    x.broadcast_sub(&m)?.broadcast_div(&s)
}

/// CLIP's learnt `exp(logit_scale)` from a checkpoint, when it has one.
pub fn logit_scale(path: &Path) -> Option<f64> {
    let t = Checkpoint::open(path, &Device::Cpu)
        .ok()?
        .tensors
        .remove("logit_scale")?;
    Some(t.to_scalar::<f32>().ok()?.exp() as f64)
}

/// A shape error that names the kind.
pub(crate) fn fail(c: &mer_registry::ShapeCtx, message: String) -> mer_registry::ShapeError {
    mer_registry::ShapeError::new(format!("`{}`: {message}", c.kind))
}

pub use mer_registry::layers::unit;

#[cfg(test)]
mod tests;
