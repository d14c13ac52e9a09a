//! mer plugin `au_llm`: AU-LLM (Liu et al., CCBR 2025; arXiv 2507.21778).
//!
//! Recipes enable it with `use au_llm`. The method: an LED temporal filter
//! over the frames, a small 3D-CNN with squeeze-and-excitation whose
//! mid-level (flattened) and high-level (FC 256) features are fused by the
//! Enhanced Fusion Projector into one token in the LLM's width; that token
//! goes before a task prompt into a LoRA-tuned LLM (mer's builtin
//! `llm.causal`), and a linear AU head reads the last hidden state.
//!
//! Kinds (the rest of the network is builtin `nn.*` nodes in the recipe, so
//! researchers can change the backbone declaratively):
//! - `au_llm.led`: the learnable LED filter (α, r1, r2 learnt in log space).
//! - `au_llm.se`: squeeze-and-excitation applied per frame of a 3-D feature map.
//! - `au_llm.efp`: the Enhanced Fusion Projector (MLP over the concatenated
//!   inputs to the LLM width).
//!
//! Values follow the authors' `AULLMmain.py` (commit 45430d0) as recovered
//! in the project's research notes (`datasets-protocols-metrics.md` §3).

use mer_registry::candle::{Result as CResult, Tensor, D};
use mer_registry::component::input;
use mer_registry::layers::{dropout, Linear};
use mer_registry::plugin::Registrar;
use mer_registry::{
    export_plugin, BuildCtx, BuildError, Component, Dim, KindBuilder, Mode, Role, SeededRng,
    ShapeCtx, ShapeError, TensorType, Value,
};

/// LED: `out = x·W / (|x|·|W| + ε)` over time, with
/// `W = α·(A(r1) − A(r2))`, `A(r)[i,j] = (1−r)^(j−i)·r^min(1,i)` above the
/// diagonal, `r` on it, 0 below; frame 0 is dropped from the output.
struct Led {
    log_alpha: Tensor,
    log_r1: Tensor,
    log_r2: Tensor,
    /// `|x|·|W| + 1e-8` (AU-LLM) or `x·|W| + 1` (MEB's LED).
    meb: bool,
}

/// Constant tables for `A(r)`: exponents of (1−r) and r above the
/// diagonal, and the two masks.
fn led_tables(t: usize, dev: &mer_registry::candle::Device) -> CResult<[Tensor; 4]> {
    let mut e1 = vec![0f32; t * t];
    let mut e2 = vec![0f32; t * t];
    let mut upper = vec![0f32; t * t];
    let mut diag = vec![0f32; t * t];
    for i in 0..t {
        for j in 0..t {
            let k = i * t + j;
            if j > i {
                e1[k] = (j - i) as f32;
                e2[k] = i.min(1) as f32;
                upper[k] = 1.0;
            } else if j == i {
                diag[k] = 1.0;
            }
        }
    }
    let m = |v: Vec<f32>| Tensor::from_vec(v, (t, t), dev);
    Ok([m(e1)?, m(e2)?, m(upper)?, m(diag)?])
}

impl Led {
    fn matrix(&self, t: usize, dev: &mer_registry::candle::Device) -> CResult<Tensor> {
        let [e1, e2, upper, diag] = led_tables(t, dev)?;
        let a = |log_r: &Tensor| -> CResult<Tensor> {
            let r = log_r.exp()?;
            // log(1 − r), differentiable; r stays in (0, 1) for sane values.
            let log_1mr = (r.neg()? + 1.0)?.log()?;
            let up = (e1.broadcast_mul(&log_1mr)? + e2.broadcast_mul(log_r)?)?.exp()?;
            (up * &upper)? + diag.broadcast_mul(&r)?
        };
        a(&self.log_r1)?
            .sub(&a(&self.log_r2)?)?
            .broadcast_mul(&self.log_alpha.exp()?)
    }
}

