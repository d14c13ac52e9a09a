//! LLaMA- and Qwen2-family causal language models, written on the SDK's
//! gradient-safe ops so that a prefix of visual tokens and LoRA adapters
//! train through them.
//!
//! candle-transformers' own llama/qwen2 modules take token ids, return only
//! the last position's logits and keep their layers private
//! (`shared/research/rust-ml-stack.md` §2), so this body is ours:
//! - [`Weights::open`] reads a Hugging Face folder (`config.json` + one or
//!   sharded safetensors) or a GGUF file (dequantised to f32, llama.cpp's
//!   Q/K row permutation undone, so both give the same model and the same
//!   PEFT adapter names);
//! - [`Body::forward`] takes embeddings and returns every position's hidden
//!   state; base weights are plain tensors (never optimiser variables),
//!   adapters are [`LoraLinear`]s on the named projections;
//! - [`Body::generate`] decodes greedily with a KV cache.

pub mod chat;
pub mod describe;
pub mod generate;
pub mod gguf;
pub mod instruct;
mod instruct_lm;
pub mod tiny;
pub mod tokenizer;

use crate::layers::LoraLinear;
use crate::layers::{b, lora_record, sz};
use mer_registry::candle::{DType, Device, Result as CResult, Tensor, D};
use mer_registry::layers::softmax;
use mer_registry::rng::SeededRng;
use mer_registry::{BuildCtx, BuildError, Mode};
use mer_registry::{
    Dim, ExampleInput, Kind, KindBuilder, ParamType, Role, Semantic, ShapeCtx, ShapeError,
    TensorType, Value,
};
use std::collections::HashMap;
use std::path::Path;

/// The architecture numbers of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// `llama` or `qwen2`.
    pub arch: String,
    /// Vocabulary size: the rows of the token embedding and of `lm_head`.
    pub vocab: usize,
    /// Width of the residual stream (`hidden_size`): the D of `[B, T, D]`
    /// embeddings and hidden states.
    pub hidden: usize,
    /// Width of the gated (SiLU) MLP's gate and up projections
    /// (`intermediate_size`).
    pub intermediate: usize,
    /// Number of decoder layers (`num_hidden_layers`); [`Weights::keep_layers`]
    /// lowers it when a recipe keeps only the first ones.
    pub layers: usize,
    /// Number of query heads (`num_attention_heads`).
    pub heads: usize,
    /// Number of key/value heads (`num_key_value_heads`, `heads` when absent);
    /// fewer than `heads` under grouped-query attention, and must divide it.
    pub kv_heads: usize,
    /// Width of one attention head: `head_dim` from the config, else
    /// `hidden / heads`; must be even for the rotary embedding.
    pub head_dim: usize,
    /// Base of the rotary embedding's inverse frequencies (`rope_theta`,
    /// 10 000 when absent).
    pub rope_theta: f64,
    /// Epsilon added to the mean square in every RMSNorm (`rms_norm_eps`,
    /// 1e-6 when absent).
    pub rms_eps: f64,
    /// Whether the output projection reuses the token embedding
    /// (`tie_word_embeddings`; for GGUF, when the file has no `output.weight`).
    pub tie_embeddings: bool,
    /// Qwen2 has biases on q/k/v.
    pub attn_bias: bool,
    /// The beginning-of-sequence token id, `None` when the checkpoint names none.
    pub bos: Option<u32>,
    /// End-of-sequence token ids: greedy decoding stops at any of them; empty
    /// when the checkpoint names none.
    pub eos: Vec<u32>,
}

fn bad(what: &str) -> BuildError {
    BuildError(what.to_string())
}

