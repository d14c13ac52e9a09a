//! `llm.instruct`: a causal LM over tokenised conversations with visual
//! tokens spliced in where each sample's placeholder stood, as LLaVA's
//! `prepare_inputs_labels_for_multimodal` does: per sample, the text
//! embeddings before the placeholder, then the visual tokens, then the rest.
//! Logits come back at the text positions only, aligned with the
//! dataset's `ids` and `types`, so `loss.lm` reads the three side by side.
//!
//! With `answers = "generate"`, evaluation also answers in words: each
//! sample's prompt (up to the assistant's opening) with its visual tokens,
//! greedy decoding with a KV cache until the end-of-turn token (samples
//! whose prompts are equally long decode as one batch), and the
//! answer read with the parser that read the gold answers
//! ([`crate::answers::ClassParser`]). The `answer` port is a one-hot row
//! per sample, every metric of class indices scores it, and a row of NaN
//! marks an answer that names no single class: metrics count it wrong and
//! say how many there were. The texts go to the run store
//! ([`Component::take_texts`]).

use super::instruct::{Reader, TASKS};
use super::tokenizer::Tok;
use super::{lora_spec, open_weights, tokenizer_for, Body, LoraSpec};
use mer_registry::candle::{DType, Result as CResult, Tensor};
use mer_registry::{
    BuildCtx, BuildError, Component, Dim, GeneratedText, Kind, KindBuilder, Mode, ParamType, Role,
    SeededRng, Semantic, ShapeCtx, ShapeError, TensorType, Value,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// DFEW's seven classes, the instruction dataset's default label set.
const CLASSES: &[&str] = &[
    "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear",
];

/// What evaluation generates with.
struct Answering {
    tok: Tok,
    reader: Reader,
    max_new: usize,
    /// Answers of the last evaluation batch, until taken.
    texts: Mutex<Vec<GeneratedText>>,
}

struct Instruct {
    body: Body,
    node: String,
    lora: Option<LoraSpec>,
    base: String,
    answering: Option<Answering>,
}

/// Visual inputs as `[B, N, D]`: one token `[B, D]`, tokens `[B, N, D]`, or
/// per-frame tokens `[B, T, N, D]` laid out frame after frame.
fn tokens(t: &Tensor) -> CResult<Tensor> {
    match t.rank() {
        2 => t.unsqueeze(1),
        3 => Ok(t.clone()),
        _ => {
            let (b, d) = (t.dim(0)?, t.dim(t.rank() - 1)?);
            t.reshape((b, (), d))
        }
    }
}

/// Per sample, `x[b, ..at] ++ v[b] ++ x[b, at..]`.
pub(crate) fn splice(x: &Tensor, v: &Tensor, at: &[usize]) -> CResult<Tensor> {
    let l = x.dim(1)?;
    let rows = at
        .iter()
        .enumerate()
        .map(|(b, &a)| {
            let a = a.min(l);
            let mut parts = Vec::with_capacity(3);
            if a > 0 {
                parts.push(x.narrow(0, b, 1)?.narrow(1, 0, a)?);
            }
            parts.push(v.narrow(0, b, 1)?);
            if a < l {
                parts.push(x.narrow(0, b, 1)?.narrow(1, a, l - a)?);
            }
            Tensor::cat(&parts, 1)
        })
        .collect::<CResult<Vec<_>>>()?;
    Tensor::cat(&rows, 0)
}

/// The inverse of [`splice`]: the text positions, and the `n` visual ones.
pub(crate) fn unsplice(h: &Tensor, n: usize, at: &[usize]) -> CResult<(Tensor, Tensor)> {
    let l = h.dim(1)? - n;
    let (mut text, mut vis) = (Vec::new(), Vec::new());
    for (b, &a) in at.iter().enumerate() {
        let a = a.min(l);
        let row = h.narrow(0, b, 1)?;
        let mut parts = Vec::with_capacity(2);
        if a > 0 {
            parts.push(row.narrow(1, 0, a)?);
        }
        if a < l {
            parts.push(row.narrow(1, a + n, l - a)?);
        }
        text.push(Tensor::cat(&parts, 1)?);
        vis.push(row.narrow(1, a, n)?);
    }
    Ok((Tensor::cat(&text, 0)?, Tensor::cat(&vis, 0)?))
}

impl Instruct {
    /// Greedy answers for every sample, as one-hot rows (NaN where the
    /// answer names no single class); in training, zeros and no texts.
    fn answers(
        &self,
        a: &Answering,
        ids: &Tensor,
        v: &Tensor,
        at: &[usize],
        prompt_len: &[usize],
        mode: Mode,
    ) -> CResult<Tensor> {
        let (b, k) = (ids.dim(0)?, a.reader.width());
        let dev = ids.device();
        if mode != Mode::Eval {
            return Tensor::zeros((b, k), DType::F32, dev);
        }
        let mut rows = vec![0f32; b * k];
        let mut texts = vec![None; b];
        // Samples whose prompts are equally long decode together, one KV
        // cache per group (no padding, so no mask is needed).
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &p) in prompt_len.iter().enumerate() {
            groups.entry(p.clamp(1, ids.dim(1)?)).or_default().push(i);
        }
        for (p, members) in groups {
            let prompts = members
                .iter()
                .map(|&i| {
                    let prompt = self.body.embed(&ids.narrow(0, i, 1)?.narrow(1, 0, p)?)?;
                    splice(&prompt, &v.narrow(0, i, 1)?, &[at[i]])
                })
                .collect::<CResult<Vec<_>>>()?;
            let outs = self
                .body
                .generate_batch(&Tensor::cat(&prompts, 0)?, a.max_new)?;
            for (&i, out) in members.iter().zip(outs) {
                let text = a
                    .tok
                    .decode(&out)
                    .map_err(|e| mer_registry::candle::Error::Msg(e.0))?
                    .trim()
                    .to_string();
                let parsed = a.reader.read(&text);
                let row = &mut rows[i * k..(i + 1) * k];
                let reading = match a.reader.row(&parsed) {
                    Some(r) => {
                        row.copy_from_slice(&r);
                        a.reader.words(&parsed)
                    }
                    None => {
                        row.fill(f32::NAN);
                        match parsed {
                            crate::answers::Parsed::Unparseable(_) => a.reader.words(&parsed),
                            other => {
                                format!("unparseable: read as {other:?}, not this task's label")
                            }
                        }
                    }
                };
                texts[i] = Some(GeneratedText { text, reading });
            }
        }
        let texts: Vec<GeneratedText> = texts.into_iter().flatten().collect();
        if let Ok(mut t) = a.texts.lock() {
            *t = texts;
        }
        Tensor::from_vec(rows, (b, k), dev)
    }
}

