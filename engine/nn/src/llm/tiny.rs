//! Tiny random LLM checkpoints (a Hugging Face folder and the same model as
//! GGUF) for tests and smoke runs of recipes (`mer models tiny`): 2 layers,
//! width 16 by default (any multiple of 8, to stand in for a real model's
//! width), a byte-level BPE vocabulary of 261 tokens. Not a language model;
//! a way to run every code path of `llm.causal` in seconds.

use super::*;
use std::path::PathBuf;

/// The tiny architecture at width 16.
pub fn tiny_config(arch: &str) -> LlmConfig {
    tiny_config_sized(arch, 16)
}

/// The tiny architecture at width `hidden` (4 heads, 2 key/value heads).
pub fn tiny_config_sized(arch: &str, hidden: usize) -> LlmConfig {
    LlmConfig {
        arch: arch.into(),
        vocab: 0,
        hidden,
        intermediate: hidden * 3 / 2,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: hidden / 4,
        rope_theta: 10_000.0,
        rms_eps: 1e-6,
        tie_embeddings: true,
        attn_bias: arch == "qwen2",
        bos: Some(0),
        eos: vec![1],
    }
}

/// A byte-level BPE vocabulary: two control tokens, the 256 byte symbols,
/// and a few merges.
pub fn tiny_vocab() -> gguf::Metadata {
    let mut tokens = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    tokens.extend(alphabet.iter().map(|c| c.to_string()));
    let merges = vec!["h e".to_string(), "l l".to_string(), "he ll".to_string()];
    tokens.extend(["he".to_string(), "ll".to_string(), "hell".to_string()]);
    let mut token_types = vec![3, 3];
    token_types.resize(tokens.len(), 1);
    gguf::Metadata {
        model: "gpt2".into(),
        pre: "smollm".into(),
        tokens,
        merges,
        token_types,
        bos: Some(0),
        eos: Some(1),
        chat_template: Some(TINY_CHAT.into()),
    }
}

/// The tiny model's chat template (ChatML, as SmolLM2 and Qwen2 use), in
/// both its `tokenizer_config.json` and its GGUF metadata.
pub const TINY_CHAT: &str = "{% for message in messages %}{{ bos_token + message['role'] + '\\n' + message['content'] + eos_token + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ bos_token + 'assistant\\n' }}{% endif %}";

fn randn(rng: &mut SeededRng, dims: &[usize], std: f32) -> CResult<Tensor> {
    rng.normal_tensor(dims, &Device::Cpu)? * std as f64
}

/// Seeded weights in Hugging Face names.
pub fn tiny_weights(c: &LlmConfig, seed: u64) -> CResult<HashMap<String, Tensor>> {
    let mut rng = SeededRng::new(seed);
    let (d, hd) = (c.hidden, c.head_dim);
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".into(),
        randn(&mut rng, &[c.vocab, d], 0.5)?,
    );
    w.insert(
        "model.norm.weight".into(),
        (randn(&mut rng, &[d], 0.1)? + 1.0)?,
    );
    for i in 0..c.layers {
        let p = format!("model.layers.{i}");
        for (name, out, inp) in [
            ("self_attn.q_proj", c.heads * hd, d),
            ("self_attn.k_proj", c.kv_heads * hd, d),
            ("self_attn.v_proj", c.kv_heads * hd, d),
            ("self_attn.o_proj", d, c.heads * hd),
            ("mlp.gate_proj", c.intermediate, d),
            ("mlp.up_proj", c.intermediate, d),
            ("mlp.down_proj", d, c.intermediate),
        ] {
            w.insert(
                format!("{p}.{name}.weight"),
                randn(&mut rng, &[out, inp], 0.3)?,
            );
            let qkv = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"];
            if c.attn_bias && qkv.contains(&name) {
                w.insert(format!("{p}.{name}.bias"), randn(&mut rng, &[out], 0.1)?);
            }
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            w.insert(
                format!("{p}.{n}.weight"),
                (randn(&mut rng, &[d], 0.1)? + 1.0)?,
            );
        }
    }
    Ok(w)
}

