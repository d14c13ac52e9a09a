//! Optimisers (`optim.*`) and learning-rate schedules (`sched.*`): each
//! kind's schema, its update rule or schedule, and their tests.
//!
//! Semantics follow PyTorch so published hyper-parameters mean the same
//! thing: Adam adds weight decay to the gradient (L2), AdamW decays the
//! weights directly, SGD momentum has no dampening. Groups, clipping and
//! checkpointed state are the driver's (`crate::optim`), shared by every
//! optimiser kind, builtin or plugin.

use mer_registry::candle::{Error as CError, Result as CResult, Tensor};
use mer_registry::optim::{optimizer_kind, ScheduleRule, StepCtx, UpdateRule};
use mer_registry::{BuildError, Kind, KindBuilder, ParamType, Params, Role, Value};

/// Adam's moments, with PyTorch's bias correction. `decoupled` is AdamW:
/// the weights decay by `lr·wd` directly instead of through the gradient.
struct Adam {
    b1: f64,
    b2: f64,
    eps: f64,
    decoupled: bool,
}

impl UpdateRule for Adam {
    fn buffers(&self) -> &'static [&'static str] {
        &["m", "v"]
    }

    fn update(
        &self,
        theta: &Tensor,
        grad: &Tensor,
        state: &mut [Option<Tensor>],
        c: &StepCtx,
    ) -> CResult<Tensor> {
        let [m_buf, v_buf] = state else {
            return Err(CError::Msg("Adam keeps two buffers".into()));
        };
        let (b1, b2, wd, lr) = (self.b1, self.b2, c.weight_decay, c.lr);
        let mut g = grad.clone();
        if !self.decoupled && wd != 0.0 {
            g = (g + (theta * wd)?)?;
        }
        let m = match m_buf.as_ref() {
            Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
            None => (&g * (1.0 - b1))?,
        };
        let v = match v_buf.as_ref() {
            Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
            None => (g.sqr()? * (1.0 - b2))?,
        };
        let m_hat = (&m / (1.0 - b1.powi(c.t)))?;
        let v_hat = (&v / (1.0 - b2.powi(c.t)))?;
        let mut next = if self.decoupled && wd != 0.0 {
            (theta * (1.0 - lr * wd))?
        } else {
            theta.clone()
        };
        next = (next - (m_hat / (v_hat.sqrt()? + self.eps)?)?.affine(lr, 0.0)?)?;
        *m_buf = Some(m);
        *v_buf = Some(v);
        Ok(next)
    }
}

fn adam_rule(p: &Params, decoupled: bool) -> Result<Box<dyn UpdateRule>, BuildError> {
    let [b1, b2] = p.float_array::<2>("betas")?;
    Ok(Box::new(Adam {
        b1,
        b2,
        eps: p.float("eps")?,
        decoupled,
    }))
}

fn adam(p: &Params) -> Result<Box<dyn UpdateRule>, BuildError> {
    adam_rule(p, false)
}

fn adamw(p: &Params) -> Result<Box<dyn UpdateRule>, BuildError> {
    adam_rule(p, true)
}

/// SGD with optional (Nesterov) momentum, no dampening; weight decay is
/// added to the gradient.
struct Sgd {
    momentum: f64,
    nesterov: bool,
}

impl UpdateRule for Sgd {
    fn buffers(&self) -> &'static [&'static str] {
        &["m"]
    }

    fn update(
        &self,
        theta: &Tensor,
        grad: &Tensor,
        state: &mut [Option<Tensor>],
        c: &StepCtx,
    ) -> CResult<Tensor> {
        let [buf] = state else {
            return Err(CError::Msg("SGD keeps one buffer".into()));
        };
        let mut g = grad.clone();
        if c.weight_decay != 0.0 {
            g = (g + (theta * c.weight_decay)?)?;
        }
        // Without momentum the buffer stays empty (nothing to checkpoint).
        let update = if self.momentum > 0.0 {
            let b = match buf.as_ref() {
                Some(b) => ((b * self.momentum)? + &g)?,
                None => g.clone(),
            };
            *buf = Some(b.clone());
            if self.nesterov {
                (g + (b * self.momentum)?)?
            } else {
                b
            }
        } else {
            g
        };
        theta - (update * c.lr)?
    }
}