impl LlmConfig {
    /// From a Hugging Face `config.json` (LlamaForCausalLM, Qwen2ForCausalLM).
    pub fn from_hf(text: &str, file: &Path) -> Result<LlmConfig, BuildError> {
        let j: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| BuildError(format!("`{}`: {e}", file.display())))?;
        let int = |k: &str| j.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        let need = |k: &str| {
            int(k).ok_or_else(|| BuildError(format!("`{}` has no `{k}`", file.display())))
        };
        let arch = j
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("llama")
            .to_string();
        if arch != "llama" && arch != "qwen2" {
            return Err(BuildError(format!(
                "`{}`: model_type `{arch}` is not supported (llama, qwen2)",
                file.display()
            )));
        }
        let hidden = need("hidden_size")?;
        let heads = need("num_attention_heads")?;
        let eos = match j.get("eos_token_id") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            Some(v) => v.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            None => vec![],
        };
        Ok(LlmConfig {
            vocab: need("vocab_size")?,
            intermediate: need("intermediate_size")?,
            layers: need("num_hidden_layers")?,
            kv_heads: int("num_key_value_heads").unwrap_or(heads),
            head_dim: int("head_dim").unwrap_or(hidden / heads.max(1)),
            rope_theta: j
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0),
            rms_eps: j
                .get("rms_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-6),
            tie_embeddings: j
                .get("tie_word_embeddings")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            attn_bias: arch == "qwen2"
                || j.get("attention_bias").and_then(|v| v.as_bool()) == Some(true),
            bos: int("bos_token_id").map(|v| v as u32),
            eos,
            hidden,
            heads,
            arch,
        })
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(bad("attention heads must be a multiple of key/value heads"));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad("rotary embeddings need an even head width"));
        }
        Ok(())
    }
}

/// A checkpoint in Hugging Face names (`model.layers.0.self_attn.q_proj.weight`).
pub struct Weights {
    /// The architecture numbers, from `config.json` or the GGUF metadata.
    pub config: LlmConfig,
    /// Every tensor by Hugging Face name, as f32 on the target device;
    /// [`Body::new`] takes the ones it uses out of this map.
    pub tensors: HashMap<String, Tensor>,
    /// GGUF metadata for the tokenizer, when the weights came from GGUF.
    pub gguf: Option<gguf::Metadata>,
}

impl Weights {
    /// Keeps the first `n` decoder layers and drops the others' tensors.
    pub fn keep_layers(&mut self, n: usize) -> Result<(), BuildError> {
        if n == 0 || n > self.config.layers {
            return Err(BuildError(format!(
                "`layers = {n}`: this model has {} decoder layers",
                self.config.layers
            )));
        }
        self.tensors.retain(|k, _| {
            k.strip_prefix("model.layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
                .is_none_or(|i| i < n)
        });
        self.config.layers = n;
        Ok(())
    }

    /// A Hugging Face folder or a `.gguf` file, every tensor in f32.
    pub fn open(path: &Path, device: &Device) -> Result<Weights, BuildError> {
        Weights::open_as(path, device, DType::F32)
    }

    /// [`Weights::open`] with the frozen matrices held in `dtype` (bf16 or
    /// f16 halve a GPU's memory for an LLM body); vectors (norms, biases)
    /// stay f32. On the CPU everything is f32 whatever `dtype` says: candle's
    /// CPU matmul has no fast half-precision path, so bf16 there would only
    /// be slower and less exact.
    pub fn open_as(path: &Path, device: &Device, dtype: DType) -> Result<Weights, BuildError> {
        let dtype = if device.is_cpu() { DType::F32 } else { dtype };
        if path.extension().is_some_and(|e| e == "gguf") {
            return gguf::load(path, device);
        }
        let cfg_path = path.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            BuildError(format!(
                "`{}`: {e} (an LLM is a Hugging Face folder with config.json, or a .gguf file)",
                cfg_path.display()
            ))
        })?;
        let config = LlmConfig::from_hf(&text, &cfg_path)?;
        let mut tensors = mer_registry::weights::load_safetensors(path, device)?;
        for t in tensors.values_mut() {
            let want = if t.rank() >= 2 { dtype } else { DType::F32 };
            if t.dtype() != want {
                *t = t.to_dtype(want)?;
            }
        }
        Ok(Weights {
            config,
            tensors,
            gguf: None,
        })
    }

    fn take(&mut self, name: &str, dims: &[usize]) -> Result<Tensor, BuildError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| BuildError(format!("the checkpoint has no `{name}`")))?;
        if t.dims() != dims {
            return Err(BuildError(format!(
                "`{name}` is {:?}, the config implies {dims:?}",
                t.dims()
            )));
        }
        Ok(t)
    }
}

