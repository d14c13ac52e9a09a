//! Finite-difference gradient checks for any kind with a factory.
//!
//! candle's fused ops can silently record no backward pass; a component
//! built on one trains nothing upstream. This check compares analytic
//! gradients with central differences for every parameter *and* every
//! input, so a severed graph fails loudly. Plugin authors call
//! [`gradcheck`] from their unit tests; `mer plugins gradcheck KIND` runs it
//! from the command line.

use crate::component::{Mode, ParamStore};
use crate::rng::SeededRng;
use crate::shape::{Dim, TensorType};
use crate::{ExampleInput, Kind, Value};
use candle_core::{Device, Tensor, Var};
use std::collections::BTreeMap;

/// The result for one parameter or input.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The parameter's full name (`node.<param>`; the kind is built as node
    /// `node`), or `input N` for the N-th differentiable input, counted from 1.
    pub name: String,
    /// Entries compared.
    pub entries: usize,
    /// Largest |analytic − numeric| / max(1, |analytic|, |numeric|).
    pub max_error: f64,
    /// Whether the backward pass reached it at all.
    pub reached: bool,
    /// Entries near a kink (ReLU at 0, a max-pool tie within ±eps), where
    /// the central difference blends two slopes: they pass when the analytic
    /// gradient lies between the one-sided differences.
    pub kinks: usize,
}

/// What [`gradcheck`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct GradReport {
    /// The dims of each output the component returned, in port order.
    pub output_dims: Vec<Vec<usize>>,
    /// One entry per trainable parameter, then one per differentiable
    /// (`Features`) input.
    pub checked: Vec<Checked>,
    /// The largest `max_error` that [`GradReport::ok`] accepts (5e-3).
    pub tolerance: f64,
}

impl GradReport {
    /// Every parameter and input was reached and agrees within tolerance.
    pub fn ok(&self) -> bool {
        self.checked
            .iter()
            .all(|c| c.reached && c.max_error <= self.tolerance)
    }
}

/// The largest relative error accepted.
const TOLERANCE: f64 = 5e-3;

fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
}

/// Builds `kind` with `params` (defaults filled by the caller), feeds random
/// inputs of `input_dims`, and compares gradients of a random projection of
/// the outputs against central differences (`eps` = 1e-2 in f32).
pub fn gradcheck(
    kind: &Kind,
    params: &BTreeMap<String, Value>,
    example_inputs: &[ExampleInput],
    seed: u64,
) -> Result<GradReport, String> {
    gradcheck_on(kind, params, example_inputs, seed, &Device::Cpu)
}

