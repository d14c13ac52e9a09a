//! `testkit`: a small, real mer plugin used by mer's own tests.
//!
//! It provides `testkit.affine` (a trainable affine map) and `testkit.tanh`,
//! enough to check loading, the handshake, and that gradients through a
//! dynamically loaded component equal those through the same component
//! linked statically; and `testkit.signsgd`, an optimiser kind, to check
//! that a plugin can add one and a recipe trains with it; and
//! `testkit.tally`, a dataset kind whose `verify` and `write_layout` hooks
//! give it `mer data verify|synth` with no change to mer. Setting
//! `MER_TESTKIT_PANIC` makes `register` panic, to test that the host reports
//! it instead of crashing.

use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::optim::{optimizer_kind, StepCtx, UpdateRule};
use mer_registry::plugin::Registrar;
use mer_registry::{
    export_plugin, BuildCtx, BuildError, Component, Init, KindBuilder, Mode, Params, Role,
    SeededRng, ShapeCtx, ShapeError, TensorType,
};

/// `y = x·W + b` over the last dimension.
struct Affine {
    weight: Tensor,
    bias: Tensor,
}

impl Component for Affine {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "testkit.affine")?;
        Ok(vec![x
            .broadcast_matmul(&self.weight)?
            .broadcast_add(&self.bias)?])
    }
}

fn build_affine(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d_in = ctx.input_width(0)?;
    let d_out = ctx.usize("out")?;
    let weight = ctx.param(
        "weight",
        &[d_in, d_out],
        Init::KaimingUniform { fan_in: d_in },
    )?;
    let bias = ctx.param("bias", &[d_out], Init::Uniform(0.1))?;
    Ok(Box::new(Affine { weight, bias }))
}

fn affine_shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    let out = c.usize("out").unwrap_or(1);
    if t.rank() < 2 {
        return Err(ShapeError::new(format!(
            "`testkit.affine` expects [B, .., D], `{}` is {t}",
            c.source(0)
        ))
        .at_input(0));
    }
    Ok(vec![t.with_last(mer_registry::Dim::Size(out))])
}

struct Tanh;

impl Component for Tanh {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "testkit.tanh")?;
        Ok(vec![x.tanh()?])
    }
}

fn build_tanh(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Tanh))
}

fn same_shape(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    Ok(vec![TensorType::features(c.input(0)?.dims.clone())])
}

/// Sign-SGD: `θ ← θ − lr·sign(g + wd·θ)`. Stateless, so it also shows
/// that a rule needs no buffers; groups, clipping and checkpoints come
/// from mer's optimiser driver.
struct SignSgd;

impl UpdateRule for SignSgd {
    fn update(
        &self,
        theta: &Tensor,
        grad: &Tensor,
        _state: &mut [Option<Tensor>],
        c: &StepCtx,
    ) -> CResult<Tensor> {
        let g = if c.weight_decay != 0.0 {
            (grad + (theta * c.weight_decay)?)?
        } else {
            grad.clone()
        };
        theta - (g.sign()? * c.lr)?
    }
}

fn build_signsgd(_p: &Params) -> Result<Box<dyn UpdateRule>, BuildError> {
    Ok(Box::new(SignSgd))
}

/// `mer data verify` for `testkit.tally`: `labels.csv` rows `id,label`
/// (label a small integer); every bad row is a problem at its file:row.
fn tally_verify(
    _kind: &str,
    root: &std::path::Path,
    _params: &std::collections::BTreeMap<String, mer_registry::Value>,
) -> (String, bool) {
    let file = root.join("labels.csv");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => return (format!("{}: {e}\n", file.display()), false),
    };
    let mut samples = 0;
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        match line.split_once(',') {
            Some((id, label)) if !id.is_empty() && label.trim().parse::<u32>().is_ok() => {
                samples += 1
            }
            _ => problems.push(format!(
                "{}:{}: not `id,label`: `{line}`",
                file.display(),
                i + 1
            )),
        }
    }
    let mut out = format!("samples: {samples}\n");
    for p in &problems {
        out.push_str(&format!("problem: {p}\n"));
    }
    (out, problems.is_empty())
}

