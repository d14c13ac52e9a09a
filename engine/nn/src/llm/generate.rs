//! Text from a checkpoint, with or without the PEFT adapters a run saved:
//! what `mer models generate` runs, so a researcher can read a model's
//! rationale for a prompt without writing Rust.

use super::{tokenizer_for, Body, LoraSpec, Weights};
use mer_registry::candle::Device;
use mer_registry::{BuildCtx, BuildError, ParamStore};
use std::collections::BTreeMap;
use std::path::Path;

/// What to generate from.
pub struct Request<'a> {
    /// A Hugging Face folder or a `.gguf` file.
    pub weights: &'a Path,
    /// A `tokenizer.json` to use instead of the checkpoint's own.
    pub tokenizer: Option<&'a str>,
    /// A PEFT adapter folder (`adapter_config.json` +
    /// `adapter_model.safetensors`), as `mer run` writes per fold.
    pub adapters: Option<&'a Path>,
    /// Keep the first N decoder layers (the recipe's `layers`).
    pub layers: Option<usize>,
    /// The text to continue, encoded as written: no chat template is applied and
    /// no BOS token is added.
    pub prompt: &'a str,
    /// The most tokens to generate; decoding stops earlier at an end-of-sequence id.
    pub max_tokens: usize,
}

/// The generated text and how many tokens it took.
pub struct Answer {
    /// The generated continuation, without the prompt; special tokens are kept.
    pub text: String,
    /// How many tokens were generated (the prompt and a final end-of-sequence id
    /// are not counted).
    pub tokens: usize,
    /// How many adapter tensors (`lora_A` and `lora_B` each count) were loaded
    /// from `Request::adapters`; 0 without adapters.
    pub adapters: usize,
}

/// The node name adapters live under while generating; PEFT files carry
/// no node, so any fixed name round-trips.
const NODE: &str = "llm";

/// Reads PEFT's `adapter_config.json` into a [`LoraSpec`].
fn adapter_spec(dir: &Path) -> Result<LoraSpec, BuildError> {
    let file = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| BuildError(format!("{}: {e}", file.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BuildError(format!("{}: {e}", file.display())))?;
    let field = |k: &str| {
        v.get(k)
            .ok_or_else(|| BuildError(format!("{}: no `{k}`", file.display())))
    };
    let rank = field("r")?.as_u64().filter(|&r| r > 0).ok_or_else(|| {
        BuildError(format!(
            "{}: `r` must be a positive integer",
            file.display()
        ))
    })?;
    let alpha = field("lora_alpha")?
        .as_f64()
        .ok_or_else(|| BuildError(format!("{}: `lora_alpha` must be a number", file.display())))?;
    let targets = field("target_modules")?
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            BuildError(format!(
                "{}: `target_modules` must be a list of projection names",
                file.display()
            ))
        })?;
    Ok(LoraSpec {
        rank: rank as usize,
        alpha,
        dropout: 0.0,
        targets,
    })
}

/// Copies the file's adapters into `store`, which holds freshly built
/// ones: every adapter must be in the file and every tensor in the file
/// must be an adapter of this model, or the answer would silently come
/// from a half-loaded model.
fn load_adapters(dir: &Path, store: &mut ParamStore) -> Result<usize, BuildError> {
    let file = dir.join("adapter_model.safetensors");
    let tensors = crate::checkpoint::load_tensors(&file, store.device())
        .map_err(|e| BuildError(format!("{}: {e}", file.display())))?;
    let expected: Vec<String> = store.vars().map(|(k, _)| k.clone()).collect();
    let mut loaded = 0;
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for peft in names {
        let rest = peft.strip_prefix("base_model.model.").unwrap_or(peft);
        let ours = format!("{NODE}.{rest}");
        if !expected.contains(&ours) {
            let layer_hint = rest
                .strip_prefix("model.layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok())
                .map(|_| " (trained with more layers? set --layers to the recipe's `layers`)")
                .unwrap_or("");
            return Err(BuildError(format!(
                "{}: `{peft}` is not an adapter of this model{layer_hint}",
                file.display()
            )));
        }
        store
            .set(&ours, &tensors[peft])
            .map_err(|e| BuildError(format!("{}: {e}", file.display())))?;
        loaded += 1;
    }
    if let Some(missing) = expected.iter().find(|k| {
        let peft = format!("base_model.model.{}", &k[NODE.len() + 1..]);
        !tensors.contains_key(&peft)
    }) {
        return Err(BuildError(format!(
            "{}: no `{}`; the model has more adapted layers than the file (set --layers to the recipe's `layers`)",
            file.display(),
            &missing[NODE.len() + 1..]
        )));
    }
    Ok(loaded)
}

/// A checkpoint loaded once for several prompts (with its adapters, if
/// any): [`generate`] for one prompt, class descriptions for many.
pub struct Generator {
    tok: super::tokenizer::Tok,
    body: Body,
    /// How many adapter tensors were loaded (see [`Answer::adapters`]).
    pub adapters: usize,
}

impl Generator {
    /// Opens `req`'s weights, tokenizer and adapters (its prompt and
    /// token budget are not read).
    pub fn open(req: &Request, device: &Device) -> Result<Generator, BuildError> {
        let mut weights = Weights::open(req.weights, device)?;
        if let Some(n) = req.layers {
            weights.keep_layers(n)?;
        }
        let tok = tokenizer_for(req.weights, req.tokenizer, weights.gguf.as_ref())?;
        let spec = req.adapters.map(adapter_spec).transpose()?;
        let mut store = ParamStore::new(0, device.clone());
        let params = BTreeMap::new();
        let body = Body::new(
            weights,
            spec.as_ref(),
            &mut BuildCtx {
                node: NODE,
                kind: "llm.causal",
                params: &params,
                inputs: &[],
                vars: &mut store,
            },
        )?;
        let adapters = match req.adapters {
            Some(dir) => load_adapters(dir, &mut store)?,
            None => 0,
        };
        Ok(Generator {
            tok,
            body,
            adapters,
        })
    }

    /// Greedy decoding from `prompt`, encoded as written.
    pub fn answer(&self, prompt: &str, max_tokens: usize) -> Result<Answer, BuildError> {
        let ids = self.tok.encode(prompt)?;
        if ids.is_empty() {
            return Err(BuildError("the prompt is empty".into()));
        }
        let out = self
            .body
            .generate(&ids, max_tokens)
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Answer {
            text: self.tok.decode(&out)?,
            tokens: out.len(),
            adapters: self.adapters,
        })
    }
}

/// Greedy decoding from `req.prompt`.
pub fn generate(req: &Request, device: &Device) -> Result<Answer, BuildError> {
    Generator::open(req, device)?.answer(req.prompt, req.max_tokens)
}