/// A Hugging Face folder (`<arch>-hf/`) and a GGUF file (`<arch>.gguf`)
/// of the same tiny model, in `dir`.
pub fn tiny_checkpoint(
    arch: &str,
    dir: &Path,
) -> Result<(PathBuf, PathBuf, LlmConfig), BuildError> {
    tiny_checkpoint_sized(arch, dir, 16)
}

/// [`tiny_checkpoint`] at width `hidden` (a multiple of 8).
pub fn tiny_checkpoint_sized(
    arch: &str,
    dir: &Path,
    hidden: usize,
) -> Result<(PathBuf, PathBuf, LlmConfig), BuildError> {
    tiny_checkpoint_as(arch, dir, hidden, DType::F32)
}

/// [`tiny_checkpoint_sized`] with the folder's safetensors stored in
/// `dtype` (bf16 as most released LLMs are; the GGUF stays f32), to test
/// half-precision loading without a real model.
pub fn tiny_checkpoint_as(
    arch: &str,
    dir: &Path,
    hidden: usize,
    dtype: DType,
) -> Result<(PathBuf, PathBuf, LlmConfig), BuildError> {
    if hidden == 0 || !hidden.is_multiple_of(8) {
        return Err(BuildError(format!(
            "a tiny LLM's width must be a positive multiple of 8, not {hidden}"
        )));
    }
    if arch != "llama" && arch != "qwen2" {
        return Err(BuildError(format!("architecture `{arch}`: llama or qwen2")));
    }
    checkpoint_in(tiny_config_sized(arch, hidden), dir, dtype)
}

/// A random checkpoint of any shape `c` (its `vocab` is replaced by the
/// tiny byte-level vocabulary's): for benchmarks at a real model's width
/// and depth without its weights.
pub fn checkpoint_with(
    c: LlmConfig,
    dir: &Path,
) -> Result<(PathBuf, PathBuf, LlmConfig), BuildError> {
    checkpoint_in(c, dir, DType::F32)
}

fn checkpoint_in(
    mut c: LlmConfig,
    dir: &Path,
    dtype: DType,
) -> Result<(PathBuf, PathBuf, LlmConfig), BuildError> {
    let arch = c.arch.clone();
    let meta = tiny_vocab();
    c.vocab = meta.tokens.len();
    let w = tiny_weights(&c, 7)?;
    let folder = dir.join(format!("{arch}-hf"));
    let io = |e: std::io::Error| BuildError(format!("{}: {e}", folder.display()));
    std::fs::create_dir_all(&folder).map_err(io)?;
    let cfg = serde_json::json!({
        "model_type": arch, "vocab_size": c.vocab, "hidden_size": c.hidden,
        "intermediate_size": c.intermediate, "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads, "num_key_value_heads": c.kv_heads,
        "rope_theta": c.rope_theta, "rms_norm_eps": c.rms_eps,
        "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 1,
    });
    std::fs::write(folder.join("config.json"), cfg.to_string()).map_err(io)?;
    let stored = w
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?)))
        .collect::<CResult<HashMap<_, _>>>()?;
    mer_registry::candle::safetensors::save(&stored, folder.join("model.safetensors"))?;
    tokenizer::Tok::from_gguf(&meta)?.save(&folder.join("tokenizer.json"))?;
    let tok_cfg = serde_json::json!({
        "chat_template": TINY_CHAT,
        "bos_token": meta.tokens[0], "eos_token": {"content": meta.tokens[1]},
    });
    std::fs::write(folder.join("tokenizer_config.json"), tok_cfg.to_string()).map_err(io)?;
    let file = dir.join(format!("{arch}.gguf"));
    gguf::write(&file, &c, &w, &meta)?;
    Ok((folder, file, c))
}
