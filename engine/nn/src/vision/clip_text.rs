//! `clip.text`: CLIP's text tower, frozen, turning class names into class
//! embeddings `[K, P]` (zero-shot classifiers, MPA-FER's text side), with
//! learnable context tokens (CoOp) as its trainable part, and hard
//! prompts that carry a description per class: read from a file, or
//! written by a real LLM the recipe names (MPA-FER's multi-granularity
//! prompts).

use super::tokenizer::ClipTokenizer;
use super::*;
use mer_registry::{
    BuildCtx, Component, Dim, Init, KindBuilder, Mode, ParamType, Role, SeededRng, Semantic,
    ShapeCtx, ShapeError, TensorType, Value,
};

pub(super) fn kind() -> Kind {
    KindBuilder::new("clip.text", Role::Component)
        .doc("CLIP's text tower from a Hugging Face folder (CLIPModel; tokenizer.json beside it), frozen: one embedding per class prompt, the same for every sample. With `context = M`, M learnable tokens (CoOp) stand before each class name instead of the template's words.")
        .output("embeds", "projected class embeddings [K, P] (transformers' get_text_features)")
        .output("pooled", "final-layernorm state at each prompt's end token [K, D] (pooler_output)")
        .output("words", "each prompt's input word embeddings (learnt context included, start and end tokens not) averaged [K, D]: the prompt at token level, before the encoder (MPA-FER's token-level alignment)")
        .path("weights", None, "Hugging Face folder (config.json, model.safetensors, tokenizer.json).")
        .strings("classes", None, "Class names, in label order (K = their number).")
        .string("template", Some("a photo of a {} face."), "Prompt for each class; `{}` is the class name, `{description}` that class's description (from `descriptions` or `describe`). Ignored when `context` > 0 (the prompt is then the context tokens, the name and a full stop).")
        .int("context", Some(0), Some(0), "Learnable context tokens before each class name (CoOp; MPA-FER uses 10); 0 = the template's words.")
        .param("context_init", ParamType::Optional(Box::new(ParamType::Str { choices: vec![] })), Some(Value::None), "CoOp's `ctx_init`: the last context tokens start as these words' embeddings (e.g. \"a photo of a\"), the rest as N(0, 0.02) draws; none = all random.")
        .param("descriptions", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "A file of `class: description` lines, one per class, for the template's `{description}`.")
        .param("describe", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "An LLM (GGUF file or Hugging Face folder; mer fetches SmolLM2 when missing) that writes each class's description by answering `question` in its own chat template, greedily; answers are cached by model bytes, question, classes and `describe_tokens`, and written beside the fold's results (`adapters/<node>/descriptions.txt`).")
        .string("question", Some("What are the most useful visual features to distinguish the facial expression of {}?"), "What `describe` asks per class (`{}` is the class name): MPA-FER's question.")
        .int("describe_tokens", Some(48), Some(1), "The most tokens each description may take. A prompt longer than the tower holds is cut to fit, its end token kept (open_clip's `truncate`).")
        .shapes(shapes)
        .factory(build)
        .build()
}

/// What a forward pass returns.
pub struct TextOut {
    /// Embeddings, then each layer's output.
    pub hidden_states: Vec<Tensor>,
    /// The final-layernorm states of every position.
    pub last: Tensor,
    /// `last` at each row's end token.
    pub pooled: Tensor,
    /// The projected `pooled`.
    pub embeds: Tensor,
    /// The input word embeddings between the start and end tokens,
    /// averaged per row.
    pub words: Tensor,
}

/// CLIP's text encoder.
pub struct TextTower {
    tokens: Tensor,
    positions: Tensor,
    enc: Encoder,
    final_norm: LayerNorm,
    projection: Option<Frozen>,
    /// The longest sequence the position table holds (77 in OpenAI CLIP).
    pub max_len: usize,
    /// The end token whose state is pooled; `None`: the highest id (the
    /// legacy rule of configs with `eos_token_id = 2`).
    eos: Option<u32>,
    /// What shorter rows are padded with (their states are computed and
    /// masked as keys, as in transformers).
    pad: u32,
    /// The hidden width D.
    pub hidden: usize,
}

/// `(hidden, projection_dim, max_len)` of a CLIP folder's text tower.
pub(crate) fn dims(path: &Path) -> Result<(usize, usize, usize), BuildError> {
    let (top, t, file) = config(path, "text_config")?;
    let s = Shape::from_json(&t, &file)?;
    let int =
        |j: &serde_json::Value, k: &str| j.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
    Ok((
        s.hidden,
        int(&top, "projection_dim")
            .or_else(|| int(&t, "projection_dim"))
            .unwrap_or(s.hidden),
        int(&t, "max_position_embeddings").unwrap_or(77),
    ))
}