/// A projection with a frozen base and, when targeted, a LoRA adapter.
struct Proj {
    /// `[in, out]`, frozen.
    w: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraLinear>,
}

impl Proj {
    fn apply(&self, x: &Tensor, mode: Mode, rng: &mut SeededRng) -> CResult<Tensor> {
        let y = match &self.lora {
            Some(l) => l.apply(x, mode, rng)?,
            None => mer_registry::layers::frozen_matmul(x, &self.w)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    mlp_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// LoRA settings: rank, alpha, dropout and the projections that get them
/// (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// Rank r of the low-rank update `B·A` (`A` is `[r, in]`, `B` is `[out, r]`).
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input, applied only in training.
    pub dropout: f64,
    /// Projection names that get adapters, each one of [`PROJECTIONS`].
    pub targets: Vec<String>,
}

/// All projection names a LoRA target may name.
pub const PROJECTIONS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// One key/value cache per layer: `[B, kv_heads, L, head_dim]` each.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }
    /// Whether nothing is cached yet (no position has been fed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The transformer: embeddings in, hidden states of every position out.
pub struct Body {
    /// The architecture numbers the body was built with (after any
    /// [`Weights::keep_layers`]).
    pub config: LlmConfig,
    /// `[vocab, hidden]`, frozen.
    embed: Tensor,
    /// `[hidden, vocab]`, frozen (the embedding's transpose when tied).
    lm_head: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    inv_freq: Vec<f32>,
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> CResult<Tensor> {
    // Written with primitives: candle's fused rms_norm records no backward.
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

impl Body {
    /// Builds the body from `weights`; adapters (when `lora` is given) are
    /// created in `ctx`'s store under `model.layers.<i>.<module>.<proj>.`.
    pub fn new(
        mut weights: Weights,
        lora: Option<&LoraSpec>,
        ctx: &mut BuildCtx,
    ) -> Result<Body, BuildError> {
        let c = weights.config.clone();
        c.check()?;
        if let Some(l) = lora {
            if let Some(t) = l
                .targets
                .iter()
                .find(|t| !PROJECTIONS.contains(&t.as_str()))
            {
                return Err(BuildError(format!(
                    "LoRA target `{t}` is not a projection of this model (one of {})",
                    PROJECTIONS.join(", ")
                )));
            }
        }
        let (d, hd) = (c.hidden, c.head_dim);
        let embed = weights.take("model.embed_tokens.weight", &[c.vocab, d])?;
        let lm_head = if weights.tensors.contains_key("lm_head.weight") && !c.tie_embeddings {
            weights
                .take("lm_head.weight", &[c.vocab, d])?
                .t()?
                .contiguous()?
        } else {
            embed.t()?.contiguous()?
        };
        let norm = weights.take("model.norm.weight", &[d])?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let p = format!("model.layers.{i}");
            let mut proj = |module: &str, name: &str, out: usize, inp: usize, bias: bool| {
                let key = format!("{p}.{module}.{name}");
                let w = weights
                    .take(&format!("{key}.weight"), &[out, inp])?
                    .t()?
                    .contiguous()?;
                let bias = if bias {
                    Some(weights.take(&format!("{key}.bias"), &[out])?)
                } else {
                    None
                };
                let lora = match lora {
                    Some(l) if l.targets.iter().any(|t| t == name) => Some(LoraLinear::new(
                        ctx,
                        &format!("{key}."),
                        w.clone(),
                        l.rank,
                        l.alpha,
                        l.dropout,
                    )?),
                    _ => None,
                };
                Ok::<Proj, BuildError>(Proj { w, bias, lora })
            };
            let q = proj("self_attn", "q_proj", c.heads * hd, d, c.attn_bias)?;
            let k = proj("self_attn", "k_proj", c.kv_heads * hd, d, c.attn_bias)?;
            let v = proj("self_attn", "v_proj", c.kv_heads * hd, d, c.attn_bias)?;
            let o = proj("self_attn", "o_proj", d, c.heads * hd, false)?;
            let gate = proj("mlp", "gate_proj", c.intermediate, d, false)?;
            let up = proj("mlp", "up_proj", c.intermediate, d, false)?;
            let down = proj("mlp", "down_proj", d, c.intermediate, false)?;
            layers.push(Layer {
                attn_norm: weights.take(&format!("{p}.input_layernorm.weight"), &[d])?,
                mlp_norm: weights.take(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
            });
        }
        let inv_freq = (0..hd / 2)
            .map(|i| 1.0 / (c.rope_theta as f32).powf(2.0 * i as f32 / hd as f32))
            .collect();
        Ok(Body {
            config: c,
            embed,
            lm_head,
            layers,
            norm,
            inv_freq,
        })
    }

    /// Token embeddings `[B, T, D]` of ids `[B, T]` (u32).
    pub fn embed(&self, ids: &Tensor) -> CResult<Tensor> {
        let (b, t) = ids.dims2()?;
        self.embed
            .index_select(&ids.flatten_all()?, 0)?
            .to_dtype(DType::F32)?
            .reshape((b, t, self.config.hidden))
    }

    /// Vocabulary logits of hidden states `[…, D]`.
    pub fn logits(&self, hidden: &Tensor) -> CResult<Tensor> {
        mer_registry::layers::frozen_matmul(hidden, &self.lm_head)
    }

    /// cos/sin `[T, head_dim/2]` for positions `offset..offset+T`.
    fn rope_tables(&self, offset: usize, t: usize, dev: &Device) -> CResult<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut ang = Vec::with_capacity(t * half);
        for p in offset..offset + t {
            for f in &self.inv_freq {
                ang.push(p as f32 * f);
            }
        }
        let ang = Tensor::from_vec(ang, (t, half), dev)?;
        Ok((ang.cos()?, ang.sin()?))
    }

    /// Hugging Face's rotate-half rotary embedding on `[B, H, T, hd]`.
    fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> CResult<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
        let b = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
        Tensor::cat(&[&a, &b], D::Minus1)
    }

    /// Hidden states `[B, T, D]` (after the final norm) of embeddings
    /// `[B, T, D]`, attending causally to the cache (when given) and then
    /// to each other; the cache grows by `T`.
    pub fn forward(
        &self,
        x: &Tensor,
        mode: Mode,
        rng: &mut SeededRng,
        mut cache: Option<&mut KvCache>,
    ) -> CResult<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let dev = x.device();
        let offset = cache.as_ref().map(|k| k.len()).unwrap_or(0);
        let (cos, sin) = self.rope_tables(offset, t, dev)?;
        let total = offset + t;
        // Additive causal mask [T, total]: query i sees keys ≤ offset + i.
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..total).map(move |j| if j > offset + i { -1e9 } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, total), dev)?;
        let (h, kvh, hd) = (c.heads, c.kv_heads, c.head_dim);
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = x.clone();
        if let Some(k) = cache.as_deref_mut() {
            if k.layers.len() != self.layers.len() {
                k.layers = (0..self.layers.len()).map(|_| None).collect();
            }
        }
        for (li, l) in self.layers.iter().enumerate() {
            let n = rms_norm(&x, &l.attn_norm, c.rms_eps)?;
            let heads = |y: Tensor, nh: usize| -> CResult<Tensor> {
                y.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()
            };
            let q = Self::rope(&heads(l.q.apply(&n, mode, rng)?, h)?, &cos, &sin)?;
            let mut k = Self::rope(&heads(l.k.apply(&n, mode, rng)?, kvh)?, &cos, &sin)?;
            let mut v = heads(l.v.apply(&n, mode, rng)?, kvh)?;
            if let Some(cache) = cache.as_deref_mut() {
                if let Some((pk, pv)) = &cache.layers[li] {
                    k = Tensor::cat(&[pk, &k], 2)?;
                    v = Tensor::cat(&[pv, &v], 2)?;
                }
                cache.layers[li] = Some((k.clone(), v.clone()));
            }
            // Grouped-query attention: each key/value head serves h/kvh
            // query heads (broadcast, so the backward sums over the group).
            let rep = |y: &Tensor| -> CResult<Tensor> {
                if h == kvh {
                    return Ok(y.clone());
                }
                y.unsqueeze(2)?
                    .broadcast_as((b, kvh, h / kvh, total, hd))?
                    .reshape((b, h, total, hd))
            };
            let (k, v) = (rep(&k)?, rep(&v)?);
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let att = softmax(&att)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, h * hd))?;
            x = (x + l.o.apply(&y, mode, rng)?)?;
            let n = rms_norm(&x, &l.mlp_norm, c.rms_eps)?;
            // candle's silu records its backward (the engine's `nn.silu` uses it too).
            let act = l.gate.apply(&n, mode, rng)?.silu()?;
            let m = (act * l.up.apply(&n, mode, rng)?)?;
            x = (x + l.down.apply(&m, mode, rng)?)?;
        }
        rms_norm(&x, &self.norm, c.rms_eps)
    }

    /// Greedy decoding: feeds `prompt` (ids), then up to `max_tokens`
    /// argmax tokens, stopping at an end-of-sequence id. One sequence, with
    /// a KV cache, so each new token costs one position.
    pub fn generate(&self, prompt: &[u32], max_tokens: usize) -> CResult<Vec<u32>> {
        let ids = Tensor::new(prompt, self.embed.device())?.unsqueeze(0)?;
        self.generate_from(&self.embed(&ids)?, max_tokens)
    }

    /// [`Body::generate`] from a prompt given as embeddings `[1, P, D]`:
    /// text with visual tokens spliced in.
    pub fn generate_from(&self, prompt: &Tensor, max_tokens: usize) -> CResult<Vec<u32>> {
        Ok(self
            .generate_batch(prompt, max_tokens)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Greedy decoding of `G` prompts of equal length at once (embeddings
    /// `[G, P, D]`, one KV cache): each row stops at its end-of-sequence
    /// id, the batch when every row has stopped or after `max_tokens`.
    pub fn generate_batch(&self, prompts: &Tensor, max_tokens: usize) -> CResult<Vec<Vec<u32>>> {
        let dev = self.embed.device().clone();
        let g = prompts.dim(0)?;
        let mut cache = KvCache::default();
        let mut rng = SeededRng::new(0);
        let mut out = vec![Vec::new(); g];
        let mut done = vec![false; g];
        let mut x = prompts.clone();
        for _ in 0..max_tokens {
            let h = self.forward(&x, Mode::Eval, &mut rng, Some(&mut cache))?;
            let last = h.narrow(1, h.dim(1)? - 1, 1)?;
            let ids: Vec<u32> = self
                .logits(&last)?
                .squeeze(1)?
                .argmax(D::Minus1)?
                .to_vec1::<u32>()?;
            for (i, &id) in ids.iter().enumerate() {
                if done[i] {
                    continue;
                }
                if self.config.eos.contains(&id) {
                    done[i] = true;
                } else {
                    out[i].push(id);
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
            x = self.embed(&Tensor::new(ids.as_slice(), &dev)?.unsqueeze(1)?)?;
        }
        Ok(out)
    }
}

/// The `llm.causal` component: prefix tokens, then the prompt's embeddings,
/// through the body.
struct Causal {
    body: Body,
    /// `[1, P0]` ids of the text before the prefix (`P0` may be 0).
    before: Tensor,
    /// `[1, P]` prompt ids (`P` may be 0).
    prompt: Tensor,
    /// What [`Component::export`](mer_registry::Component::export) needs to
    /// write the adapters: the node name, the LoRA settings (none: nothing
    /// to export) and the base model's path as the recipe gave it.
    node: String,
    lora: Option<LoraSpec>,
    base: String,
}

impl mer_registry::Component for Causal {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let mut parts = Vec::with_capacity(inputs.len() + 2);
        let n_before = self.before.dim(1)?;
        for t in inputs {
            parts.push(if t.rank() == 2 {
                t.unsqueeze(1)?
            } else {
                t.clone()
            });
        }
        let first = parts.first().ok_or_else(|| {
            mer_registry::candle::Error::Msg("`llm.causal` needs a prefix".into())
        })?;
        let (b, n_prefix) = (
            first.dim(0)?,
            parts.iter().map(|p| p.dim(1)).sum::<CResult<usize>>()?,
        );
        let text = |ids: &Tensor| -> CResult<Tensor> {
            let e = self.body.embed(ids)?;
            e.broadcast_as((b, e.dim(1)?, e.dim(2)?))?.contiguous()
        };
        if n_before > 0 {
            parts.insert(0, text(&self.before)?);
        }
        if self.prompt.dim(1)? > 0 {
            parts.push(text(&self.prompt)?);
        }
        let x = Tensor::cat(&parts, 1)?;
        let hidden = self.body.forward(&x, mode, rng, None)?;
        let t = hidden.dim(1)?;
        let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
        let prefix = hidden.narrow(1, n_before, n_prefix)?;
        let logits = self.body.logits(&hidden)?;
        Ok(vec![last, hidden, prefix, logits])
    }

    /// The LoRA adapters in PEFT's layout, as the selected epoch left them.
    fn export(&self, params: &HashMap<String, Tensor>, dir: &Path) -> std::io::Result<()> {
        if let Some(spec) = &self.lora {
            save_peft(params, &self.node, spec, &self.base, dir)?;
        }
        Ok(())
    }
}

/// The LoRA record of a recipe (`lora = { rank, alpha, dropout, targets }`).
pub fn lora_spec(v: Option<&mer_registry::Value>) -> Option<LoraSpec> {
    use mer_registry::Value;
    let Some(Value::Map(m)) = v else { return None };
    Some(LoraSpec {
        rank: match m.get("rank") {
            Some(Value::Int(r)) => (*r).max(1) as usize,
            _ => 8,
        },
        alpha: m.get("alpha").and_then(Value::as_f64).unwrap_or(16.0),
        dropout: m.get("dropout").and_then(Value::as_f64).unwrap_or(0.0),
        targets: m
            .get("targets")
            .and_then(Value::as_strings)
            .unwrap_or_else(|| vec!["q_proj".into(), "v_proj".into()]),
    })
}

/// The tokenizer for `weights` at `path`: the `tokenizer` parameter, else
/// the folder's `tokenizer.json`, else the GGUF file's vocabulary.
pub fn tokenizer_for(
    path: &Path,
    explicit: Option<&str>,
    gguf: Option<&gguf::Metadata>,
) -> Result<tokenizer::Tok, BuildError> {
    if let Some(t) = explicit {
        return tokenizer::Tok::from_file(Path::new(t));
    }
    let beside = path.join("tokenizer.json");
    if beside.is_file() {
        return tokenizer::Tok::from_file(&beside);
    }
    match gguf {
        Some(m) => tokenizer::Tok::from_gguf(m),
        None => Err(BuildError(format!(
            "no tokenizer for `{}`: the folder has no tokenizer.json; set `tokenizer = \"…/tokenizer.json\"`",
            path.display()
        ))),
    }
}

/// The checkpoint an LLM kind's `weights`, `dtype` and `layers` ask for.
pub(crate) fn open_weights(ctx: &BuildCtx) -> Result<(std::path::PathBuf, Weights), BuildError> {
    let path = std::path::PathBuf::from(ctx.str("weights")?);
    let dtype = match ctx.str("dtype")? {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => DType::F32,
    };
    let mut weights = Weights::open_as(&path, &ctx.device(), dtype)?;
    if let Some(mer_registry::Value::Int(n)) = ctx.params.get("layers") {
        weights.keep_layers(*n as usize)?;
    }
    Ok((path, weights))
}

/// The `llm.causal` factory.
pub fn build_causal(ctx: &mut BuildCtx) -> Result<Box<dyn mer_registry::Component>, BuildError> {
    let (path, weights) = open_weights(ctx)?;
    let hidden = weights.config.hidden;
    for (i, t) in ctx.inputs.iter().enumerate() {
        if let Some(w) = t.last().and_then(mer_registry::Dim::size) {
            if w != hidden {
                return Err(BuildError(format!(
                    "prefix {} is {w} wide; this LLM's hidden size is {hidden} (project to it first)",
                    i + 1
                )));
            }
        }
    }
    let (before, prompt) = (
        ctx.str("before")?.to_string(),
        ctx.str("prompt")?.to_string(),
    );
    let mut tok = None;
    let mut ids = |text: &str| -> Result<Tensor, BuildError> {
        let ids = if text.is_empty() {
            vec![]
        } else {
            if tok.is_none() {
                let explicit = match ctx.params.get("tokenizer") {
                    Some(mer_registry::Value::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                tok = Some(tokenizer_for(
                    &path,
                    explicit.as_deref(),
                    weights.gguf.as_ref(),
                )?);
            }
            tok.as_ref().map_or(Ok(vec![]), |t| t.encode(text))?
        };
        Ok(Tensor::from_vec(
            ids.clone(),
            (1, ids.len()),
            &ctx.device(),
        )?)
    };
    let (before, prompt) = (ids(&before)?, ids(&prompt)?);
    let lora = lora_spec(ctx.params.get("lora"));
    let body = Body::new(weights, lora.as_ref(), ctx)?;
    Ok(Box::new(Causal {
        body,
        before,
        prompt,
        node: ctx.node.to_string(),
        lora,
        base: path.display().to_string(),
    }))
}

/// Writes the LoRA adapters among `tensors` (store names
/// `<node>.model.layers.…lora_A.weight`) as a PEFT adapter folder:
/// `adapter_model.safetensors` under PEFT's names
/// (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`) and
/// `adapter_config.json`. Returns how many tensors were written.
pub fn save_peft(
    tensors: &HashMap<String, Tensor>,
    node: &str,
    spec: &LoraSpec,
    base_model: &str,
    dir: &Path,
) -> std::io::Result<usize> {
    let prefix = format!("{node}.");
    let adapters: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, t)| {
            let rest = k.strip_prefix(&prefix)?;
            (rest.contains(".lora_A.") || rest.contains(".lora_B."))
                .then(|| (format!("base_model.model.{rest}"), t.clone()))
        })
        .collect();
    std::fs::create_dir_all(dir)?;
    crate::checkpoint::save_tensors(&dir.join("adapter_model.safetensors"), &adapters)?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": spec.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
    });
    mer_store::write_json(&dir.join("adapter_config.json"), &config)?;
    Ok(adapters.len())
}

/// `llm.prompt`: n learnt tokens, the same for every sample of the batch.
struct Prompt {
    /// `[n, D]`
    tokens: Tensor,
}

impl mer_registry::Component for Prompt {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let b = mer_registry::component::input(inputs, 0, "llm.prompt")?.dim(0)?;
        let (n, d) = self.tokens.dims2()?;
        Ok(vec![self
            .tokens
            .unsqueeze(0)?
            .broadcast_as((b, n, d))?
            .contiguous()?])
    }
}