/// `mer data synth` for `testkit.tally`: one row per generated sample.
fn tally_write(
    _kind: &str,
    out: &std::path::Path,
    req: &mer_registry::LayoutRequest,
) -> Result<usize, String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let n = req.subjects * req.clips_per_subject;
    let mut csv = String::from("id,label\n");
    for i in 0..n {
        csv.push_str(&format!(
            "s{}_{i},{}\n",
            i / req.clips_per_subject.max(1),
            i % 2
        ));
    }
    std::fs::write(out.join("labels.csv"), csv).map_err(|e| e.to_string())?;
    Ok(n)
}

/// Registers the plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {
    if std::env::var_os("MER_TESTKIT_PANIC").is_some() {
        panic!("testkit was asked to panic in register (MER_TESTKIT_PANIC is set)");
    }
    r.kind(
        KindBuilder::new("testkit.affine", Role::Component)
            .doc("Trainable affine map over the last dimension (test plugin).")
            .input("x", "features [B, .., D]")
            .output("out", "features [B, .., out]")
            .int("out", None, Some(1), "Output width.")
            .shapes(affine_shapes)
            .factory(build_affine)
            .build(),
    );
    r.kind(
        KindBuilder::new("testkit.tanh", Role::Component)
            .doc("Element-wise tanh (test plugin).")
            .input("x", "any tensor")
            .output("out", "same shape")
            .shapes(same_shape)
            .factory(build_tanh)
            .build(),
    );
    r.kind(
        optimizer_kind(
            "testkit.signsgd",
            "Sign-SGD: every parameter moves by `lr` against its gradient's sign (test plugin).",
            0.0,
        )
        .optimizer(build_signsgd)
        .build(),
    );
    r.kind(
        KindBuilder::new("testkit.tally", Role::Data)
            .doc("A labels.csv of `id,label` rows (test plugin: a dataset with verify and layout hooks, no loader).")
            .output("label", "class index [B]")
            .path("root", None, "The folder holding labels.csv.")
            .verify(tally_verify)
            .write_layout(tally_write)
            .build(),
    );
}

export_plugin!("testkit", register);

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::{Dim, ParamStore, Registry};
    use std::collections::BTreeMap;

    #[test]
    fn registers_and_computes() {
        let mut reg = Registry::new();
        reg.add_static_plugin("testkit", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        let kind = reg.get("testkit.affine").unwrap();
        let mut store = ParamStore::new(7, Device::Cpu);
        let params = BTreeMap::from([("out".to_string(), mer_registry::Value::Int(2))]);
        let inputs = [TensorType::features(vec![Dim::sym("B"), Dim::Size(3)])];
        let c = kind.build("a", &params, &inputs, &mut store).unwrap();
        let x = Tensor::ones((4, 3), mer_registry::candle::DType::F32, &Device::Cpu).unwrap();
        let y = c
            .forward(&[x], Mode::Train, &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(y[0].dims(), &[4, 2]);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn signsgd_steps_by_lr_against_the_sign() {
        let mut reg = Registry::new();
        reg.add_static_plugin("testkit", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        let kind = reg.get("testkit.signsgd").unwrap();
        let params = kind.with_defaults(&BTreeMap::from([(
            "lr".to_string(),
            mer_registry::Value::Float(0.5),
        )]));
        let factory = kind.factory.optimizer().unwrap();
        let rule = factory(&Params::new("testkit.signsgd", &params)).unwrap();
        assert!(rule.buffers().is_empty());
        let dev = Device::Cpu;
        let theta = Tensor::new(&[1f32, 1.0, 1.0], &dev).unwrap();
        let grad = Tensor::new(&[-3f32, 0.0, 0.25], &dev).unwrap();
        let ctx = StepCtx {
            lr: 0.5,
            weight_decay: 0.0,
            t: 1,
        };
        let next = rule.update(&theta, &grad, &mut [], &ctx).unwrap();
        assert_eq!(next.to_vec1::<f32>().unwrap(), [1.5, 1.0, 0.5]);
    }
}
