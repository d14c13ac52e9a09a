//! candle implementations of the builtin `loss.*` kinds. Each is a
//! component with inputs `(pred, target)` and one scalar output; all are
//! written from differentiable primitives (log-softmax as `x - logsumexp`,
//! BCE in its overflow-safe form).

use mer_registry::candle::{DType, Tensor, D};
use mer_registry::component::input;
use mer_registry::{BuildCtx, BuildError, Component, Mode, SeededRng, Value};
use mer_registry::{
    Dim, ExampleInput, Kind, KindBuilder, ParamType, Role, Semantic, ShapeCtx, ShapeError,
    TensorType,
};

type CResult<T> = mer_registry::candle::Result<T>;

fn reduce(x: &Tensor, sum: bool) -> CResult<Tensor> {
    if sum {
        x.sum_all()
    } else {
        x.mean_all()
    }
}

fn floats(ctx: &BuildCtx, name: &str) -> Result<Option<Vec<f32>>, BuildError> {
    match ctx.params.get(name) {
        Some(Value::List(l)) => Ok(Some(
            l.iter()
                .filter_map(Value::as_f64)
                .map(|f| f as f32)
                .collect(),
        )),
        _ => Ok(None),
    }
}

/// Targets reshaped to the prediction's layout (boxes `[B, T, 4]` against a
/// head of `[B, 4T]`: the shape check guaranteed equal sizes per sample).
fn like(target: &Tensor, pred: &Tensor) -> CResult<Tensor> {
    target.to_dtype(pred.dtype())?.reshape(pred.shape())
}

/// One-hot rows from class indices.
fn one_hot(target: &Tensor, classes: usize, dtype: DType) -> CResult<Tensor> {
    let b = target.dim(0)?;
    let idx = target.to_dtype(DType::I64)?.reshape((b, 1))?;
    let range = Tensor::arange(0i64, classes as i64, target.device())?.reshape((1, classes))?;
    idx.broadcast_eq(&range)?.to_dtype(dtype)
}

use mer_registry::layers::log_softmax;

/// Softmax cross-entropy with class weights, label smoothing, and the focal
/// modulation when `gamma > 0`.
struct CrossEntropy {
    weights: Option<Vec<f32>>,
    smoothing: f64,
    gamma: f64,
    sum: bool,
}

impl Component for CrossEntropy {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let pred = input(inputs, 0, "loss.cross_entropy")?;
        let target = input(inputs, 1, "loss.cross_entropy")?;
        let c = pred.dim(D::Minus1)?;
        let logp = log_softmax(pred)?;
        let hot = one_hot(target, c, pred.dtype())?;
        let soft = ((&hot * (1.0 - self.smoothing))? + self.smoothing / c as f64)?;
        let mut per = (logp.broadcast_mul(&soft)?.sum(D::Minus1)? * -1.0)?;
        if self.gamma > 0.0 {
            let pt = logp.exp()?.broadcast_mul(&hot)?.sum(D::Minus1)?;
            per = per.mul(&(pt.neg()? + 1.0)?.powf(self.gamma)?)?;
        }
        if let Some(w) = &self.weights {
            let w = Tensor::from_vec(w.clone(), (1, c), pred.device())?.to_dtype(pred.dtype())?;
            let wi = hot.broadcast_mul(&w)?.sum(D::Minus1)?;
            let total = per.mul(&wi)?.sum_all()?;
            // PyTorch's weighted mean divides by the weights of the batch.
            let out = if self.sum {
                total
            } else {
                total.div(&wi.sum_all()?)?
            };
            return Ok(vec![out]);
        }
        Ok(vec![reduce(&per, self.sum)?])
    }
}

/// Builds `loss.cross_entropy` from its parameters: optional class `weights`,
/// `label_smoothing` and `reduction` (`mean` or `sum`).
pub fn build_cross_entropy(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(CrossEntropy {
        weights: floats(ctx, "weights")?,
        smoothing: ctx.float("label_smoothing")?,
        gamma: 0.0,
        sum: ctx.str("reduction")? == "sum",
    }))
}