impl TextTower {
    /// Loads the text half of the CLIP folder at `path`.
    pub fn load(path: &Path, device: &Device) -> Result<TextTower, BuildError> {
        let (top, t, file) = config(path, "text_config")?;
        let s = Shape::from_json(&t, &file)?;
        let (d, proj, max_len) = dims(path)?;
        let vocab = t
            .get("vocab_size")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| BuildError(format!("`{}` has no `vocab_size`", file.display())))?
            as usize;
        let eos = t
            .get("eos_token_id")
            .or_else(|| top.get("eos_token_id"))
            .and_then(|x| x.as_u64())
            .map(|x| x as u32);
        let mut ck = Checkpoint::open(path, device)?;
        let e = "text_model.embeddings";
        let tokens = ck.take(&format!("{e}.token_embedding.weight"), &[vocab, d])?;
        let positions = ck.take(&format!("{e}.position_embedding.weight"), &[max_len, d])?;
        let enc = Encoder::load(&mut ck, "text_model.encoder", &s)?;
        let final_norm = ck.norm("text_model.final_layer_norm", d, s.eps)?;
        let projection = if ck.tensors.contains_key("text_projection.weight") {
            Some(ck.linear("text_projection", d, proj, false)?)
        } else {
            None
        };
        ck.no_leftovers("text_model.")?;
        Ok(TextTower {
            tokens,
            positions,
            enc,
            final_norm,
            projection,
            max_len,
            // transformers keeps OpenAI's argmax rule for configs that
            // still carry the old default end id 2.
            eos: eos.filter(|&e| e != 2),
            pad: t
                .get("pad_token_id")
                .and_then(|x| x.as_u64())
                .map(|x| x as u32)
                .or(eos)
                .unwrap_or(0),
            hidden: d,
        })
    }

    /// Token ids (rows padded to one length, `mask` 1 on real tokens) to
    /// embeddings, hidden states and pooled states. `context` `[M, D]`
    /// replaces the embeddings at positions 1..=M of every row.
    pub fn forward(&self, ids: &[Vec<u32>], context: Option<&Tensor>) -> CResult<TextOut> {
        let dev = self.tokens.device();
        let k = ids.len();
        let l = ids.iter().map(Vec::len).max().unwrap_or(0);
        if l > self.max_len {
            mer_registry::candle::bail!("a prompt is {l} tokens; this CLIP holds {}", self.max_len);
        }
        let mut flat = Vec::with_capacity(k * l);
        let mut keep = Vec::with_capacity(k * l);
        let mut inner = Vec::with_capacity(k * l);
        let mut ends = Vec::with_capacity(k);
        for row in ids {
            let end = match self.eos {
                Some(e) => row
                    .iter()
                    .position(|&t| t == e)
                    .unwrap_or(row.len().saturating_sub(1)),
                None => row
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, t)| (**t, std::cmp::Reverse(*i)))
                    .map_or(0, |(i, _)| i),
            };
            ends.push(end as u32);
            let n = end.saturating_sub(1).max(1) as f32;
            inner.extend((0..l).map(|j| if j >= 1 && j < end { 1.0 / n } else { 0.0 }));
            for j in 0..l {
                flat.push(row.get(j).copied().unwrap_or(self.pad));
                keep.push(if j < row.len() { 0f32 } else { -1e9 });
            }
        }
        let ids_t = Tensor::from_vec(flat, (k * l,), dev)?;
        let mut h = self
            .tokens
            .index_select(&ids_t, 0)?
            .reshape((k, l, self.hidden))?;
        if let Some(ctx) = context {
            let m = ctx.dim(0)?;
            let ctx = ctx.unsqueeze(0)?.repeat((k, 1, 1))?;
            h = Tensor::cat(
                &[h.narrow(1, 0, 1)?, ctx, h.narrow(1, 1 + m, l - 1 - m)?],
                1,
            )?;
        }
        let words = h
            .broadcast_mul(&Tensor::from_vec(inner, (k, l, 1), dev)?.to_dtype(h.dtype())?)?
            .sum(1)?;
        h = h.broadcast_add(&self.positions.narrow(0, 0, l)?)?;
        // Causal, plus padded keys blocked (transformers adds both).
        let causal: Vec<f32> = (0..l)
            .flat_map(|i| (0..l).map(move |j| if j > i { -1e9 } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(causal, (1, 1, l, l), dev)?
            .broadcast_add(&Tensor::from_vec(keep, (k, 1, 1, l), dev)?)?;
        let mut hidden_states = vec![h.clone()];
        for i in 0..self.enc.layers.len() {
            h = self.enc.layer(i, &h, Some(&mask))?;
            hidden_states.push(h.clone());
        }
        let last = self.final_norm.apply(&h)?;
        let rows: Vec<u32> = (0..k as u32).map(|r| r * l as u32).collect();
        let at = Tensor::from_vec(rows, (k,), dev)?.add(&Tensor::from_vec(ends, (k,), dev)?)?;
        let pooled = last.reshape((k * l, self.hidden))?.index_select(&at, 0)?;
        let embeds = match &self.projection {
            Some(p) => p.apply(&pooled)?,
            None => pooled.clone(),
        };
        Ok(TextOut {
            hidden_states,
            last,
            pooled,
            embeds,
            words,
        })
    }
}