impl Component for Instruct {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let kind = "llm.instruct";
        let ids = mer_registry::component::input(inputs, 0, kind)?.to_dtype(DType::U32)?;
        let positions = |i: usize| -> CResult<Vec<usize>> {
            Ok(mer_registry::component::input(inputs, i, kind)?
                .to_dtype(DType::I64)?
                .to_vec1::<i64>()?
                .into_iter()
                .map(|a| a.max(0) as usize)
                .collect())
        };
        let (at, prompt_len) = (positions(1)?, positions(2)?);
        let visual = inputs
            .get(3..)
            .unwrap_or_default()
            .iter()
            .map(tokens)
            .collect::<CResult<Vec<_>>>()?;
        if visual.is_empty() {
            return Err(mer_registry::candle::Error::Msg(
                "`llm.instruct` needs visual tokens".into(),
            ));
        }
        let v = Tensor::cat(&visual, 1)?;
        let n = v.dim(1)?;
        let x = splice(&self.body.embed(&ids)?, &v, &at)?;
        let hidden = self.body.forward(&x, mode, rng, None)?;
        let (text, vis) = unsplice(&hidden, n, &at)?;
        let logits = answer_logits(&self.body, &text, &prompt_len)?;
        let mut out = vec![logits, text, vis];
        if let Some(a) = &self.answering {
            out.push(self.answers(a, &ids, &v, &at, &prompt_len, mode)?);
        }
        Ok(out)
    }

    fn export(&self, params: &HashMap<String, Tensor>, dir: &Path) -> std::io::Result<()> {
        if let Some(spec) = &self.lora {
            super::save_peft(params, &self.node, spec, &self.base, dir)?;
        }
        Ok(())
    }

    fn writes_text(&self) -> bool {
        self.answering.is_some()
    }

    fn take_texts(&self) -> Vec<GeneratedText> {
        self.answering
            .as_ref()
            .and_then(|a| a.texts.lock().ok().map(|mut t| std::mem::take(&mut *t)))
            .unwrap_or_default()
    }
}