/// Builds `loss.focal`: cross-entropy scaled per sample by `(1 - p_t)^gamma`,
/// with no class weights or label smoothing.
pub fn build_focal(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(CrossEntropy {
        weights: None,
        smoothing: 0.0,
        gamma: ctx.float("gamma")?,
        sum: ctx.str("reduction")? == "sum",
    }))
}

/// Binary cross-entropy with logits, per label:
/// `max(x, 0) − x·y + log(1 + e^−|x|)`, stable for large |x|.
struct Bce {
    pos_weight: Option<Vec<f32>>,
    sum: bool,
}

impl Component for Bce {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "loss.bce")?;
        let y = like(input(inputs, 1, "loss.bce")?, x)?;
        let softplus_neg_abs = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
        let loss = match &self.pos_weight {
            None => ((x.relu()? - x.mul(&y)?)? + softplus_neg_abs)?,
            Some(pw) => {
                // (1 − y)·x + (1 + (pw − 1)·y)·log(1 + e^−x), in stable form.
                let k = x.dim(D::Minus1)?;
                let pw = Tensor::from_vec(pw.clone(), (1, k), x.device())?.to_dtype(x.dtype())?;
                let coef = (y.broadcast_mul(&(pw - 1.0)?)? + 1.0)?;
                let log1pexp_neg = (softplus_neg_abs + x.neg()?.relu()?)?;
                ((y.neg()? + 1.0)?.mul(x)? + coef.mul(&log1pexp_neg)?)?
            }
        };
        Ok(vec![reduce(&loss, self.sum)?])
    }
}

/// Builds `loss.bce`: binary cross-entropy with logits per label, with an
/// optional per-label `pos_weight` on positives.
pub fn build_bce(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Bce {
        pos_weight: floats(ctx, "pos_weight")?,
        sum: ctx.str("reduction")? == "sum",
    }))
}

/// Asymmetric loss (Ridnik et al., ICCV 2021) as AU-LLM uses it:
/// positives `−(1 − p)^γ+ · log p`, negatives `−p_m^γ− · log(1 − p_m)` with
/// the shifted probability `p_m = max(p − clip, 0)`.
struct Asymmetric {
    gamma_pos: f64,
    gamma_neg: f64,
    clip: f64,
    sum: bool,
}

impl Component for Asymmetric {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "loss.asymmetric")?;
        let y = like(input(inputs, 1, "loss.asymmetric")?, x)?;
        let eps = 1e-8;
        let p = (x.neg()?.exp()? + 1.0)?.recip()?;
        let p_m = if self.clip > 0.0 {
            (&p - self.clip)?.relu()?
        } else {
            p.clone()
        };
        let mut pos = (p.clamp(eps, 1.0)?.log()?.mul(&y))?;
        if self.gamma_pos > 0.0 {
            pos = pos.mul(&(p.neg()? + 1.0)?.powf(self.gamma_pos)?)?;
        }
        let mut neg = ((p_m.neg()? + 1.0)?
            .clamp(eps, 1.0)?
            .log()?
            .mul(&(y.neg()? + 1.0)?))?;
        if self.gamma_neg > 0.0 {
            // p_m ≥ 0, so the power is defined; a small floor keeps its
            // derivative finite at exactly zero.
            neg = neg.mul(&(p_m + 1e-12)?.powf(self.gamma_neg)?)?;
        }
        let loss = ((pos + neg)? * -1.0)?;
        Ok(vec![reduce(&loss, self.sum)?])
    }
}

/// Builds `loss.asymmetric` from `gamma_pos`, `gamma_neg`, `clip` and
/// `reduction`.
pub fn build_asymmetric(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Asymmetric {
        gamma_pos: ctx.float("gamma_pos")?,
        gamma_neg: ctx.float("gamma_neg")?,
        clip: ctx.float("clip")?,
        sum: ctx.str("reduction")? == "sum",
    }))
}

/// Squared (`l2`) or absolute (`l1`) error.
struct Regression {
    squared: bool,
    sum: bool,
}

impl Component for Regression {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let p = input(inputs, 0, "loss.mse")?;
        let d = (p - like(input(inputs, 1, "loss.mse")?, p)?)?;
        let e = if self.squared { d.sqr()? } else { d.abs()? };
        Ok(vec![reduce(&e, self.sum)?])
    }
}

