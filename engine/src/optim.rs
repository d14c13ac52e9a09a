//! Optimisers (`optim.*`) and schedules (`sched.*`) over a [`ParamStore`].
//!
//! Semantics follow PyTorch so published hyper-parameters mean the same
//! thing: Adam adds weight decay to the gradient (L2), AdamW decays the
//! weights directly, SGD momentum has no dampening. Parameter groups are
//! keyed by model node name (a parameter `cnn.weight` belongs to `cnn`);
//! a frozen group is never touched.

use mer_registry::candle::backprop::GradStore;
use mer_registry::candle::{Tensor, Var};
use mer_registry::{BuildError, ParamStore, Value};
use std::collections::BTreeMap;

type CResult<T> = mer_registry::candle::Result<T>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Adam,
    AdamW,
    Sgd { momentum: f64, nesterov: bool },
}

/// Per-node overrides (`groups = { led = { lr = 0.1 } }`).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub freeze: bool,
    /// Multiply this group's lr by `step_gamma` every `step_every` epochs.
    pub step_every: Option<usize>,
    pub step_gamma: f64,
}

struct Slot {
    var: Var,
    group: Option<String>,
    m: Option<Tensor>,
    v: Option<Tensor>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Parameters that received no gradient (a frozen or disconnected part).
    pub without_grad: Vec<String>,
}

/// An optimiser bound to a parameter store.
pub struct Optimizer {
    rule: Rule,
    lr: f64,
    weight_decay: f64,
    betas: (f64, f64),
    eps: f64,
    groups: BTreeMap<String, Group>,
    slots: Vec<(String, Slot)>,
    clip: Option<f64>,
    t: i32,
}

fn f(params: &BTreeMap<String, Value>, k: &str) -> Option<f64> {
    params.get(k).and_then(Value::as_f64)
}

impl Optimizer {
    /// Builds `kind` (`optim.adam`, `optim.adamw`, `optim.sgd`) from its
    /// parameters (defaults filled) over every parameter in `store`.
    /// `nodes` are the model's node names: a group naming none is an error.
    pub fn new(
        kind: &str,
        params: &BTreeMap<String, Value>,
        store: &ParamStore,
        nodes: &[String],
        clip: Option<f64>,
    ) -> Result<Self, BuildError> {
        let rule = match kind {
            "optim.adam" => Rule::Adam,
            "optim.adamw" => Rule::AdamW,
            "optim.sgd" => Rule::Sgd {
                momentum: f(params, "momentum").unwrap_or(0.0),
                nesterov: matches!(params.get("nesterov"), Some(Value::Bool(true))),
            },
            other => {
                return Err(BuildError(format!(
                    "`{other}` is not an optimiser this engine runs"
                )))
            }
        };
        let betas = match params.get("betas") {
            Some(Value::List(l)) if l.len() == 2 => {
                (l[0].as_f64().unwrap_or(0.9), l[1].as_f64().unwrap_or(0.999))
            }
            _ => (0.9, 0.999),
        };
        let mut groups = BTreeMap::new();
        if let Some(Value::Map(gs)) = params.get("groups") {
            for (name, g) in gs {
                if !nodes.contains(name) {
                    return Err(BuildError(format!(
                        "optimiser group `{name}` names no model node (nodes: {})",
                        nodes.join(", ")
                    )));
                }
                let Value::Map(g) = g else { continue };
                groups.insert(
                    name.clone(),
                    Group {
                        lr: f(g, "lr"),
                        weight_decay: f(g, "weight_decay"),
                        freeze: matches!(g.get("freeze"), Some(Value::Bool(true))),
                        step_every: g.get("step_every").and_then(|v| match v {
                            Value::Int(i) if *i > 0 => Some(*i as usize),
                            _ => None,
                        }),
                        step_gamma: f(g, "step_gamma").unwrap_or(0.1),
                    },
                );
            }
        }
        let slots = store
            .vars()
            .map(|(name, var)| {
                let node = name.split('.').next().unwrap_or(name).to_string();
                let group = groups.contains_key(&node).then_some(node);
                (
                    name.clone(),
                    Slot {
                        var: var.clone(),
                        group,
                        m: None,
                        v: None,
                    },
                )
            })
            .collect();
        Ok(Optimizer {
            rule,
            lr: f(params, "lr").ok_or_else(|| BuildError("optimiser needs `lr`".into()))?,
            weight_decay: f(params, "weight_decay").unwrap_or(0.0),
            betas,
            eps: f(params, "eps").unwrap_or(1e-8),
            groups,
            slots,
            clip,
            t: 0,
        })
    }

