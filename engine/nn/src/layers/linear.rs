//! `nn.linear`, `nn.mlp` and `nn.lora_linear`: affine maps over the last
//! dimension, stacked with activations, or frozen and adapted by LoRA.

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    let (act_ty, act_default) = act();
    vec![
        unary(
            "nn.linear",
            "Affine map over the last dimension; the input width is inferred.",
        )
        .int("out", None, Some(1), "Output width.")
        .bool("bias", true, "Learn an additive bias.")
        .shapes(last_to_out)
        .factory(build_linear)
        .example(&[("out", Value::Int(3))], &[&[4, 5]])
        .build(),
        unary(
            "nn.mlp",
            "Stack of linear layers with an activation and dropout between them.",
        )
        .ints(
            "hidden",
            Some(&[]),
            Some(1),
            "Hidden widths, in order (empty: a single linear layer).",
        )
        .int("out", None, Some(1), "Output width.")
        .param(
            "activation",
            act_ty.clone(),
            act_default.clone(),
            "Activation between layers.",
        )
        .float(
            "dropout",
            Some(0.0),
            Some(0.0),
            Some(1.0),
            "Dropout after each hidden activation.",
        )
        .shapes(last_to_out)
        .factory(build_mlp)
        .example(
            &[
                ("hidden", Value::List(vec![Value::Int(6)])),
                ("out", Value::Int(3)),
                ("dropout", Value::Float(0.2)),
            ],
            &[&[4, 5]],
        )
        .build(),
        unary(
            "nn.lora_linear",
            "Linear layer whose weight is frozen and adapted by a low-rank update.",
        )
        .int("out", None, Some(1), "Output width.")
        .param(
            "lora",
            lora_record(),
            Some(Value::Map(Default::default())),
            "Adapter settings.",
        )
        .shapes(last_to_out)
        .factory(build_lora_linear)
        .example(&[("out", Value::Int(3))], &[&[4, 5]])
        .build(),
    ]
}

/// The `lora = { ... }` record shared by LoRA-capable components.
pub fn lora_record() -> ParamType {
    let f = |name: &str, ty: ParamType, default: Value, doc: &str| ParamSpec {
        name: name.into(),
        ty,
        default: Some(default),
        doc: doc.into(),
    };
    ParamType::Record(vec![
        f(
            "rank",
            ParamType::Int {
                min: Some(1),
                max: None,
            },
            Value::Int(8),
            "Adapter rank r.",
        ),
        f(
            "alpha",
            ParamType::Float {
                min: Some(0.0),
                max: None,
            },
            Value::Float(16.0),
            "Scale numerator: the update is (alpha / r)·B·A.",
        ),
        f(
            "dropout",
            ParamType::Float {
                min: Some(0.0),
                max: Some(1.0),
            },
            Value::Float(0.0),
            "Dropout on the adapter input.",
        ),
        f(
            "targets",
            ParamType::List(Box::new(ParamType::Str { choices: vec![] })),
            Value::List(vec![
                Value::Str("q_proj".into()),
                Value::Str("v_proj".into()),
            ]),
            "Names of the projections that get adapters.",
        ),
    ])
}

/// `[.., D] → [.., out]`.
fn last_to_out(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    if t.rank() == 0 {
        return Err(ShapeError::new(format!(
            "`{}` needs at least one dimension, `{}` is a scalar",
            c.kind,
            c.source(0)
        ))
        .at_input(0));
    }
    Ok(vec![t.with_last(sz(c.int("out").unwrap_or(1)))])
}

struct LinearNode(Linear);

impl Component for LinearNode {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        Ok(vec![self.0.apply(input(inputs, 0, "nn.linear")?)?])
    }
}

fn build_linear(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d_in = ctx.input_width(0)?;
    let out = ctx.usize("out")?;
    let bias = ctx.bool("bias")?;
    Ok(Box::new(LinearNode(Linear::new(ctx, "", d_in, out, bias)?)))
}

struct Mlp {
    layers: Vec<Linear>,
    act: Act,
    p: f64,
}

impl Component for Mlp {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let mut x = input(inputs, 0, "nn.mlp")?.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            x = l.apply(&x)?;
            if i < last {
                x = dropout(&self.act.apply(&x)?, self.p, false, mode, rng)?;
            }
        }
        Ok(vec![x])
    }
}

fn build_mlp(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let mut widths = vec![ctx.input_width(0)?];
    widths.extend(ints(ctx, "hidden")?);
    widths.push(ctx.usize("out")?);
    let act = Act::parse(ctx.str("activation")?);
    let p = ctx.float("dropout")?;
    let mut layers = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        layers.push(Linear::new(ctx, &format!("{i}."), w[0], w[1], true)?);
    }
    Ok(Box::new(Mlp { layers, act, p }))
}