/// Builds `loss.mse`: squared error over every element, averaged or summed.
pub fn build_mse(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Regression {
        squared: true,
        sum: ctx.str("reduction")? == "sum",
    }))
}

/// Builds `loss.l1`: absolute error over every element, averaged or summed.
pub fn build_l1(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Regression {
        squared: false,
        sum: ctx.str("reduction")? == "sum",
    }))
}

/// Rows scaled to unit length (a small floor keeps zero rows finite).
fn unit_rows(x: &Tensor) -> CResult<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?)
}

/// `1 − cos(pred, target)`, averaged over rows.
struct Cosine;

impl Component for Cosine {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let p = unit_rows(input(inputs, 0, "loss.cosine")?)?;
        let t = unit_rows(input(inputs, 1, "loss.cosine")?)?;
        Ok(vec![(p.mul(&t)?.sum(D::Minus1)?.neg()? + 1.0)?.mean_all()?])
    }
}

/// Builds `loss.cosine`, which takes no parameters.
pub fn build_cosine(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Cosine))
}

/// Symmetric InfoNCE (CLIP): row i of `pred` should match row i of
/// `target` against every other row, in both directions.
struct Contrastive {
    temperature: f64,
}

impl Component for Contrastive {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let p = unit_rows(input(inputs, 0, "loss.contrastive")?)?;
        let t = unit_rows(input(inputs, 1, "loss.contrastive")?)?;
        let logits = (p.matmul(&t.t()?)? / self.temperature)?;
        let n = logits.dim(0)?;
        let eye = Tensor::eye(n, logits.dtype(), logits.device())?;
        let ce = |l: &Tensor| -> CResult<Tensor> {
            (log_softmax(l)?.mul(&eye)?.sum(D::Minus1)?.neg()?).mean_all()
        };
        Ok(vec![((ce(&logits)? + ce(&logits.t()?)?)? * 0.5)?])
    }
}

/// Builds `loss.contrastive` with its `temperature` (logits are cosine
/// similarities divided by it).
pub fn build_contrastive(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Contrastive {
        temperature: ctx.float("temperature")?,
    }))
}

/// Token-weighted next-token cross-entropy: position `t`'s logits predict
/// `ids[t + 1]`, weighed by that token's type.
struct Lm {
    /// Weight per token type: prompt, label, rationale, end, padding.
    weights: [f32; 5],
}

impl Component for Lm {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let logits = input(inputs, 0, "loss.lm")?;
        let ids = input(inputs, 1, "loss.lm")?;
        let types = input(inputs, 2, "loss.lm")?;
        let (b, l, _) = logits.dims3()?;
        if l < 2 {
            return (logits.sum_all()? * 0.0).map(|z| vec![z]);
        }
        // Weights are data, computed off the graph from the types.
        let w: Vec<f32> = types
            .narrow(1, 1, l - 1)?
            .to_dtype(DType::I64)?
            .flatten_all()?
            .to_vec1::<i64>()?
            .into_iter()
            .map(|t| {
                usize::try_from(t)
                    .ok()
                    .and_then(|t| self.weights.get(t).copied())
                    .unwrap_or(0.0)
            })
            .collect();
        let total: f32 = w.iter().sum();
        // Only positions that are targets go through the vocabulary-wide
        // log-softmax: prompt and padding positions (most of a sequence)
        // weigh 0, and skipping them saves as many passes over V.
        let rows: Vec<u32> = (0..w.len() as u32)
            .filter(|&i| w[i as usize] > 0.0)
            .collect();
        if rows.is_empty() {
            return (logits.sum_all()? * 0.0).map(|z| vec![z]);
        }
        let v = logits.dim(2)?;
        let dev = logits.device();
        let pick = Tensor::from_vec(rows.clone(), rows.len(), dev)?;
        let at = logits
            .narrow(1, 0, l - 1)?
            .contiguous()?
            .reshape((b * (l - 1), v))?
            .index_select(&pick, 0)?;
        let next = ids
            .narrow(1, 1, l - 1)?
            .to_dtype(DType::U32)?
            .flatten_all()?
            .index_select(&pick, 0)?
            .unsqueeze(1)?;
        let nll = log_softmax(&at)?.gather(&next, 1)?.squeeze(1)?.neg()?;
        let w: Vec<f32> = rows.iter().map(|&i| w[i as usize]).collect();
        let w = Tensor::from_vec(w, rows.len(), dev)?.to_dtype(nll.dtype())?;
        Ok(vec![(nll.mul(&w)?.sum_all()? / total.max(1e-12) as f64)?])
    }
}