fn sgd(p: &Params) -> Result<Box<dyn UpdateRule>, BuildError> {
    Ok(Box::new(Sgd {
        momentum: p.float("momentum")?,
        nesterov: p.bool("nesterov")?,
    }))
}

/// `min_lr` as a factor of the optimiser's rate.
fn min_factor(p: &Params, base_lr: f64) -> Result<f64, BuildError> {
    let min_lr = p.float("min_lr")?;
    Ok(if base_lr > 0.0 { min_lr / base_lr } else { 0.0 })
}

/// Linear warmup over `warmup` of all steps, then cosine to `min_factor`.
struct Cosine {
    warmup: f64,
    min_factor: f64,
}

impl ScheduleRule for Cosine {
    fn factor(&self, step: usize, total: usize, _epoch: usize) -> f64 {
        let warm = (self.warmup * total as f64).round() as usize;
        if step < warm {
            (step + 1) as f64 / warm as f64
        } else {
            let span = total.saturating_sub(warm).max(1) as f64;
            let p = ((step - warm) as f64 / span).min(1.0);
            self.min_factor
                + (1.0 - self.min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        }
    }
}

fn cosine(p: &Params, base_lr: f64) -> Result<Box<dyn ScheduleRule>, BuildError> {
    Ok(Box::new(Cosine {
        warmup: p.float("warmup")?,
        min_factor: min_factor(p, base_lr)?,
    }))
}

/// ×`gamma` every `every` epochs.
struct Step {
    every: usize,
    gamma: f64,
}

impl ScheduleRule for Step {
    fn factor(&self, _step: usize, _total: usize, epoch: usize) -> f64 {
        self.gamma.powi((epoch / self.every) as i32)
    }
}

fn step(p: &Params, _base_lr: f64) -> Result<Box<dyn ScheduleRule>, BuildError> {
    let every = p.usize("every")?;
    if every == 0 {
        return Err(BuildError(format!(
            "`{}.every` must be at least 1",
            p.owner()
        )));
    }
    Ok(Box::new(Step {
        every,
        gamma: p.float("gamma")?,
    }))
}

/// ×`factor` after `patience` epochs without a lower monitored loss
/// (Keras' ReduceLROnPlateau with min_delta 0 and no cooldown).
struct Plateau {
    factor: f64,
    patience: usize,
    min_factor: f64,
}

impl ScheduleRule for Plateau {
    fn factor(&self, _step: usize, _total: usize, _epoch: usize) -> f64 {
        1.0
    }