impl Component for Led {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "au_llm.led")?;
        let t = x.dim(2)?;
        if t < 2 {
            mer_registry::candle::bail!(
                "au_llm.led: {t} frame(s); it needs 2 (frame 0 is dropped)"
            );
        }
        let wm = self.matrix(t, x.device())?;
        // Time last: [B, C, H, W, T] · [T, T].
        let xt = x.permute((0, 1, 3, 4, 2))?.contiguous()?;
        let num = xt.broadcast_matmul(&wm)?;
        let den = if self.meb {
            (xt.broadcast_matmul(&wm.abs()?)? + 1.0)?
        } else {
            (xt.abs()?.broadcast_matmul(&wm.abs()?)? + 1e-8)?
        };
        let y = (num / den)?.permute((0, 1, 4, 2, 3))?;
        Ok(vec![y.narrow(2, 1, t - 1)?.contiguous()?])
    }
}

fn scalar(ctx: &mut BuildCtx, name: &str, value: f64) -> Result<Tensor, BuildError> {
    if value <= 0.0 {
        return Err(BuildError(format!(
            "`au_llm.led`: `{name}` must be positive"
        )));
    }
    let t = Tensor::new(&[value.ln() as f32], &ctx.device())?;
    ctx.param_from(&format!("log_{name}"), &t)
}

fn build_led(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let (r1, r2) = (ctx.float("r1")?, ctx.float("r2")?);
    if !(0.0..1.0).contains(&r1) || !(0.0..1.0).contains(&r2) {
        return Err(BuildError("`au_llm.led`: r1 and r2 lie in (0, 1)".into()));
    }
    Ok(Box::new(Led {
        log_alpha: scalar(ctx, "alpha", ctx.float("alpha")?)?,
        log_r1: scalar(ctx, "r1", r1)?,
        log_r2: scalar(ctx, "r2", r2)?,
        meb: ctx.str("normalize")? == "meb",
    }))
}

fn led_shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 5, "video [B, C, T, H, W]")?;
    let mut dims = t.dims.clone();
    dims[2] = match dims[2].size() {
        Some(0) | Some(1) => {
            return Err(ShapeError::new(
                "`au_llm.led` needs at least 2 frames (frame 0 is dropped)",
            )
            .at_input(0))
        }
        Some(n) => Dim::Size(n - 1),
        None => Dim::sym("T-1"),
    };
    Ok(vec![TensorType::f32(dims, t.semantic.clone())])
}

/// Squeeze-and-excitation per frame: channel weights from the spatial
/// mean of each frame, `σ(W2·ReLU(W1·s))`.
struct Se {
    fc1: Linear,
    fc2: Linear,
}

impl Component for Se {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "au_llm.se")?;
        // [B, C, T, H, W] → per-frame channel means [B, T, C].
        let s = x.mean(D::Minus1)?.mean(D::Minus1)?.transpose(1, 2)?;
        let g = self.fc2.apply(&self.fc1.apply(&s)?.relu()?)?;
        let g = (g.neg()?.exp()? + 1.0)?.recip()?; // σ, from primitives
        let g = g
            .transpose(1, 2)?
            .unsqueeze(D::Minus1)?
            .unsqueeze(D::Minus1)?;
        Ok(vec![x.broadcast_mul(&g)?])
    }
}

fn build_se(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let c = ctx
        .inputs
        .first()
        .and_then(|t| t.dims.get(1))
        .and_then(Dim::size)
        .ok_or_else(|| BuildError("`au_llm.se` needs a known channel count".into()))?;
    let hidden = (c / ctx.usize("reduction")?.max(1)).max(1);
    Ok(Box::new(Se {
        fc1: Linear::new(ctx, "fc1.", c, hidden, true)?,
        fc2: Linear::new(ctx, "fc2.", hidden, c, true)?,
    }))
}

fn se_shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 5, "feature maps [B, C, T, H, W]")?;
    Ok(vec![t.clone()])
}

/// Enhanced Fusion Projector: the inputs concatenated, then
/// `Linear → ReLU → Dropout → Linear` to the LLM width.
struct Efp {
    fc1: Linear,
    fc2: Linear,
    p: f64,
}