/// Builds `loss.lm` with its per-type weights.
pub fn build_lm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Lm {
        weights: [
            0.0,
            ctx.float("label_weight")? as f32,
            ctx.float("rationale_weight")? as f32,
            ctx.float("end_weight")? as f32,
            0.0,
        ],
    }))
}

// ---- the kinds: schemas and shape functions --------------------------------

fn pair(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Loss)
        .doc(doc)
        .input("pred", "predictions (logits unless stated)")
        .input("target", "targets")
}

fn reduction() -> (ParamType, Option<Value>) {
    (
        ParamType::Str {
            choices: vec!["mean".into(), "sum".into()],
        },
        Some(Value::Str("mean".into())),
    )
}

pub(crate) fn kinds() -> Vec<Kind> {
    let (red, red_d) = reduction();
    let optional_floats =
        ParamType::Optional(Box::new(ParamType::List(Box::new(ParamType::Float {
            min: Some(0.0),
            max: None,
        }))));
    vec![
        pair("loss.cross_entropy", "Softmax cross-entropy over classes.")
            .param("weights", optional_floats.clone(), Some(Value::None), "Per-class weights; none weighs classes equally.")
            .float("label_smoothing", Some(0.0), Some(0.0), Some(1.0), "Label smoothing ε.")
            .param("reduction", red.clone(), red_d.clone(), "Batch reduction.")
            .shapes(loss_classification)
            .factory(build_cross_entropy)
            .example_inputs(&[("label_smoothing", Value::Float(0.1))], vec![ExampleInput::Features(vec![4, 5]), ExampleInput::ClassIndex { dims: vec![4], classes: 5 }])
            .build(),
        pair("loss.bce", "Binary cross-entropy with logits, per label (multi-label AUs).")
            .param("pos_weight", optional_floats, Some(Value::None), "Per-label positive weights.")
            .param("reduction", red.clone(), red_d.clone(), "Batch reduction.")
            .shapes(loss_multilabel)
            .factory(build_bce)
            .example_inputs(&[], vec![ExampleInput::Features(vec![4, 3]), ExampleInput::Binary(vec![4, 3])])
            .build(),
        pair("loss.asymmetric", "Asymmetric loss for multi-label targets (Ridnik et al.): focusing γ+ / γ− and probability clipping of negatives.")
            .float("gamma_pos", Some(0.0), Some(0.0), None, "Focusing exponent for positives.")
            .float("gamma_neg", Some(4.0), Some(0.0), None, "Focusing exponent for negatives.")
            .float("clip", Some(0.05), Some(0.0), Some(1.0), "Probability margin shifted off negatives.")
            .param("reduction", red.clone(), Some(Value::Str("sum".into())), "Batch reduction (AU-LLM sums).")
            .shapes(loss_multilabel)
            .factory(build_asymmetric)
            .example_inputs(&[], vec![ExampleInput::Features(vec![4, 3]), ExampleInput::Binary(vec![4, 3])])
            .build(),
        pair("loss.focal", "Focal loss over classes.")
            .float("gamma", Some(2.0), Some(0.0), None, "Focusing exponent.")
            .param("alpha", ParamType::Optional(Box::new(ParamType::Float { min: Some(0.0), max: Some(1.0) })), Some(Value::None), "Class balance factor.")
            .param("reduction", red.clone(), red_d.clone(), "Batch reduction.")
            .shapes(loss_classification)
            .factory(build_focal)
            .example_inputs(&[], vec![ExampleInput::Features(vec![4, 5]), ExampleInput::ClassIndex { dims: vec![4], classes: 5 }])
            .build(),
        pair("loss.mse", "Mean squared error (regression targets such as boxes and landmarks).")
            .param("reduction", red.clone(), red_d.clone(), "Reduction.")
            .shapes(loss_regression)
            .factory(build_mse)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 8]), ExampleInput::Features(vec![3, 2, 4])])
            .build(),
        pair("loss.l1", "Mean absolute error.")
            .param("reduction", red.clone(), red_d.clone(), "Reduction.")
            .shapes(loss_regression)
            .factory(build_l1)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 8]), ExampleInput::Binary(vec![3, 8])])
            .build(),
        pair("loss.cosine", "1 − cosine similarity between prediction and target vectors.").shapes(loss_pairs)
            .factory(build_cosine)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 4]), ExampleInput::Features(vec![3, 4])])
            .build(),
        pair("loss.contrastive", "InfoNCE between matched rows of `pred` and `target` (CLIP-style alignment).")
            .float("temperature", Some(0.07), Some(1e-4), None, "Softmax temperature τ.")
            .shapes(loss_pairs)
            .factory(build_contrastive)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 4]), ExampleInput::Features(vec![3, 4])])
            .build(),
        KindBuilder::new("loss.lm", Role::Loss)
            .doc("Next-token cross-entropy over the answer, weighted per token type (an instruction dataset's `types`): prompt and padding tokens are never targets; label, rationale and end-of-turn tokens weigh as set (DEFT-LLM: label 2.0, rationale 0.3). The mean is over the weights, so a batch's loss does not depend on its padding.")
            .input("logits", "vocabulary logits at the text positions [B, L, V] (`llm.instruct.logits`)")
            .input("ids", "token ids [B, L]")
            .input("types", "token types [B, L]: 0 prompt, 1 label, 2 rationale, 3 end of turn, 4 padding")
            .float("label_weight", Some(1.0), Some(0.0), None, "Weight of label tokens.")
            .float("rationale_weight", Some(1.0), Some(0.0), None, "Weight of rationale tokens.")
            .float("end_weight", Some(1.0), Some(0.0), None, "Weight of the template's end-of-turn tokens (what teaches the model to stop).")
            .shapes(loss_lm)
            .factory(build_lm)
            .example_inputs(&[("label_weight", Value::Float(2.0)), ("rationale_weight", Value::Float(0.3))], vec![ExampleInput::Features(vec![2, 4, 5]), ExampleInput::ClassIndex { dims: vec![2, 4], classes: 5 }, ExampleInput::ClassIndex { dims: vec![2, 4], classes: 4 }])
            .build(),
    ]
}