    /// The learning rate of a parameter's group at `epoch`, before the
    /// schedule's factor.
    fn group_lr(&self, group: Option<&String>, epoch: usize) -> f64 {
        let Some(g) = group.and_then(|g| self.groups.get(g)) else {
            return self.lr;
        };
        let base = g.lr.unwrap_or(self.lr);
        match g.step_every {
            Some(every) => base * g.step_gamma.powi((epoch / every) as i32),
            None => base,
        }
    }

    /// Whether a parameter is trained at all.
    pub fn trains(&self, name: &str) -> bool {
        self.slots
            .iter()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, s)| {
                !s.group
                    .as_ref()
                    .and_then(|g| self.groups.get(g))
                    .is_some_and(|g| g.freeze)
            })
    }

    /// The optimiser's state for a checkpoint: the step count and every
    /// moment buffer, named `m/<param>` and `v/<param>`.
    pub fn state(&self) -> (i32, Vec<(String, Tensor)>) {
        let mut out = Vec::new();
        for (name, s) in &self.slots {
            if let Some(m) = &s.m {
                out.push((format!("m/{name}"), m.clone()));
            }
            if let Some(v) = &s.v {
                out.push((format!("v/{name}"), v.clone()));
            }
        }
        (self.t, out)
    }

    /// Restores [`Optimizer::state`]: resuming from it continues exactly
    /// where the checkpointed run was.
    pub fn load_state(&mut self, t: i32, tensors: &std::collections::HashMap<String, Tensor>) {
        self.t = t;
        for (name, s) in self.slots.iter_mut() {
            s.m = tensors.get(&format!("m/{name}")).cloned();
            s.v = tensors.get(&format!("v/{name}")).cloned();
        }
    }

    /// One update from `grads`; `lr_factor` comes from the schedule.
    pub fn step(&mut self, grads: &GradStore, epoch: usize, lr_factor: f64) -> CResult<StepStats> {
        self.t += 1;
        let mut without_grad = Vec::new();
        // Global norm over trainable parameters (for clipping and logs).
        let mut sq = 0f64;
        for (name, s) in &self.slots {
            if !self.trains(name) {
                continue;
            }
            match grads.get(s.var.as_tensor()) {
                Some(g) => {
                    sq += g
                        .sqr()?
                        .sum_all()?
                        .to_dtype(mer_registry::candle::DType::F64)?
                        .to_scalar::<f64>()?
                }
                None => without_grad.push(name.clone()),
            }
        }
        let grad_norm = sq.sqrt();
        let scale = match self.clip {
            Some(max) if grad_norm > max => max / (grad_norm + 1e-6),
            _ => 1.0,
        };
        let (b1, b2) = self.betas;
        let t = self.t;
        for i in 0..self.slots.len() {
            let name = self.slots[i].0.clone();
            if !self.trains(&name) {
                continue;
            }
            let lr = self.group_lr(self.slots[i].1.group.as_ref(), epoch) * lr_factor;
            let wd = self.slots[i]
                .1
                .group
                .as_ref()
                .and_then(|g| self.groups.get(g))
                .and_then(|g| g.weight_decay)
                .unwrap_or(self.weight_decay);
            let rule = self.rule;
            let eps = self.eps;
            let slot = &mut self.slots[i].1;
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let theta = slot.var.as_tensor().clone();
            let mut g = (g * scale)?;
            match rule {
                Rule::Adam | Rule::AdamW => {
                    if rule == Rule::Adam && wd != 0.0 {
                        g = (g + (&theta * wd)?)?;
                    }
                    let m = match &slot.m {
                        Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                        None => (&g * (1.0 - b1))?,
                    };
                    let v = match &slot.v {
                        Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                        None => (g.sqr()? * (1.0 - b2))?,
                    };
                    let m_hat = (&m / (1.0 - b1.powi(t)))?;
                    let v_hat = (&v / (1.0 - b2.powi(t)))?;
                    let mut next = if rule == Rule::AdamW && wd != 0.0 {
                        (&theta * (1.0 - lr * wd))?
                    } else {
                        theta
                    };
                    next = (next - (m_hat / (v_hat.sqrt()? + eps)?)?.affine(lr, 0.0)?)?;
                    slot.var.set(&next)?;
                    slot.m = Some(m.detach());
                    slot.v = Some(v.detach());
                }
                Rule::Sgd { momentum, nesterov } => {
                    if wd != 0.0 {
                        g = (g + (&theta * wd)?)?;
                    }
                    let update = if momentum > 0.0 {
                        let buf = match &slot.m {
                            Some(b) => ((b * momentum)? + &g)?,
                            None => g.clone(),
                        };
                        slot.m = Some(buf.detach());
                        if nesterov {
                            (g + (buf * momentum)?)?
                        } else {
                            buf
                        }
                    } else {
                        g
                    };
                    slot.var.set(&(theta - (update * lr)?)?)?;
                }
            }
        }
        Ok(StepStats {
            grad_norm,
            without_grad,
        })
    }
}