/// LoRA: a frozen base weight (a plain tensor, never an optimiser variable)
/// plus a trainable low-rank update `(alpha / r)·B·A`, with B starting at
/// zero so training starts from the base model exactly.
pub struct LoraLinear {
    base: Tensor,
    a: Tensor,
    b: Tensor,
    scale: f64,
    p: f64,
}

impl LoraLinear {
    /// Adapts `base` (`[in, out]`), creating `<prefix>lora_A` and
    /// `<prefix>lora_B` in the store.
    pub fn new(
        ctx: &mut BuildCtx,
        prefix: &str,
        base: Tensor,
        rank: usize,
        alpha: f64,
        p: f64,
    ) -> Result<Self, BuildError> {
        let (d_in, d_out) = base.dims2()?;
        let a = ctx.param(
            &format!("{prefix}lora_A.weight"),
            &[rank, d_in],
            Init::KaimingUniform { fan_in: d_in },
        )?;
        let b = ctx.param(
            &format!("{prefix}lora_B.weight"),
            &[d_out, rank],
            Init::Zeros,
        )?;
        Ok(LoraLinear {
            base,
            a,
            b,
            scale: alpha / rank.max(1) as f64,
            p,
        })
    }

    /// `y = x·W + scale·(drop(x)·Aᵀ)·Bᵀ`: the scale touches the update only.
    pub fn apply(&self, x: &Tensor, mode: Mode, rng: &mut SeededRng) -> CResult<Tensor> {
        let y = frozen_matmul(x, &self.base)?;
        let h = dropout(x, self.p, false, mode, rng)?.broadcast_matmul(&self.a.t()?)?;
        y + (h.broadcast_matmul(&self.b.t()?)? * self.scale)?
    }

    /// The merged weight `W + scale·(B·A)ᵀ`, for export without adapters.
    pub fn merged(&self) -> CResult<Tensor> {
        self.base.to_dtype(self.a.dtype())? + (self.b.matmul(&self.a)?.t()? * self.scale)?
    }
}

impl Component for LoraLinear {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        Ok(vec![self.apply(
            input(inputs, 0, "nn.lora_linear")?,
            mode,
            rng,
        )?])
    }
}

fn lora_settings(ctx: &BuildCtx) -> (usize, f64, f64) {
    let mut s = (8usize, 16.0f64, 0.0f64);
    if let Some(Value::Map(m)) = ctx.params.get("lora") {
        if let Some(Value::Int(r)) = m.get("rank") {
            s.0 = (*r).max(1) as usize;
        }
        if let Some(a) = m.get("alpha").and_then(Value::as_f64) {
            s.1 = a;
        }
        if let Some(p) = m.get("dropout").and_then(Value::as_f64) {
            s.2 = p;
        }
    }
    s
}

fn build_lora_linear(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d_in = ctx.input_width(0)?;
    let out = ctx.usize("out")?;
    let (rank, alpha, p) = lora_settings(ctx);
    // Standalone, the frozen base is a seeded random projection; inside an
    // LLM body it is the pretrained weight.
    let mut rng = SeededRng::derive(ctx.vars.seed(), &format!("{}.base", ctx.node));
    let n = d_in
        .checked_mul(out)
        .filter(|&n| n <= mer_registry::component::MAX_PARAM_ELEMENTS)
        .ok_or_else(|| {
            BuildError(format!(
                "`nn.lora_linear`: a {d_in}×{out} base weight is too large"
            ))
        })?;
    let bound = 1.0 / (d_in as f32).sqrt();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform_range(-bound, bound)).collect();
    let base = Tensor::from_vec(data, (d_in, out), &ctx.device())?;
    Ok(Box::new(LoraLinear::new(ctx, "", base, rank, alpha, p)?))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn lora_starts_at_the_base_trains_b_and_merges() {
        let (lora, store) = build("nn.lora_linear", &[("out", Value::Int(3))], &[4, 5]);
        assert_eq!(
            store.len(),
            2,
            "only A and B are trainable; the base is a plain tensor"
        );
        let x = randn(&[4, 5], 9);
        let y0 = lora
            .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        let grads = y0.sum_all().unwrap().backward().unwrap();
        for (name, v) in store.vars() {
            let g = grads.get(v.as_tensor()).expect("reached");
            let nonzero = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0;
            // B = 0 at init: A's gradient is exactly zero, B's is not.
            assert_eq!(nonzero, name.contains("lora_B"), "{name}");
            if name.contains("lora_B") {
                v.set(&(v.as_tensor() - (g * 0.5).unwrap()).unwrap())
                    .unwrap();
            }
        }
        let y1 = lora
            .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        assert!(
            (&y1 - &y0)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 1e-3,
            "the update changed the output"
        );
    }
}