/// `loss.lm`: logits `[B, L, V]` beside ids and types `[B, L]`.
fn loss_lm(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let logits = c.input(0)?;
    if logits.rank() != 3 {
        return Err(ShapeError::new(format!(
            "`loss.lm` takes vocabulary logits [B, L, V]; `{}` is {logits}",
            c.source(0)
        ))
        .at_input(0)
        .help("connect `llm.instruct.logits`"));
    }
    for i in [1, 2] {
        let t = c.input(i)?;
        let aligned = t.rank() == 2 && t.dims[1].compatible(&logits.dims[1]);
        if !aligned {
            return Err(ShapeError::new(format!(
                "`loss.lm`: `{}` is {t}; it must be [B, L] with the logits' L = {}",
                c.source(i),
                logits.dims[1]
            ))
            .at_input(i));
        }
    }
    Ok(vec![])
}

/// Class scores `[B, C]` against class-index targets.
fn classification(c: &ShapeCtx, what: &str) -> Result<(), ShapeError> {
    let pred = c.input(0)?;
    let target = c.input(1)?;
    let classes = match &target.semantic {
        Semantic::ClassIndex { classes } => *classes,
        other => {
            let alt = if *other == Semantic::MultiLabel {
                " — for multi-label AU targets use loss.bce / loss.asymmetric / metric.f1"
            } else {
                ""
            };
            return Err(ShapeError::new(format!(
                "`{}` needs class-index targets, but `{}` is {}{alt}",
                c.kind,
                c.source(1),
                other.describe()
            ))
            .at_input(1));
        }
    };
    if pred.rank() != 2 {
        return Err(ShapeError::new(format!(
            "`{}` expects {what} [B, C], `{}` is {pred}",
            c.kind,
            c.source(0)
        ))
        .at_input(0));
    }
    if let (Some(n), Some(k)) = (classes, pred.dims[1].size()) {
        if n != k {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` scores {k} classes, but `{}` has {n} classes",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(0)
            .help(format!("set the head's `out = {n}`")));
        }
    }
    Ok(())
}

/// Per-label scores `[B, K]` against multi-label targets `[B, K]`.
fn multilabel(c: &ShapeCtx) -> Result<(), ShapeError> {
    let pred = c.input(0)?;
    let target = c.input(1)?;
    if target.semantic != Semantic::MultiLabel {
        let alt = if matches!(target.semantic, Semantic::ClassIndex { .. }) {
            " — for class labels use loss.cross_entropy / metric.uf1"
        } else {
            ""
        };
        return Err(ShapeError::new(format!(
            "`{}` needs multi-label targets, but `{}` is {}{alt}",
            c.kind,
            c.source(1),
            target.semantic.describe()
        ))
        .at_input(1));
    }
    let k = target.last().and_then(Dim::size);
    if pred.rank() != 2 {
        return Err(ShapeError::new(format!(
            "`{}` expects per-label scores [B, K], `{}` is {pred}",
            c.kind,
            c.source(0)
        ))
        .at_input(0));
    }
    if let (Some(k), Some(p)) = (k, pred.dims[1].size()) {
        if k != p {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` scores {p} labels, but `{}` has {k}",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(0)
            .help(format!(
                "the dataset provides {k} AU labels; set the head's `out = {k}`"
            )));
        }
    }
    Ok(())
}