/// A learning-rate schedule: a factor on every group's rate.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Constant,
    /// Linear warmup over `warmup` of all steps, then cosine to `min_factor`.
    Cosine {
        warmup: f64,
        min_factor: f64,
    },
    /// ×`gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
    /// ×`factor` after `patience` epochs without a lower monitored loss
    /// (Keras' ReduceLROnPlateau with min_delta 0 and no cooldown).
    Plateau {
        factor: f64,
        patience: usize,
        min_factor: f64,
    },
}

impl Schedule {
    /// From a `sched.*` kind and its parameters (`base_lr` turns `min_lr`
    /// into a factor). `sched.plateau` depends on the epochs so far: see
    /// [`Schedule::history_factor`].
    pub fn new(
        kind: Option<&str>,
        params: &BTreeMap<String, Value>,
        base_lr: f64,
    ) -> Result<Self, BuildError> {
        Ok(match kind {
            None => Schedule::Constant,
            Some("sched.cosine") => Schedule::Cosine {
                warmup: f(params, "warmup").unwrap_or(0.0),
                min_factor: if base_lr > 0.0 {
                    f(params, "min_lr").unwrap_or(0.0) / base_lr
                } else {
                    0.0
                },
            },
            Some("sched.step") => Schedule::Step {
                every: f(params, "every").unwrap_or(1.0).max(1.0) as usize,
                gamma: f(params, "gamma").unwrap_or(0.1),
            },
            Some("sched.plateau") => Schedule::Plateau {
                factor: f(params, "factor").unwrap_or(0.1),
                patience: f(params, "patience").unwrap_or(10.0).max(1.0) as usize,
                min_factor: if base_lr > 0.0 {
                    f(params, "min_lr").unwrap_or(0.0) / base_lr
                } else {
                    0.0
                },
            },
            Some(other) => return Err(BuildError(format!("`{other}` is not a known schedule"))),
        })
    }

    /// The factor at `step` of `total` steps, in `epoch`.
    pub fn factor(&self, step: usize, total: usize, epoch: usize) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Cosine { warmup, min_factor } => {
                let warm = (warmup * total as f64).round() as usize;
                if step < warm {
                    (step + 1) as f64 / warm as f64
                } else {
                    let span = (total - warm).max(1) as f64;
                    let p = ((step - warm) as f64 / span).min(1.0);
                    min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
            Schedule::Step { every, gamma } => gamma.powi((epoch / every) as i32),
            Schedule::Plateau { .. } => 1.0,
        }
    }