    /// Recomputed from the stored history (rather than kept in a counter)
    /// so a resumed run takes exactly the same decisions.
    fn history_factor(&self, monitored: &[f64]) -> f64 {
        let (mut best, mut bad, mut f) = (f64::INFINITY, 0usize, 1.0f64);
        for &v in monitored {
            if v < best {
                best = v;
                bad = 0;
            } else {
                bad += 1;
                if bad >= self.patience {
                    f = (f * self.factor).max(self.min_factor);
                    bad = 0;
                }
            }
        }
        f
    }
}

fn plateau(p: &Params, base_lr: f64) -> Result<Box<dyn ScheduleRule>, BuildError> {
    let patience = p.usize("patience")?;
    if patience == 0 {
        return Err(BuildError(format!(
            "`{}.patience` must be at least 1",
            p.owner()
        )));
    }
    Ok(Box::new(Plateau {
        factor: p.float("factor")?,
        patience,
        min_factor: min_factor(p, base_lr)?,
    }))
}

/// Every builtin optimiser and schedule.
pub fn kinds() -> Vec<Kind> {
    let betas = ParamType::List(Box::new(ParamType::Float {
        min: Some(0.0),
        max: Some(1.0),
    }));
    let betas_d = Some(Value::List(vec![Value::Float(0.9), Value::Float(0.999)]));
    vec![
        optimizer_kind("optim.adam", "Adam with L2 weight decay added to the gradient (PyTorch Adam).", 0.0)
            .param("betas", betas.clone(), betas_d.clone(), "Moment decay rates [β1, β2].")
            .float("eps", Some(1e-8), Some(0.0), None, "Denominator floor.")
            .optimizer(adam)
            .build(),
        optimizer_kind("optim.adamw", "AdamW with decoupled weight decay.", 0.01)
            .param("betas", betas, betas_d, "Moment decay rates [β1, β2].")
            .float("eps", Some(1e-8), Some(0.0), None, "Denominator floor.")
            .optimizer(adamw)
            .build(),
        optimizer_kind("optim.sgd", "SGD with optional (Nesterov) momentum.", 0.0)
            .float("momentum", Some(0.0), Some(0.0), Some(1.0), "Momentum.")
            .bool("nesterov", false, "Nesterov momentum.")
            .optimizer(sgd)
            .build(),
        KindBuilder::new("sched.cosine", Role::Scheduler)
            .doc("Linear warmup then cosine decay to `min_lr`, per step.")
            .float("warmup", Some(0.0), Some(0.0), Some(1.0), "Warmup as a fraction of all steps.")
            .float("min_lr", Some(0.0), Some(0.0), None, "Final learning rate.")
            .scheduler(cosine)
            .build(),
        KindBuilder::new("sched.step", Role::Scheduler)
            .doc("Multiply the learning rate by `gamma` every `every` epochs.")
            .int("every", None, Some(1), "Epochs between steps.")
            .float("gamma", Some(0.1), Some(0.0), None, "Factor.")
            .scheduler(step)
            .build(),
        KindBuilder::new("sched.plateau", Role::Scheduler)
            .doc("Multiply the learning rate by `factor` when the monitored training-side loss stops improving.")
            .float("factor", Some(0.1), Some(0.0), Some(1.0), "Factor.")
            .int("patience", Some(10), Some(1), "Epochs without improvement.")
            .float("min_lr", Some(0.0), Some(0.0), None, "Floor.")
            .scheduler(plateau)
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use crate::optim::{Optimizer, Schedule};
    use mer_registry::candle::Device;
    use mer_registry::{Init, ParamStore, Value};
    use std::collections::BTreeMap;

    fn map(params: &[(&str, Value)]) -> BTreeMap<String, Value> {
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// Minimises Σ (θ − 3)² from θ = 0 for `steps` steps; returns θ[0].
    fn run(kind: &str, params: &[(&str, Value)], steps: usize) -> f64 {
        let reg = crate::builtin_registry();
        let mut store = ParamStore::new(0, Device::Cpu);
        store.get("w.p", &[2], Init::Zeros).unwrap();
        let mut opt =
            Optimizer::new(&reg, kind, &map(params), &store, &["w".into()], None).unwrap();
        let var = store.vars().next().unwrap().1.clone();
        for _ in 0..steps {
            let loss = (var.as_tensor() - 3.0)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap(), 0, 1.0).unwrap();
        }
        var.as_tensor().to_vec1::<f32>().unwrap()[0] as f64
    }

    fn schedule(kind: &str, params: &[(&str, Value)], base_lr: f64) -> Schedule {
        Schedule::new(&crate::builtin_registry(), kind, &map(params), base_lr).unwrap()
    }

    #[test]
    fn adam_matches_the_reference_update() {
        // Reference in f64: g = 2(θ − 3), PyTorch Adam with bias correction.
        let (lr, b1, b2, eps) = (0.1, 0.9, 0.999, 1e-8);
        let (mut th, mut m, mut v) = (0f64, 0f64, 0f64);
        for t in 1..=3 {
            let g = 2.0 * (th - 3.0);
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            th -= lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
        }
        let got = run("optim.adam", &[("lr", Value::Float(lr))], 3);
        assert!((got - th).abs() < 1e-5, "{got} vs {th}");
    }

    #[test]
    fn sgd_momentum_and_weight_decay() {
        // θ' = θ − lr·buf, buf = μ·buf + g, g = 2(θ − 3) + wd·θ.
        let (lr, mu, wd) = (0.05, 0.9, 0.1);
        let (mut th, mut buf) = (0f64, 0f64);
        for i in 0..4 {
            let g = 2.0 * (th - 3.0) + wd * th;
            buf = if i == 0 { g } else { mu * buf + g };
            th -= lr * buf;
        }
        let got = run(
            "optim.sgd",
            &[
                ("lr", Value::Float(lr)),
                ("momentum", Value::Float(mu)),
                ("weight_decay", Value::Float(wd)),
            ],
            4,
        );
        assert!((got - th).abs() < 1e-5, "{got} vs {th}");
    }

    #[test]
    fn nesterov_looks_ahead() {
        // θ' = θ − lr·(g + μ·buf).
        let (lr, mu) = (0.05, 0.9);
        let (mut th, mut buf) = (0f64, 0f64);
        for i in 0..3 {
            let g = 2.0 * (th - 3.0);
            buf = if i == 0 { g } else { mu * buf + g };
            th -= lr * (g + mu * buf);
        }
        let got = run(
            "optim.sgd",
            &[
                ("lr", Value::Float(lr)),
                ("momentum", Value::Float(mu)),
                ("nesterov", Value::Bool(true)),
            ],
            3,
        );
        assert!((got - th).abs() < 1e-5, "{got} vs {th}");
    }

    #[test]
    fn adamw_decouples_decay() {
        let a = run(
            "optim.adam",
            &[
                ("lr", Value::Float(0.1)),
                ("weight_decay", Value::Float(0.5)),
            ],
            5,
        );
        let w = run(
            "optim.adamw",
            &[
                ("lr", Value::Float(0.1)),
                ("weight_decay", Value::Float(0.5)),
            ],
            5,
        );
        assert!((a - w).abs() > 1e-3, "{a} vs {w}");
    }

    #[test]
    fn betas_must_be_a_pair() {
        let reg = crate::builtin_registry();
        let store = ParamStore::new(0, Device::Cpu);
        let p = map(&[
            ("lr", Value::Float(0.1)),
            ("betas", Value::List(vec![Value::Float(0.9)])),
        ]);
        let e = Optimizer::new(&reg, "optim.adam", &p, &store, &[], None)
            .err()
            .unwrap();
        assert!(e.0.contains("optim.adam.betas"), "{e}");
    }

    #[test]
    fn plateau_cuts_after_patience_epochs_without_improvement() {
        // min_lr 0.005 at base rate 1: a floor factor of 0.005.
        let p = schedule(
            "sched.plateau",
            &[("patience", Value::Int(2)), ("min_lr", Value::Float(0.005))],
            1.0,
        );
        assert_eq!(p.history_factor(&[]), 1.0);
        assert_eq!(p.history_factor(&[3.0, 2.0, 2.5]), 1.0);
        assert!((p.history_factor(&[3.0, 2.0, 2.5, 2.1]) - 0.1).abs() < 1e-12);
        // The floor holds; an improvement resets the count.
        let losses = [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        assert!((p.history_factor(&losses) - 0.005).abs() < 1e-12);
        assert!((p.history_factor(&[3.0, 3.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert_eq!(p.factor(5, 10, 3), 1.0);
    }

    #[test]
    fn schedules_shape_the_rate() {
        let cos = schedule("sched.cosine", &[("warmup", Value::Float(0.1))], 0.1);
        assert!((cos.factor(0, 100, 0) - 0.1).abs() < 1e-9);
        assert!((cos.factor(10, 100, 0) - 1.0).abs() < 1e-9);
        assert!(cos.factor(99, 100, 0) < 0.01);
        // min_lr is absolute: half the base rate is a floor of 0.5.
        let floor = schedule("sched.cosine", &[("min_lr", Value::Float(0.05))], 0.1);
        assert!((floor.factor(100, 100, 0) - 0.5).abs() < 1e-9);
        let step = schedule("sched.step", &[("every", Value::Int(50))], 0.1);
        assert_eq!(step.factor(0, 1, 120), 0.1f64.powi(2));
        assert_eq!(step.history_factor(&[1.0, 2.0]), 1.0);
    }
}