/// Regression: the same number of values per sample.
fn regression(c: &ShapeCtx) -> Result<(), ShapeError> {
    let pred = c.input(0)?;
    let target = c.input(1)?;
    if let (Some(a), Some(b)) = (pred.per_sample(), target.per_sample()) {
        if a != b {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` is {pred} ({a} per sample) but `{}` is {target} ({b} per sample)",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(0)
            .help(format!("set the head's `out = {b}`")));
        }
    }
    Ok(())
}

pub(crate) fn loss_classification(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    classification(c, "class scores").map(|_| vec![])
}

pub(crate) fn loss_multilabel(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    multilabel(c).map(|_| vec![])
}

pub(crate) fn loss_regression(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    regression(c).map(|_| vec![])
}

pub(crate) fn loss_pairs(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    if let (Some(x), Some(y)) = (a.last().and_then(Dim::size), b.last().and_then(Dim::size)) {
        if x != y {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` has width {x}, `{}` has width {y}",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(1));
        }
    }
    Ok(vec![])
}

#[cfg(test)]
mod tests {
    use crate::layers::{b, testing::ctx};
    use std::collections::BTreeMap;

    use super::*;
    use mer_registry::candle::Device;

    fn t(v: &[f32], dims: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), dims, &Device::Cpu).unwrap()
    }

    fn run(c: &dyn Component, pred: Tensor, target: Tensor) -> f32 {
        c.forward(&[pred, target], Mode::Train, &mut SeededRng::new(0))
            .unwrap()[0]
            .to_scalar::<f32>()
            .unwrap()
    }

    /// `loss.lm` by hand: position t predicts token t+1, weighed by its
    /// type; prompt and padding never count.
    #[test]
    fn lm_loss_weighs_next_tokens_by_type() {
        let lm = Lm {
            weights: [0.0, 2.0, 0.5, 1.0, 0.0],
        };
        // One sequence of 4 tokens over a vocabulary of 3: ids 0 1 2 1,
        // types prompt, label, rationale, padding. Position 0 predicts id 1
        // (label), position 1 id 2 (rationale), position 2 id 1 (padding).
        let ids = Tensor::from_vec(vec![0i64, 1, 2, 1], (1, 4), &Device::Cpu).unwrap();
        let types = Tensor::from_vec(vec![0i64, 1, 2, 4], (1, 4), &Device::Cpu).unwrap();
        let logits = t(
            &[
                0., 3., 0., /**/ 1., 0., 0., /**/ 0., 0., 9., /**/ 0., 0., 0.,
            ],
            &[1, 4, 3],
        );
        let out = lm
            .forward(&[logits, ids, types], Mode::Train, &mut SeededRng::new(0))
            .unwrap()[0]
            .to_scalar::<f32>()
            .unwrap();
        let nll =
            |z: [f32; 3], k: usize| -(z[k].exp() / z.iter().map(|v| v.exp()).sum::<f32>()).ln();
        let want = (2.0 * nll([0., 3., 0.], 1) + 0.5 * nll([1., 0., 0.], 2)) / 2.5;
        assert!((out - want).abs() < 1e-5, "{out} vs {want}");
    }

    /// Values computed by hand (and matching PyTorch's definitions).
    #[test]
    fn reference_values() {
        let ce = CrossEntropy {
            weights: None,
            smoothing: 0.0,
            gamma: 0.0,
            sum: false,
        };
        let pred = t(&[2.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]);
        let target = Tensor::from_vec(vec![0i64, 2], 2, &Device::Cpu).unwrap();
        // Row 1: -log(e²/(e²+2)); row 2: -log(1/(e+2)).
        let e2 = 2f32.exp();
        let want = (-(e2 / (e2 + 2.0)).ln() + (1f32.exp() + 2.0).ln()) / 2.0;
        assert!((run(&ce, pred.clone(), target.clone()) - want).abs() < 1e-5);
        let ls = CrossEntropy {
            weights: None,
            smoothing: 0.1,
            gamma: 0.0,
            sum: false,
        };
        assert!(
            run(&ls, pred, target) > want,
            "smoothing penalises confidence"
        );

        let bce = Bce {
            pos_weight: None,
            sum: false,
        };
        let x = t(&[0.0, 100.0, -100.0], &[1, 3]);
        let y = t(&[1.0, 1.0, 0.0], &[1, 3]);
        // log 2 for x = 0; ~0 for confident and right, no overflow.
        assert!((run(&bce, x, y) - 2f32.ln() / 3.0).abs() < 1e-5);

        // ASL with γ = 0 and no clip is BCE summed.
        let asl = Asymmetric {
            gamma_pos: 0.0,
            gamma_neg: 0.0,
            clip: 0.0,
            sum: true,
        };
        let x = t(&[0.3, -1.2, 2.0, 0.1], &[2, 2]);
        let y = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
        let bce_sum = Bce {
            pos_weight: None,
            sum: true,
        };
        assert!(
            (run(&asl, x.clone(), y.clone()) - run(&bce_sum, x.clone(), y.clone())).abs() < 1e-4
        );
        // Clipping ignores easy negatives entirely.
        let clipped = Asymmetric {
            gamma_pos: 0.0,
            gamma_neg: 4.0,
            clip: 0.9,
            sum: true,
        };
        let easy = t(&[-3.0], &[1, 1]);
        assert!(run(&clipped, easy, t(&[0.0], &[1, 1])).abs() < 1e-6);
    }

    #[test]
    fn cosine_and_contrastive_references() {
        let cos = Cosine;
        let a = t(&[1.0, 0.0, 0.0, 2.0], &[2, 2]);
        let b = t(&[3.0, 0.0, 0.0, -1.0], &[2, 2]);
        // Row 1 aligned (1 − 1 = 0), row 2 opposite (1 − (−1) = 2): mean 1.
        assert!((run(&cos, a.clone(), b) - 1.0).abs() < 1e-6);
        // Perfectly matched, well separated pairs: loss near zero.
        let clip = Contrastive { temperature: 0.01 };
        assert!(run(&clip, a.clone(), a.clone()) < 1e-3);
        // Swapped pairs: large loss.
        let swapped = t(&[0.0, 2.0, 1.0, 0.0], &[2, 2]);
        assert!(run(&clip, a, swapped) > 10.0);
    }

    #[test]
    fn targets_are_checked_by_meaning() {
        let p = BTreeMap::new();
        let x = [
            TensorType::features(vec![b(), Dim::Size(8)]),
            TensorType {
                dims: vec![b()],
                dtype: mer_registry::DType::I64,
                semantic: Semantic::ClassIndex { classes: Some(5) },
            },
        ];
        let s = ["aus.out".to_string(), "clips.emotion".to_string()];
        let e = loss_multilabel(&ctx(&p, &x, &s)).unwrap_err();
        assert!(
            e.message.contains("needs multi-label targets"),
            "{}",
            e.message
        );
        let e = loss_classification(&ctx(&p, &x, &s)).unwrap_err();
        assert!(
            e.message
                .contains("scores 8 classes, but `clips.emotion` has 5"),
            "{}",
            e.message
        );
    }
}