/// The `llm.prompt` factory.
pub fn build_prompt(ctx: &mut BuildCtx) -> Result<Box<dyn mer_registry::Component>, BuildError> {
    let (n, d) = (ctx.usize("tokens")?, ctx.usize("dim")?);
    let std = ctx.float("init_std")? as f32;
    let tokens = ctx.param("tokens", &[n, d], mer_registry::Init::Normal(std))?;
    Ok(Box::new(Prompt { tokens }))
}

#[cfg(test)]
pub(crate) mod tests;
// ---- the kinds -------------------------------------------------------------

pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        instruct::kind(),
        instruct_lm::kind(),
        KindBuilder::new("llm.causal", Role::Component)
            .doc("A LLaMA- or Qwen2-family causal LM loaded from an HF folder (config.json + safetensors) or a GGUF file. Visual tokens are spliced before the prompt; every position's hidden state is returned. Base weights are frozen; LoRA adapters train.")
            .variadic_input("prefix", "visual tokens [B, N, D_llm] placed before the prompt")
            .output("last", "hidden state of the last position [B, D_llm]")
            .output("hidden", "hidden states of every position [B, T, D_llm]")
            .output("prefix_hidden", "hidden states at the prefix positions [B, N, D_llm]")
            .output("logits", "vocabulary logits at every position [B, T, V]")
            .path("weights", None, "HF model folder or .gguf file.")
            .param("tokenizer", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "tokenizer.json; none uses the folder's or the GGUF metadata.")
            .string("before", Some(""), "Text placed before the prefix tokens, e.g. a chat template's opening `<|im_start|>user\\n`: position 0 of most LLMs is an attention sink whose content is largely ignored.")
            .string("prompt", Some(""), "Text placed after the prefix tokens.")
            .choice("dtype", &["f32", "f16", "bf16"], Some("f32"), "Dtype the frozen base matrices are held and multiplied in on a GPU (bf16/f16 halve their memory); norms, LoRA adapters, activations and optimiser state stay f32. The CPU holds and computes everything in f32 and says so.")
            .param("lora", ParamType::Optional(Box::new(lora_record())), Some(Value::None), "LoRA adapters; none keeps the LLM frozen.")
            .param("layers", ParamType::Optional(Box::new(ParamType::Int { min: Some(1), max: None })), Some(Value::None), "Keep only the first N decoder layers (then the final norm): a shallower, faster body from the same weights. none keeps all.")
            .shapes(llm_causal)
            .factory(build_causal)
            .build(),
        KindBuilder::new("llm.prompt", Role::Component)
            .doc("Learnable soft-prompt tokens (CoOp style), an ablation stand-in for visual tokens: the same n learnt tokens for every sample.")
            .input("like", "any tensor whose first dimension is the batch (e.g. `clips.video`); only its batch size is used")
            .output("out", "prompt tokens [B, n, D]")
            .int("tokens", Some(1), Some(1), "Number of learnable tokens.")
            .int("dim", None, Some(1), "Token width (the LLM hidden size).")
            .float("init_std", Some(0.02), Some(0.0), None, "Initialisation standard deviation.")
            .shapes(llm_prompt)
            .factory(build_prompt)
            // `like` only gives the batch size: a class-index input, not differentiated.
            .example_inputs(
                &[("tokens", Value::Int(2)), ("dim", Value::Int(3))],
                vec![ExampleInput::ClassIndex { dims: vec![2], classes: 3 }],
            )
            .build(),
    ]
}