    /// The factor that the epochs so far impose, given each finished
    /// epoch's monitored loss. Only `Plateau` depends on it. Recomputing it
    /// from the stored history (rather than keeping a counter) makes a
    /// resumed run take exactly the same decisions.
    pub fn history_factor(&self, monitored: &[f64]) -> f64 {
        let Schedule::Plateau {
            factor,
            patience,
            min_factor,
        } = *self
        else {
            return 1.0;
        };
        let (mut best, mut bad, mut f) = (f64::INFINITY, 0usize, 1.0f64);
        for &v in monitored {
            if v < best {
                best = v;
                bad = 0;
            } else {
                bad += 1;
                if bad >= patience {
                    f = (f * factor).max(min_factor);
                    bad = 0;
                }
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::Init;

    /// Minimises Σ (θ − 3)² from θ = 0 for `steps` steps; returns θ[0].
    fn run(kind: &str, params: &[(&str, Value)], steps: usize) -> f64 {
        let mut store = ParamStore::new(0, Device::Cpu);
        store.get("w.p", &[2], Init::Zeros).unwrap();
        let p: BTreeMap<String, Value> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut opt = Optimizer::new(kind, &p, &store, &["w".into()], None).unwrap();
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
    fn plateau_cuts_after_patience_epochs_without_improvement() {
        let p = Schedule::Plateau {
            factor: 0.1,
            patience: 2,
            min_factor: 0.005,
        };
        assert_eq!(p.history_factor(&[]), 1.0);
        assert_eq!(p.history_factor(&[3.0, 2.0, 2.5]), 1.0);
        assert!((p.history_factor(&[3.0, 2.0, 2.5, 2.1]) - 0.1).abs() < 1e-12);
        // The floor holds; an improvement resets the count.
        let losses = [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        assert!((p.history_factor(&losses) - 0.005).abs() < 1e-12);
        assert!((p.history_factor(&[3.0, 3.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert_eq!(Schedule::Constant.history_factor(&[1.0, 2.0, 3.0]), 1.0);
    }

    #[test]
    fn groups_override_freeze_and_refuse_unknown_nodes() {
        let mut store = ParamStore::new(0, Device::Cpu);
        store.get("led.a", &[1], Init::Zeros).unwrap();
        store.get("cnn.w", &[1], Init::Zeros).unwrap();
        let nodes = vec!["led".to_string(), "cnn".to_string()];
        let group = |k: &str, v: Value| Value::Map(BTreeMap::from([(k.to_string(), v)]));
        let params = BTreeMap::from([
            ("lr".to_string(), Value::Float(0.01)),
            (
                "groups".to_string(),
                Value::Map(BTreeMap::from([
                    ("led".to_string(), group("lr", Value::Float(1.0))),
                    ("cnn".to_string(), group("freeze", Value::Bool(true))),
                ])),
            ),
        ]);
        let mut opt = Optimizer::new("optim.sgd", &params, &store, &nodes, None).unwrap();
        let vars: Vec<Var> = store.vars().map(|(_, v)| v.clone()).collect();
        let loss = vars
            .iter()
            .map(|v| {
                (v.as_tensor() - 1.0)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
            })
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        opt.step(&loss.backward().unwrap(), 0, 1.0).unwrap();
        let val = |n: &str| {
            store
                .vars()
                .find(|(k, _)| *k == n)
                .unwrap()
                .1
                .as_tensor()
                .to_vec1::<f32>()
                .unwrap()[0]
        };
        assert_eq!(val("led.a"), 2.0, "lr 1 on g = −2");
        assert_eq!(val("cnn.w"), 0.0, "frozen");
        let bad = BTreeMap::from([
            ("lr".to_string(), Value::Float(0.1)),
            (
                "groups".to_string(),
                Value::Map(BTreeMap::from([(
                    "lde".to_string(),
                    group("lr", Value::Float(1.0)),
                )])),
            ),
        ]);
        assert!(Optimizer::new("optim.adam", &bad, &store, &nodes, None).is_err());
    }

    #[test]
    fn clipping_bounds_the_step_and_schedules_shape_the_rate() {
        let mut store = ParamStore::new(0, Device::Cpu);
        store.get("w.p", &[1], Init::Zeros).unwrap();
        let p = BTreeMap::from([("lr".to_string(), Value::Float(1.0))]);
        let mut opt = Optimizer::new("optim.sgd", &p, &store, &["w".into()], Some(0.5)).unwrap();
        let var = store.vars().next().unwrap().1.clone();
        let loss = (var.as_tensor() * 100.0).unwrap().sum_all().unwrap();
        let stats = opt.step(&loss.backward().unwrap(), 0, 1.0).unwrap();
        assert!((stats.grad_norm - 100.0).abs() < 1e-6);
        let moved = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((moved + 0.5).abs() < 1e-4, "{moved}");

        let cos = Schedule::Cosine {
            warmup: 0.1,
            min_factor: 0.0,
        };
        assert!((cos.factor(0, 100, 0) - 0.1).abs() < 1e-9);
        assert!((cos.factor(10, 100, 0) - 1.0).abs() < 1e-9);
        assert!(cos.factor(99, 100, 0) < 0.01);
        assert_eq!(
            Schedule::Step {
                every: 50,
                gamma: 0.1
            }
            .factor(0, 1, 120),
            0.1f64.powi(2)
        );
    }
}
