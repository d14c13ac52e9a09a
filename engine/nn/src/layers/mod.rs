//! candle implementations of the builtin `nn.*` components, one file per
//! family: each file declares its kinds (schema, shape function, example)
//! beside the code that implements them, with the same `KindBuilder` plugins
//! use.
//!
//! Training paths use differentiable forms only: candle-nn's fused
//! `layer_norm`, `rms_norm` and `softmax_last_dim` record no backward pass,
//! so norms here are written from primitives. Every kind here declares an
//! example and is gradient-checked by finite differences
//! (`every_builtin_component_passes_gradcheck` in `mer-train`).

mod activation;
mod attention;
mod conv;
mod embed;
mod linear;
mod norm;
mod tensor;

pub use linear::{lora_record, LoraLinear};

use activation::{act, Act};
use conv::Conv;

use mer_registry::candle::{DType, Tensor};
use mer_registry::component::input;
use mer_registry::layers::{dropout, frozen_matmul, Attention, LayerNorm, Linear};
use mer_registry::{
    BuildCtx, BuildError, Component, Dim, Init, Kind, KindBuilder, Mode, ParamSpec, ParamType,
    Role, SeededRng, Semantic, ShapeCtx, ShapeError, TensorType, Value,
};
use std::sync::Mutex;

type CResult<T> = mer_registry::candle::Result<T>;

/// Every `nn.*` kind.
pub(crate) fn kinds() -> Vec<Kind> {
    let mut v = Vec::new();
    v.extend(linear::kinds());
    v.extend(activation::kinds());
    v.extend(norm::kinds());
    v.extend(conv::kinds());
    v.extend(tensor::kinds());
    v.extend(attention::kinds());
    v.extend(embed::kinds());
    v
}

fn unary(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Component)
        .doc(doc)
        .input("x", "input tensor")
        .output("out", "output tensor")
}

fn ints(ctx: &BuildCtx, name: &str) -> Result<Vec<usize>, BuildError> {
    match ctx.params.get(name) {
        Some(Value::List(l)) => l
            .iter()
            .map(|v| match v {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(BuildError(format!(
                    "`{}`: `{name}` must be non-negative integers",
                    ctx.kind
                ))),
            })
            .collect(),
        _ => Err(BuildError(format!("`{}` needs `{name}`", ctx.kind))),
    }
}

fn input_dims(ctx: &BuildCtx, i: usize) -> Result<Vec<usize>, BuildError> {
    ctx.inputs
        .get(i)
        .and_then(|t| {
            t.dims
                .iter()
                .skip(1)
                .map(|d| d.size())
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            BuildError(format!(
                "`{}` needs known input sizes (after the batch)",
                ctx.kind
            ))
        })
}

pub(crate) fn b() -> Dim {
    Dim::sym("B")
}

pub(crate) fn sz(n: i64) -> Dim {
    Dim::Size(n.max(0) as usize)
}

/// Same type out as in (activations, norms, dropout, gating).
fn same(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    Ok(vec![TensorType::features(t.dims.clone())])
}

/// Helpers shared by the families' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    pub(crate) use mer_registry::candle::Device;
    use mer_registry::ParamStore;
    pub(crate) use std::collections::BTreeMap;

    pub(crate) fn build(
        kind: &str,
        params: &[(&str, Value)],
        dims: &[usize],
    ) -> (Box<dyn Component>, ParamStore) {
        let reg = crate::builtin_registry();
        let k = reg.get(kind).expect("kind").clone();
        let mut p: BTreeMap<String, Value> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.clone()))
            .collect();
        for s in &k.schema.params {
            if let Some(d) = &s.default {
                p.entry(s.name.clone()).or_insert_with(|| d.clone());
            }
        }
        let mut store = ParamStore::new(5, Device::Cpu);
        let t = [TensorType::features(
            dims.iter().map(|&d| Dim::Size(d)).collect(),
        )];
        let c = k.build("n", &p, &t, &mut store).expect("build");
        (c, store)
    }

    pub(crate) fn randn(dims: &[usize], seed: u64) -> Tensor {
        SeededRng::new(seed)
            .normal_tensor(dims, &Device::Cpu)
            .expect("tensor")
    }

    pub(crate) fn int_list(v: &[i64]) -> Value {
        Value::List(v.iter().map(|i| Value::Int(*i)).collect())
    }

    pub(crate) fn ctx<'a>(
        params: &'a BTreeMap<String, Value>,
        inputs: &'a [TensorType],
        sources: &'a [String],
    ) -> ShapeCtx<'a> {
        ShapeCtx {
            kind: "nn.test",
            params,
            inputs,
            sources,
        }
    }
}