/// `llm.causal`: every prefix is `[B, D]` (one token) or `[B, N, D]`, all
/// in the LLM's width.
fn llm_causal(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let mut width: Option<Dim> = None;
    let mut tokens = Dim::Size(0);
    for (i, t) in c.inputs.iter().enumerate() {
        let n =
            match t.rank() {
                2 => Dim::Size(1),
                3 => t.dims[1].clone(),
                _ => return Err(ShapeError::new(format!(
                    "`llm.causal` prefix tokens are [B, D] or [B, N, D]; `{}` is {t}",
                    c.source(i)
                ))
                .at_input(i)
                .help(
                    "project features to the LLM width first (e.g. `nn.linear(x) { out = 1536 }`)",
                )),
            };
        tokens = tokens.add(&n);
        let d = t.last().cloned().unwrap_or(Dim::sym("D_llm"));
        if let Some(w) = &width {
            if !w.compatible(&d) {
                return Err(ShapeError::new(format!("`llm.causal`: prefix `{}` has width {d}, an earlier prefix has {w}; all prefixes live in the LLM's width", c.source(i))).at_input(i));
            }
        } else {
            width = Some(d);
        }
    }
    let h = width.unwrap_or(Dim::sym("D_llm"));
    let bt = vec![b(), Dim::sym("T"), h.clone()];
    Ok(vec![
        TensorType::features(vec![b(), h.clone()]),
        TensorType::f32(bt, Semantic::Tokens),
        TensorType::f32(vec![b(), tokens, h], Semantic::Tokens),
        TensorType::features(vec![b(), Dim::sym("T"), Dim::sym("V")]),
    ])
}

fn llm_prompt(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let batch = c
        .inputs
        .first()
        .and_then(|t| t.dims.first().cloned())
        .unwrap_or_else(b);
    Ok(vec![TensorType::f32(
        vec![
            batch,
            sz(c.int("tokens").unwrap_or(1)),
            sz(c.int("dim").unwrap_or(1)),
        ],
        Semantic::Tokens,
    )])
}