impl Component for Efp {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let flat: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.flatten_from(1))
            .collect::<CResult<_>>()?;
        let x = Tensor::cat(&flat, 1)?;
        let h = dropout(&self.fc1.apply(&x)?.relu()?, self.p, false, mode, rng)?;
        Ok(vec![self.fc2.apply(&h)?])
    }
}

fn flat_width(t: &TensorType) -> Option<usize> {
    t.dims[1..].iter().map(Dim::size).product()
}

fn build_efp(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d_in: usize = ctx
        .inputs
        .iter()
        .map(flat_width)
        .sum::<Option<usize>>()
        .ok_or_else(|| BuildError("`au_llm.efp` needs inputs of known width".into()))?;
    let out = ctx.usize("out")?;
    let hidden = match ctx.usize("hidden")? {
        0 => (d_in + out) / 2,
        h => h,
    };
    let p = ctx.float("dropout")?;
    Ok(Box::new(Efp {
        fc1: Linear::new(ctx, "fc1.", d_in, hidden, true)?,
        fc2: Linear::new(ctx, "fc2.", hidden, out, true)?,
        p,
    }))
}

fn efp_shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let first = c.input(0)?;
    for i in 0..c.inputs.len() {
        let t = c.input(i)?;
        if t.rank() < 2 {
            return Err(ShapeError::new(format!(
                "`au_llm.efp` input `{}` is {t}; it needs [B, …]",
                c.source(i)
            ))
            .at_input(i));
        }
    }
    Ok(vec![TensorType::features(vec![
        first.dims[0].clone(),
        Dim::Size(c.usize("out").unwrap_or(1)),
    ])])
}

/// Registers this plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {
    r.kind(
        KindBuilder::new("au_llm.led", Role::Component)
            .doc("LED temporal filter (AU-LLM, after MEB's LED): a learnable band-pass over frames, W = α·(A(r1) − A(r2)); output x·W / (|x|·|W| + 1e-8), frame 0 dropped. Give it its own parameter group (the paper trains it with a larger lr).")
            .input("video", "clips [B, C, T, H, W]")
            .output("out", "filtered clips [B, C, T−1, H, W]")
            .float("alpha", Some(10.0), Some(0.0), None, "Initial gain α (learnt as log α).")
            .float("r1", Some(0.4), Some(0.0), Some(1.0), "Initial fast decay r1 (learnt as log r1).")
            .float("r2", Some(0.05), Some(0.0), Some(1.0), "Initial slow decay r2 (learnt as log r2).")
            .choice("normalize", &["au_llm", "meb"], Some("au_llm"), "Denominator: AU-LLM's |x|·|W| + 1e-8, or MEB's x·|W| + 1.")
            .shapes(led_shapes)
            .factory(build_led)
            .example(&[], &[&[2, 1, 4, 3, 3]])
            .build(),
    );
    r.kind(
        KindBuilder::new("au_llm.se", Role::Component)
            .doc("Squeeze-and-excitation per frame of a 3-D feature map: channel gates σ(W2·ReLU(W1·mean_HW(x))) for each frame.")
            .input("x", "feature maps [B, C, T, H, W]")
            .output("out", "gated feature maps [B, C, T, H, W]")
            .int("reduction", Some(16), Some(1), "Channel reduction of the bottleneck.")
            .shapes(se_shapes)
            .factory(build_se)
            .example(&[("reduction", Value::Int(2))], &[&[2, 4, 2, 3, 3]])
            .build(),
    );
    r.kind(
        KindBuilder::new("au_llm.efp", Role::Component)
            .doc("Enhanced Fusion Projector: the inputs (F_mid, F_high, …) flattened and concatenated, then Linear → ReLU → Dropout → Linear to the LLM width: one visual token.")
            .variadic_input("features", "features to fuse, each [B, …]")
            .output("token", "the visual token [B, out]")
            .int("out", None, Some(1), "Output width: the LLM's hidden size.")
            .int("hidden", Some(0), Some(0), "Hidden width; 0 uses (inputs + out) / 2 as the paper.")
            .float("dropout", Some(0.3), Some(0.0), Some(1.0), "Dropout after the ReLU.")
            .shapes(efp_shapes)
            .factory(build_efp)
            .example(&[("out", Value::Int(3)), ("dropout", Value::Float(0.0))], &[&[2, 5], &[2, 2, 2]])
            .build(),
    );
}