/// [`gradcheck`] with the component, its inputs and the differences on
/// `dev`: on a GPU (`mer plugins gradcheck --all --device cuda:0`) it
/// checks the CUDA kernels that the CPU tests never run.
pub fn gradcheck_on(
    kind: &Kind,
    params: &BTreeMap<String, Value>,
    example_inputs: &[ExampleInput],
    seed: u64,
    dev: &Device,
) -> Result<GradReport, String> {
    let dev = dev.clone();
    let mut store = ParamStore::new(seed, dev.clone());
    let types: Vec<TensorType> = example_inputs
        .iter()
        .map(|e| {
            let dims = e.dims().iter().map(|&n| Dim::Size(n)).collect();
            match e {
                ExampleInput::Features(_) | ExampleInput::Fixed(_) => TensorType::features(dims),
                ExampleInput::ClassIndex { classes, .. } => TensorType {
                    dims,
                    dtype: crate::DType::I64,
                    semantic: crate::Semantic::ClassIndex {
                        classes: Some(*classes),
                    },
                },
                ExampleInput::Binary(_) => TensorType::f32(dims, crate::Semantic::MultiLabel),
            }
        })
        .collect();
    let component = kind
        .build("node", params, &types, &mut store)
        .map_err(|e| e.to_string())?;
    let err = |e: candle_core::Error| e.to_string();
    let mut rng = SeededRng::new(seed ^ 0x5eed);
    // Differentiable inputs are Vars; targets are fixed tensors.
    let mut inputs: Vec<(String, Var)> = Vec::new();
    let mut all_inputs: Vec<Tensor> = Vec::new();
    for (i, e) in example_inputs.iter().enumerate() {
        let d = e.dims();
        let n: usize = d.iter().product();
        match e {
            ExampleInput::Features(_) => {
                let v = Var::from_tensor(&rng.normal_tensor(d, &dev).map_err(err)?).map_err(err)?;
                all_inputs.push(v.as_tensor().clone());
                inputs.push((format!("input {}", i + 1), v));
            }
            ExampleInput::ClassIndex { classes, .. } => {
                let data: Vec<i64> = (0..n)
                    .map(|_| (rng.next_u64() % (*classes).max(1) as u64) as i64)
                    .collect();
                all_inputs.push(Tensor::from_vec(data, d, &dev).map_err(err)?);
            }
            ExampleInput::Fixed(_) => all_inputs.push(rng.normal_tensor(d, &dev).map_err(err)?),
            ExampleInput::Binary(_) => {
                let data: Vec<f32> = (0..n)
                    .map(|_| if rng.uniform() < 0.5 { 1.0 } else { 0.0 })
                    .collect();
                all_inputs.push(Tensor::from_vec(data, d, &dev).map_err(err)?);
            }
        }
    }
    // A component that learns from data before training (prototypes) has
    // learnt from this batch, as a fit pass would have made it; its
    // gradients are then those of a trained run's first step.
    if component.fits() {
        component.fit(&all_inputs).map_err(err)?;
    }
    let run = |weights: Option<&[Tensor]>| -> candle_core::Result<(Tensor, Vec<Tensor>)> {
        // Read the Vars anew each call: `var.set` swaps their storage.
        let mut vars = inputs.iter().map(|(_, v)| v.as_tensor().clone());
        let xs: Vec<Tensor> = example_inputs
            .iter()
            .zip(&all_inputs)
            .map(|(e, fixed)| match e {
                ExampleInput::Features(_) => vars.next().unwrap_or_else(|| fixed.clone()),
                _ => fixed.clone(),
            })
            .collect();
        // Training mode with the same seed on every call: dropout draws the
        // same mask each time, so central differences stay valid.
        let outs = component.forward(&xs, Mode::Train, &mut SeededRng::new(0))?;
        let mut total = Tensor::zeros((), candle_core::DType::F32, &dev)?;
        if let Some(ws) = weights {
            for (o, w) in outs.iter().zip(ws) {
                total = (total + (o.to_dtype(candle_core::DType::F32)? * w)?.sum_all()?)?;
            }
        }
        Ok((total, outs))
    };
    let (_, outs) = run(None).map_err(err)?;
    let output_dims: Vec<Vec<usize>> = outs.iter().map(|o| o.dims().to_vec()).collect();
    let weights: Vec<Tensor> = outs
        .iter()
        .map(|o| rng.normal_tensor(o.dims(), &dev))
        .collect::<candle_core::Result<_>>()
        .map_err(err)?;
    let (loss, _) = run(Some(&weights)).map_err(err)?;
    let at_base = scalar(&loss).map_err(err)?;
    let grads = loss.backward().map_err(err)?;
    let mut all: Vec<(String, Var)> = store.vars().map(|(n, v)| (n.clone(), v.clone())).collect();
    all.extend(inputs.iter().cloned());
    let eps = 1e-2f64;
    let mut checked = Vec::new();
    for (name, var) in &all {
        let analytic: Option<Vec<f32>> = grads
            .get(var.as_tensor())
            .map(|g| g.flatten_all().and_then(|g| g.to_vec1::<f32>()))
            .transpose()
            .map_err(err)?;
        // A graph severed by an op without a backward pass yields no
        // gradient at all; a zero gradient (LoRA's A while B = 0) is real.
        let reached = analytic.is_some();
        let base: Vec<f32> = var
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(err)?;
        let n = base.len();
        let picks: Vec<usize> = if n <= 8 {
            (0..n).collect()
        } else {
            (0..8)
                .map(|_| (rng.next_u64() % n as u64) as usize)
                .collect()
        };
        let mut max_error: f64 = 0.0;
        let mut kinks = 0;
        for &i in &picks {
            let at = |delta: f64| -> Result<f64, String> {
                let mut v = base.clone();
                v[i] += delta as f32;
                var.set(&Tensor::from_vec(v, var.dims(), &dev).map_err(err)?)
                    .map_err(err)?;
                scalar(&run(Some(&weights)).map_err(err)?.0).map_err(err)
            };
            let (up, down) = (at(eps)?, at(-eps)?);
            let numeric = (up - down) / (2.0 * eps);
            let a = analytic.as_ref().map_or(0.0, |g| g[i] as f64);
            let mut e = (a - numeric).abs() / 1f64.max(a.abs()).max(numeric.abs());
            if e > TOLERANCE {
                // A kink within ±eps (ReLU at 0, a max-pool tie) makes the
                // central difference a blend of two slopes; the analytic
                // gradient is then one of the one-sided ones. A wrong
                // gradient of a smooth function lies outside that bracket,
                // which is only eps·f'' wide there.
                let (right, left) = ((up - at_base) / eps, (at_base - down) / eps);
                let margin = TOLERANCE * 1f64.max(right.abs()).max(left.abs());
                if a >= right.min(left) - margin && a <= right.max(left) + margin {
                    kinks += 1;
                    e = 0.0;
                }
            }
            max_error = max_error.max(e);
        }
        var.set(&Tensor::from_vec(base, var.dims(), &dev).map_err(err)?)
            .map_err(err)?;
        checked.push(Checked {
            name: name.clone(),
            entries: picks.len(),
            max_error,
            reached,
            kinks,
        });
    }
    Ok(GradReport {
        output_dims,
        checked,
        tolerance: TOLERANCE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildCtx, BuildError, Component, KindBuilder, Role, SeededRng};

    /// `Σₖ relu(x − k/10)` for k in −20..=20: piecewise linear with a kink
    /// every 0.1, so about a fifth of the picked entries lie within ±eps of
    /// one (and no curvature blurs the rest). `wrong` adds `20·x` without
    /// its gradient.
    struct Kinky {
        wrong: bool,
    }

    impl Component for Kinky {
        fn forward(
            &self,
            xs: &[Tensor],
            _: Mode,
            _: &mut SeededRng,
        ) -> candle_core::Result<Vec<Tensor>> {
            let ks: Vec<f32> = (-20..=20).map(|k| k as f32 / 10.0).collect();
            let ks = Tensor::new(ks.as_slice(), xs[0].device())?;
            let y = xs[0]
                .unsqueeze(1)?
                .broadcast_sub(&ks.unsqueeze(0)?)?
                .relu()?
                .sum(1)?;
            Ok(vec![if self.wrong {
                (y + (&xs[0] * 20.0)?.detach())?
            } else {
                y
            }])
        }
    }

    fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
        Ok(Box::new(Kinky {
            wrong: ctx.bool("wrong")?,
        }))
    }

    fn check(wrong: bool, seed: u64) -> GradReport {
        let kind = KindBuilder::new("test.kinky", Role::Component)
            .input("x", "")
            .output("out", "")
            .bool("wrong", false, "")
            .factory(build)
            .build();
        let params = BTreeMap::from([("wrong".to_string(), Value::Bool(wrong))]);
        gradcheck(&kind, &params, &[ExampleInput::Features(vec![64])], seed).unwrap()
    }

    /// Kinks pass between their one-sided slopes; a wrong gradient still
    /// fails on every seed, kinks or not.
    #[test]
    fn kinks_pass_and_wrong_gradients_still_fail() {
        let mut kinks = 0;
        for seed in 1..=6 {
            let right = check(false, seed);
            assert!(right.ok(), "seed {seed}: {right:?}");
            kinks += right.checked[0].kinks;
            let wrong = check(true, seed);
            assert!(!wrong.ok(), "seed {seed}: {wrong:?}");
        }
        assert!(kinks > 0, "the kink path was exercised");
    }
}