/// The `clip.text` component: fixed prompts, optional learnt context.
struct ClassText {
    tower: TextTower,
    ids: Vec<Vec<u32>>,
    context: Option<Tensor>,
    /// What the descriptions were and where they came from, written out
    /// with the fold's results.
    described: Option<String>,
    /// Without context the class embeddings never change: computed once.
    /// (Not the runner's per-sample cache: they have no batch axis.)
    fixed: std::sync::Mutex<Option<Vec<Tensor>>>,
}

impl Component for ClassText {
    fn forward(
        &self,
        _inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        if self.context.is_none() {
            if let Some(v) = self.fixed.lock().ok().and_then(|g| g.clone()) {
                return Ok(v);
            }
        }
        let out = self.tower.forward(&self.ids, self.context.as_ref())?;
        let v = vec![out.embeds, out.pooled, out.words];
        if self.context.is_none() {
            if let Ok(mut g) = self.fixed.lock() {
                *g = Some(v.clone());
            }
        }
        Ok(v)
    }

    fn export(
        &self,
        _params: &std::collections::HashMap<String, Tensor>,
        dir: &Path,
    ) -> std::io::Result<()> {
        if let Some(text) = &self.described {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("descriptions.txt"), text)?;
        }
        Ok(())
    }
}

/// Each class's token ids: the template filled in (its `{description}`
/// with the class's description), or `M` placeholders (replaced by the
/// learnt context) before the name.
fn prompts(
    tok: &ClipTokenizer,
    classes: &[String],
    template: &str,
    context: usize,
    descriptions: Option<&[(String, String)]>,
) -> Result<Vec<Vec<u32>>, BuildError> {
    classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if context == 0 {
                let t = match descriptions.and_then(|d| d.get(i)) {
                    Some((_, d)) => template.replace("{description}", d),
                    None => template.to_string(),
                };
                return tok.encode(&t.replacen("{}", c, 1));
            }
            let ids = tok.encode(&format!("{c}."))?;
            let (first, rest) = ids
                .split_first()
                .ok_or_else(|| BuildError("empty encoding".into()))?;
            let mut v = vec![*first];
            // Any id that is not the end token: its embedding is replaced.
            v.extend(std::iter::repeat_n(*first, context));
            v.extend_from_slice(rest);
            Ok(v)
        })
        .collect()
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let path = PathBuf::from(ctx.str("weights")?);
    let classes: Vec<String> = match ctx.params.get("classes") {
        Some(mer_registry::Value::List(l)) => l
            .iter()
            .filter_map(|v| match v {
                mer_registry::Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    if classes.is_empty() {
        return Err(BuildError(
            "`clip.text` needs at least one class in `classes`".into(),
        ));
    }
    let tower = TextTower::load(&path, &ctx.device())?;
    let tok = ClipTokenizer::from_folder(&path)?;
    let m = ctx.usize("context")?;
    let template = ctx.str("template")?;
    let opt = |k: &str| match ctx.params.get(k) {
        Some(Value::Str(s)) => Some(PathBuf::from(s)),
        _ => None,
    };
    let (descriptions, described) = match (opt("descriptions"), opt("describe")) {
        (Some(file), _) => {
            let d = crate::llm::describe::read_file(&file, &classes)?;
            let text = describe_text(&format!("# from {}", file.display()), &d);
            (Some(d), Some(text))
        }
        (None, Some(llm)) => {
            let question = ctx.str("question")?;
            let cache = mer_data::cache_root().map(|d| d.join("descriptions"));
            let got = crate::llm::describe::describe(
                &crate::llm::describe::Ask {
                    weights: &llm,
                    question,
                    classes: &classes,
                    max_tokens: ctx.usize("describe_tokens")?,
                },
                cache.as_deref(),
                &ctx.device(),
            )?;
            let head = format!(
                "# written by {} ({}), asked: {question}\n# cache: {}",
                llm.display(),
                if got.cached {
                    "read from the cache"
                } else {
                    "asked in this run"
                },
                got.file
                    .as_ref()
                    .map_or("none".into(), |f| f.display().to_string())
            );
            let d = got.descriptions.answers;
            let text = describe_text(&head, &d);
            (Some(d), Some(text))
        }
        (None, None) => (None, None),
    };
    let mut ids = prompts(&tok, &classes, template, m, descriptions.as_deref())?;
    if descriptions.is_some() {
        for row in ids.iter_mut().filter(|r| r.len() > tower.max_len) {
            let end = row.last().copied().unwrap_or(0);
            row.truncate(tower.max_len.saturating_sub(1));
            row.push(end);
        }
    }
    if let Some((c, row)) = classes
        .iter()
        .zip(&ids)
        .find(|(_, r)| r.len() > tower.max_len)
    {
        return Err(BuildError(format!(
            "the prompt for class `{c}` is {} tokens; this CLIP holds {}",
            row.len(),
            tower.max_len
        )));
    }
    let context = if m > 0 {
        let random = ctx.param("context", &[m, tower.hidden], Init::Normal(0.02))?;
        match ctx.params.get("context_init") {
            Some(Value::Str(words)) => {
                Some(ctx.param_from("context", &init_context(&tower, &tok, words, &random)?)?)
            }
            _ => Some(random),
        }
    } else {
        None
    };
    Ok(Box::new(ClassText {
        tower,
        ids,
        context,
        described,
        fixed: std::sync::Mutex::new(None),
    }))
}

/// CoOp's `ctx_init`: the last context rows start as the word embeddings
/// of `words` (start and end tokens left out), the rows before them keep
/// their random draws.
fn init_context(
    tower: &TextTower,
    tok: &ClipTokenizer,
    words: &str,
    random: &Tensor,
) -> Result<Tensor, BuildError> {
    let ids = tok.encode(words)?;
    // The tokenizer puts the start and end tokens around every text.
    let inner = ids.get(1..ids.len().saturating_sub(1)).unwrap_or(&[]);
    let m = random.dim(0)?;
    if inner.len() > m {
        return Err(BuildError(format!(
            "`context_init` \"{words}\" is {} tokens; `context` holds {m}",
            inner.len()
        )));
    }
    let idx = Tensor::from_vec(inner.to_vec(), (inner.len(),), tower.tokens.device())?;
    let emb = tower
        .tokens
        .index_select(&idx, 0)?
        .to_dtype(random.dtype())?;
    let head = random.narrow(0, 0, m - inner.len())?;
    Ok(Tensor::cat(&[&head, &emb], 0)?)
}

/// The descriptions as `class: description` lines under a comment that
/// says where they came from.
fn describe_text(head: &str, d: &[(String, String)]) -> String {
    let mut s = format!("{head}\n");
    for (c, t) in d {
        s.push_str(&format!("{c}: {t}\n"));
    }
    s
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let template = c.str("template").unwrap_or("");
    let given = |k: &str| matches!(c.params.get(k), Some(Value::Str(_)));
    let (file, llm) = (given("descriptions"), given("describe"));
    let wants = template.contains("{description}");
    let context = matches!(c.params.get("context"), Some(Value::Int(m)) if *m > 0);
    let problem = if file && llm {
        Some("set `descriptions` (a file) or `describe` (an LLM), not both")
    } else if wants && !(file || llm) {
        Some("the template has `{description}`: set `descriptions` (a file) or `describe` (an LLM)")
    } else if (file || llm) && !wants {
        Some("descriptions are set but the template has no `{description}` to put them in")
    } else if (file || llm) && context {
        Some("with `context` > 0 the template is not used, so descriptions would be ignored")
    } else {
        None
    };
    if let Some(p) = problem {
        return Err(fail(c, p.to_string()));
    }
    let k = match c.params.get("classes") {
        Some(mer_registry::Value::List(l)) if !l.is_empty() => Dim::Size(l.len()),
        _ => {
            return Err(fail(
                c,
                "`classes` needs at least one class name".to_string(),
            ))
        }
    };
    let d = c.str("weights").and_then(|p| dims(Path::new(p)).ok());
    let (hidden, proj) = match d {
        Some((h, p, _)) => (Dim::Size(h), Dim::Size(p)),
        None => (Dim::sym("D_text"), Dim::sym("P")),
    };
    Ok(vec![
        TensorType::f32(vec![k.clone(), proj], Semantic::Features),
        TensorType::f32(vec![k.clone(), hidden.clone()], Semantic::Features),
        TensorType::f32(vec![k, hidden], Semantic::Features),
    ])
}