export_plugin!("au_llm", register);

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::{DType, Device};
    use mer_registry::Semantic;
    use mer_registry::{ParamStore, Registry};
    use std::collections::BTreeMap;

    fn registry() -> Registry {
        let mut reg = Registry::new();
        reg.add_static_plugin("au_llm", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        reg
    }

    #[test]
    fn every_component_passes_gradcheck() {
        let reg = registry();
        for name in ["au_llm.led", "au_llm.se", "au_llm.efp"] {
            let k = reg.get(name).unwrap();
            let ex = k.example.as_ref().unwrap();
            let params = k.example_params().unwrap();
            let report = mer_registry::gradcheck::gradcheck(k, &params, &ex.inputs, 3).unwrap();
            assert!(report.ok(), "{name}: {report:?}");
            assert!(report.checked.len() > 1, "{name}: nothing checked");
        }
    }

    /// The LED matrix against the paper's formula, element by element.
    #[test]
    fn the_led_matrix_is_the_papers() {
        let dev = Device::Cpu;
        let mut store = ParamStore::new(0, dev.clone());
        let params: BTreeMap<String, Value> = [
            ("alpha", Value::Float(10.0)),
            ("r1", Value::Float(0.4)),
            ("r2", Value::Float(0.05)),
            ("normalize", Value::Str("au_llm".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut ctx = BuildCtx {
            node: "led",
            kind: "au_llm.led",
            params: &params,
            inputs: &[],
            vars: &mut store,
        };
        let led = Led {
            log_alpha: scalar(&mut ctx, "alpha", 10.0).unwrap(),
            log_r1: scalar(&mut ctx, "r1", 0.4).unwrap(),
            log_r2: scalar(&mut ctx, "r2", 0.05).unwrap(),
            meb: false,
        };
        let t = 5;
        let w = led.matrix(t, &dev).unwrap().to_vec2::<f32>().unwrap();
        let (a, r1, r2) = (10f64, 0.4f64, 0.05f64);
        for (i, row) in w.iter().enumerate() {
            for (j, got) in row.iter().enumerate() {
                let want = if j > i {
                    let m = i.min(1) as i32;
                    a * (1.0 - r1).powi((j - i) as i32) * r1.powi(m)
                        - a * (1.0 - r2).powi((j - i) as i32) * r2.powi(m)
                } else if j == i {
                    a * (r1 - r2)
                } else {
                    0.0
                };
                assert!(
                    (*got as f64 - want).abs() < 1e-4,
                    "W[{i}][{j}] = {got} vs {want}"
                );
            }
        }
        // Output: T−1 frames, bounded by 1 in magnitude (|x·W| ≤ |x|·|W|).
        let x = Tensor::randn(0f32, 1.0, (2, 1, t, 3, 3), &dev).unwrap();
        let y = led
            .forward(&[x], Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        assert_eq!(y.dims(), &[2, 1, t - 1, 3, 3]);
        let m = y.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(m.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap() <= 1.0 + 1e-5);
    }

    #[test]
    fn shapes_follow_the_paper() {
        let reg = registry();
        let k = reg.get("au_llm.led").unwrap();
        let f = k.shapes.unwrap();
        let params = k.example_params().unwrap();
        let video = TensorType::f32(
            vec![
                Dim::sym("B"),
                Dim::Size(1),
                Dim::Size(6),
                Dim::Size(64),
                Dim::Size(64),
            ],
            Semantic::Video,
        );
        let sources = ["clips.video".to_string()];
        let ctx = ShapeCtx {
            kind: "au_llm.led",
            params: &params,
            inputs: std::slice::from_ref(&video),
            sources: &sources,
        };
        let out = f(&ctx).unwrap();
        assert_eq!(out[0].dims[2], Dim::Size(5));
    }
}
