//! mer plugin `hello`.
//!
//! Recipes enable it with `use hello`; its kinds live under `hello.`.

use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::plugin::Registrar;
use mer_registry::{
    export_plugin, BuildCtx, BuildError, Component, Dim, Init, KindBuilder, Mode, Role, SeededRng,
    ShapeCtx, ShapeError, TensorType,
};

/// A gated projection: `y = (x·W + b) ⊙ σ(x·G)`.
struct GatedLinear {
    weight: Tensor,
    bias: Tensor,
    gate: Tensor,
}

impl Component for GatedLinear {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "hello.gated_linear")?;
        let y = x
            .broadcast_matmul(&self.weight)?
            .broadcast_add(&self.bias)?;
        let g = mer_registry::candle_nn::ops::sigmoid(&x.broadcast_matmul(&self.gate)?)?;
        Ok(vec![(y * g)?])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    // The input width comes from the producer: recipes never repeat it.
    let d_in = ctx.input_width(0)?;
    let d_out = ctx.usize("out")?;
    let weight = ctx.param(
        "weight",
        &[d_in, d_out],
        Init::KaimingUniform { fan_in: d_in },
    )?;
    let bias = ctx.param("bias", &[d_out], Init::Zeros)?;
    let gate = ctx.param(
        "gate",
        &[d_in, d_out],
        Init::KaimingUniform { fan_in: d_in },
    )?;
    Ok(Box::new(GatedLinear { weight, bias, gate }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    if t.rank() < 2 {
        return Err(ShapeError::new(format!(
            "`hello.gated_linear` expects [B, .., D], `{}` is {t}",
            c.source(0)
        ))
        .at_input(0));
    }
    Ok(vec![t.with_last(Dim::Size(c.usize("out").unwrap_or(1)))])
}

/// Registers this plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {
    r.kind(
        KindBuilder::new("hello.gated_linear", Role::Component)
            .doc("A linear map gated by a sigmoid of the input.")
            .input("x", "features [B, .., D]")
            .output("out", "features [B, .., out]")
            .int("out", None, Some(1), "Output width.")
            .shapes(shapes)
            .factory(build)
            .build(),
    );
}

export_plugin!("hello", register);

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::{DType, Device, Var};
    use mer_registry::{ParamStore, Registry, Value};
    use std::collections::BTreeMap;

    #[test]
    fn builds_runs_and_trains() {
        let mut reg = Registry::new();
        reg.add_static_plugin("hello", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        let kind = reg.get("hello.gated_linear").unwrap();
        let mut store = ParamStore::new(1, Device::Cpu);
        let params = BTreeMap::from([("out".to_string(), Value::Int(2))]);
        let inputs = [TensorType::features(vec![Dim::sym("B"), Dim::Size(3)])];
        let c = kind.build("g", &params, &inputs, &mut store).unwrap();
        let x = Tensor::ones((4, 3), DType::F32, &Device::Cpu).unwrap();
        let y = c
            .forward(&[x], Mode::Train, &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(y[0].dims(), &[4, 2]);
        // Gradients reach every parameter.
        let grads = y[0].sum_all().unwrap().backward().unwrap();
        let vars: Vec<&Var> = store.vars().map(|(_, v)| v).collect();
        assert_eq!(vars.len(), 3);
        for v in vars {
            assert!(grads.get(v.as_tensor()).is_some());
        }
    }
}