/// Vocabulary logits `[B, L, V]` at the positions that can predict an
/// answer token: from the batch's earliest last prompt position on. The
/// positions before it only ever predict prompt tokens, which are never
/// targets (`loss.lm` weighs them 0), so their rows are zeros rather than
/// a vocabulary-wide product each (most of a conversation is prompt).
fn answer_logits(body: &Body, text: &Tensor, prompt_len: &[usize]) -> CResult<Tensor> {
    let l = text.dim(1)?;
    let start = prompt_len
        .iter()
        .map(|p| p.saturating_sub(1))
        .min()
        .unwrap_or(0)
        .min(l.saturating_sub(1));
    if start == 0 {
        return body.logits(text);
    }
    let tail = body.logits(&text.narrow(1, start, l - start)?)?;
    let (b, _, v) = tail.dims3()?;
    let head = Tensor::zeros((b, start, v), tail.dtype(), tail.device())?;
    Tensor::cat(&[&head, &tail], 1)
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let (path, weights) = open_weights(ctx)?;
    let hidden = weights.config.hidden;
    for (i, t) in ctx.inputs.iter().enumerate().skip(3) {
        if let Some(w) = t.last().and_then(mer_registry::Dim::size) {
            if w != hidden {
                return Err(BuildError(format!(
                    "visual input {} is {w} wide; this LLM's hidden size is {hidden} (project to it first)",
                    i - 2
                )));
            }
        }
    }
    let answering = if ctx.str("answers")? == "generate" {
        let explicit = match ctx.params.get("tokenizer") {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        };
        Some(Answering {
            tok: tokenizer_for(&path, explicit.as_deref(), weights.gguf.as_ref())?,
            reader: Reader::from_params(ctx.params)?,
            max_new: ctx.usize("max_new_tokens")?,
            texts: Mutex::new(Vec::new()),
        })
    } else {
        None
    };
    let lora = lora_spec(ctx.params.get("lora"));
    let body = Body::new(weights, lora.as_ref(), ctx)?;
    Ok(Box::new(Instruct {
        body,
        node: ctx.node.to_string(),
        lora,
        base: path.display().to_string(),
        answering,
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let ids = c.input(0)?;
    if ids.rank() != 2 {
        return Err(ShapeError::new(format!(
            "`llm.instruct` takes token ids [B, L]; `{}` is {ids}",
            c.source(0)
        ))
        .at_input(0)
        .help("connect the instruction dataset's `ids` port"));
    }
    for (i, port) in [(1, "visual_at"), (2, "prompt_len")] {
        let t = c.input(i)?;
        if t.rank() != 1 {
            return Err(ShapeError::new(format!(
                "`llm.instruct` takes one position per sample [B] here; `{}` is {t}",
                c.source(i)
            ))
            .at_input(i)
            .help(format!("connect the instruction dataset's `{port}` port")));
        }
    }
    let mut n = Dim::Size(0);
    let mut width: Option<Dim> = None;
    for i in 3..c.inputs.len() {
        let t = c.input(i)?;
        let k = match t.rank() {
            2 => Dim::Size(1),
            r if r >= 3 => t.dims[1..r - 1]
                .iter()
                .fold(Dim::Size(1), |acc, d| acc.mul(d)),
            _ => {
                return Err(ShapeError::new(format!(
                    "visual tokens are [B, D], [B, N, D] or [B, T, N, D]; `{}` is {t}",
                    c.source(i)
                ))
                .at_input(i))
            }
        };
        n = n.add(&k);
        let d = t.last().cloned().unwrap_or(Dim::sym("D_llm"));
        match &width {
            Some(w) if !w.compatible(&d) => {
                return Err(ShapeError::new(format!(
                "visual input `{}` has width {d}, an earlier one {w}; all live in the LLM's width",
                c.source(i)
            ))
                .at_input(i))
            }
            None => width = Some(d),
            _ => {}
        }
    }
    let (b, l) = (ids.dims[0].clone(), ids.dims[1].clone());
    let h = width.unwrap_or(Dim::sym("D_llm"));
    let list = |k: &str| match c.params.get(k) {
        Some(Value::List(l)) => Dim::Size(l.len()),
        _ => Dim::sym("C"),
    };
    let width = match c.str("task") {
        Some("aus") => list("aus"),
        Some("age") => Dim::Size(1),
        Some("yes_no" | "deepfake") => Dim::Size(2),
        _ => list("classes"),
    };
    Ok(vec![
        TensorType::features(vec![b.clone(), l.clone(), Dim::sym("V")]),
        TensorType::f32(vec![b.clone(), l, h.clone()], Semantic::Tokens),
        TensorType::f32(vec![b.clone(), n, h], Semantic::Tokens),
        TensorType::features(vec![b, width]),
    ])
}

pub(crate) fn kind() -> Kind {
    KindBuilder::new("llm.instruct", Role::Component)
        .doc("A LLaMA- or Qwen2-family causal LM over tokenised conversations (an instruction dataset's `ids`), with visual tokens spliced in per sample at `visual_at`, where the placeholder stood (LLaVA's layout). Logits come back at the text positions, aligned with `ids` for `loss.lm`. With `answers = \"generate\"`, evaluation answers each sample in words and reads the answer as a class. Base weights are frozen; LoRA adapters train.")
        .input("ids", "token ids [B, L] (the dataset's `ids`)")
        .input("visual_at", "where each sample's visual tokens go [B] (the dataset's `visual_at`)")
        .input("prompt_len", "prompt ids per sample, up to the assistant's opening [B] (the dataset's `prompt_len`): where generation starts")
        .variadic_input("visual", "visual tokens [B, N, D_llm] (or [B, D_llm], or per frame [B, T, N, D_llm]), in order")
        .output("logits", "vocabulary logits at the text positions [B, L, V]; rows before the batch's earliest last prompt position are zeros (they only predict prompt tokens, never targets)")
        .output("hidden", "hidden states at the text positions [B, L, D_llm]")
        .output("visual_hidden", "hidden states at the visual positions [B, N, D_llm]")
        .output("answer", "the generated answer as the task reads it: one-hot classes [B, C] (emotion; no/yes for yes_no; real/fake for deepfake), AU logits ±10 [B, K] (aus), the number [B, 1] (age); a row of NaN where the answer gives no reading (answers = \"generate\", evaluation only)")
        .port_when("answer", "answers", Value::Str("generate".into()))
        .path("weights", None, "HF model folder or .gguf file (the instruction dataset's `weights`).")
        .param("tokenizer", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "tokenizer.json for decoding answers; none uses the folder's or the GGUF metadata.")
        .choice("dtype", &["f32", "f16", "bf16"], Some("f32"), "Dtype the frozen base matrices are held and multiplied in on a GPU; adapters, activations and optimiser state stay f32. The CPU computes in f32 and says so.")
        .param("lora", ParamType::Optional(Box::new(crate::layers::lora_record())), Some(Value::None), "LoRA adapters; none keeps the LLM frozen.")
        .param("layers", ParamType::Optional(Box::new(ParamType::Int { min: Some(1), max: None })), Some(Value::None), "Keep only the first N decoder layers.")
        .choice("answers", &["none", "generate"], Some("none"), "`generate`: at evaluation, answer each sample greedily (KV cache; samples with equally long prompts as one batch) and read the answer as a class into the `answer` port; the texts go to the run store and the report.")
        .int("max_new_tokens", Some(64), Some(1), "Longest generated answer in tokens (generation also stops at the end-of-turn token).")
        .choice("task", TASKS, Some("emotion"), "What answers are read as (the instruction dataset's `task`): `emotion`, `aus`, `age`, `yes_no` or `deepfake`.")
        .strings("classes", Some(CLASSES), "Class names answers are read against, in the dataset's label order (the instruction dataset's `classes`).")
        .ints("aus", Some(&[1, 2, 4, 6, 9, 12, 25, 26]), Some(1), "AUs answers are read for (task = \"aus\"), the instruction dataset's `aus`.")
        .shapes(shapes)
        .factory(build)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;

    #[test]
    fn splicing_puts_visual_tokens_at_each_samples_placeholder_and_back() {
        let dev = Device::Cpu;
        // Text value = position; visual value = 100 + position.
        let x = Tensor::arange(0f32, 8., &dev)
            .unwrap()
            .reshape((2, 4, 1))
            .unwrap();
        let v = (Tensor::arange(0f32, 4., &dev).unwrap() + 100.)
            .unwrap()
            .reshape((2, 2, 1))
            .unwrap();
        let s = splice(&x, &v, &[1, 4]).unwrap();
        let rows: Vec<Vec<f32>> = s.squeeze(2).unwrap().to_vec2().unwrap();
        assert_eq!(rows[0], [0., 100., 101., 1., 2., 3.]);
        assert_eq!(rows[1], [4., 5., 6., 7., 102., 103.]);
        let (t, back) = unsplice(&s, 2, &[1, 4]).unwrap();
        assert_eq!(
            t.squeeze(2).unwrap().to_vec2::<f32>().unwrap(),
            x.squeeze(2).unwrap().to_vec2::<f32>().unwrap()
        );
        assert_eq!(
            back.squeeze(2).unwrap().to_vec2::<f32>().unwrap(),
            v.squeeze(2).unwrap().to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn gradients_reach_the_adapters_and_the_visual_tokens() {
        let dir = std::env::temp_dir().join(format!("mer-instruct-lm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (folder, _, c) = super::super::tiny::tiny_checkpoint("llama", &dir).unwrap();
        let reg = crate::builtin_registry();
        let k = reg.get("llm.instruct").unwrap();
        let mut p = k.with_defaults(&std::collections::BTreeMap::from([(
            "weights".to_string(),
            Value::Str(folder.display().to_string()),
        )]));
        p.insert(
            "lora".into(),
            Value::Map(
                [
                    ("rank".to_string(), Value::Int(2)),
                    ("alpha".to_string(), Value::Float(4.0)),
                    ("dropout".to_string(), Value::Float(0.0)),
                    (
                        "targets".to_string(),
                        Value::List(vec![Value::Str("v_proj".into())]),
                    ),
                ]
                .into(),
            ),
        );
        use mer_registry::ExampleInput as E;
        let report = mer_registry::gradcheck::gradcheck(
            k,
            &p,
            &[
                E::ClassIndex {
                    dims: vec![2, 5],
                    classes: 200,
                },
                E::ClassIndex {
                    dims: vec![2],
                    classes: 6,
                },
                E::ClassIndex {
                    dims: vec![2],
                    classes: 5,
                },
                E::Features(vec![2, 2, c.hidden]),
            ],
            4,
        )
        .unwrap();
        let names: Vec<&str> = report.checked.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.iter().any(|n| n.contains("v_proj.lora_B")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.starts_with("input")), "{names:?}");
        for c in &report.checked {
            assert!(c.reached, "no gradient reached {}", c.name);
            assert!(
                c.max_error <= report.tolerance,
                "{} off by {:.2e}",
                c.name,
                c.max_error
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
