//! The optimiser driver and the schedule wrapper over a [`ParamStore`].
//!
//! An optimiser kind (`optim.adam`, a plugin's `testkit.signsgd`) supplies
//! only its update rule ([`UpdateRule`], built by the kind's factory in the
//! registry); everything optimisers share lives here, once: parameter
//! groups keyed by model node name (a parameter `cnn.weight` belongs to
//! `cnn`; a frozen group is never touched), global-norm gradient clipping,
//! the step count, and the state buffers that a checkpoint saves and a
//! resume restores. The builtin rules and schedules are declared beside
//! their schemas in `kinds/optim.rs`.

use mer_registry::candle::backprop::GradStore;
use mer_registry::candle::{Tensor, Var};
use mer_registry::optim::{ScheduleRule, StepCtx, UpdateRule};
use mer_registry::{validate_params, BuildError, Kind, ParamStore, Params, Registry, Value};
use std::collections::BTreeMap;

type CResult<T> = mer_registry::candle::Result<T>;

/// Per-node overrides (`groups = { led = { lr = 0.1 } }`).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The group's learning rate; `None` inherits the optimiser's.
    pub lr: Option<f64>,
    /// The group's weight decay; `None` inherits the optimiser's.
    pub weight_decay: Option<f64>,
    /// Whether the node's parameters are left untouched.
    pub freeze: bool,
    /// Multiply this group's lr by `step_gamma` every `step_every` epochs.
    pub step_every: Option<usize>,
    /// The factor for `step_every`.
    pub step_gamma: f64,
}

struct Slot {
    var: Var,
    group: Option<String>,
    /// One entry per [`UpdateRule::buffers`] name.
    state: Vec<Option<Tensor>>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Parameters that received no gradient (a frozen or disconnected part).
    pub without_grad: Vec<String>,
}

/// An optimiser kind's update rule bound to a parameter store.
pub struct Optimizer {
    rule: Box<dyn UpdateRule>,
    lr: f64,
    weight_decay: f64,
    groups: BTreeMap<String, Group>,
    slots: Vec<(String, Slot)>,
    clip: Option<f64>,
    t: i32,
}

/// Buffer names a rule may not use: they would collide with the other
/// tensors of a fold's checkpoint (`p/<param>`, `best/<param>`).
const RESERVED_BUFFERS: [&str; 2] = ["p", "best"];

impl Optimizer {
    /// Builds the optimiser kind `kind` of `reg` with `params` over every
    /// parameter in `store`. `nodes` are the model's node names: a group
    /// naming none is an error; `clip` bounds the global gradient norm.
    pub fn new(
        reg: &Registry,
        kind: &str,
        params: &BTreeMap<String, Value>,
        store: &ParamStore,
        nodes: &[String],
        clip: Option<f64>,
    ) -> Result<Self, BuildError> {
        let k = reg
            .get(kind)
            .ok_or_else(|| BuildError(format!("`{kind}` is not a known kind")))?;
        Self::from_kind(k, params, store, nodes, clip)
    }

    /// [`Optimizer::new`] for a kind already looked up. Parameters the
    /// caller left out take the schema's defaults.
    pub fn from_kind(
        kind: &Kind,
        params: &BTreeMap<String, Value>,
        store: &ParamStore,
        nodes: &[String],
        clip: Option<f64>,
    ) -> Result<Self, BuildError> {
        let name = &kind.schema.name;
        let factory = kind.factory.optimizer().ok_or_else(|| {
            BuildError(format!(
                "`{name}` is {}, not an optimizer",
                kind.schema.role.describe()
            ))
        })?;
        let params = kind.with_defaults(params);
        validate_params(&kind.schema, &params)?;
        let p = Params::new(name, &params);
        let rule = factory(&p)?;
        if let Some(b) = rule
            .buffers()
            .iter()
            .find(|b| b.is_empty() || b.contains('/') || RESERVED_BUFFERS.contains(b))
        {
            return Err(BuildError(format!(
                "`{name}` names a state buffer `{b}`: buffer names must be non-empty, without `/`, and not {}",
                RESERVED_BUFFERS.join(" or ")
            )));
        }
        let lr = p.float("lr")?;
        // `weight_decay` is one of the shared parameters `optimizer_kind`
        // declares; a kind declared without it has no decay to apply.
        let weight_decay = match p.get("weight_decay") {
            Some(_) => p.float("weight_decay")?,
            None => 0.0,
        };
        let mut groups = BTreeMap::new();
        for (node, g) in p.records("groups")? {
            if !nodes.iter().any(|n| n == node) {
                return Err(BuildError(format!(
                    "optimiser group `{node}` names no model node (nodes: {})",
                    nodes.join(", ")
                )));
            }
            groups.insert(
                node.to_string(),
                Group {
                    lr: g.opt_float("lr")?,
                    weight_decay: g.opt_float("weight_decay")?,
                    freeze: g.bool("freeze")?,
                    step_every: g.opt_usize("step_every")?.filter(|e| *e > 0),
                    step_gamma: g.float("step_gamma")?,
                },
            );
        }
        let buffers = rule.buffers().len();
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
                        state: vec![None; buffers],
                    },
                )
            })
            .collect();
        Ok(Optimizer {
            rule,
            lr,
            weight_decay,
            groups,
            slots,
            clip,
            t: 0,
        })
    }

    /// The optimiser's base learning rate (`lr`), before groups and the
    /// schedule.
    pub fn lr(&self) -> f64 {
        self.lr
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

    fn frozen(&self, group: Option<&String>) -> bool {
        group
            .and_then(|g| self.groups.get(g))
            .is_some_and(|g| g.freeze)
    }

    /// Whether a parameter is trained at all.
    pub fn trains(&self, name: &str) -> bool {
        self.slots
            .iter()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, s)| !self.frozen(s.group.as_ref()))
    }

    /// The optimiser's state for a checkpoint: the step count and every
    /// state buffer, named `<buffer>/<param>` (`m/cnn.weight`).
    pub fn state(&self) -> (i32, Vec<(String, Tensor)>) {
        let mut out = Vec::new();
        for (name, s) in &self.slots {
            for (b, t) in self.rule.buffers().iter().zip(&s.state) {
                if let Some(t) = t {
                    out.push((format!("{b}/{name}"), t.clone()));
                }
            }
        }
        (self.t, out)
    }

    /// Restores [`Optimizer::state`]: resuming from it continues exactly
    /// where the checkpointed run was.
    pub fn load_state(&mut self, t: i32, tensors: &std::collections::HashMap<String, Tensor>) {
        self.t = t;
        let buffers = self.rule.buffers();
        for (name, s) in self.slots.iter_mut() {
            for (b, slot) in buffers.iter().zip(s.state.iter_mut()) {
                *slot = tensors.get(&format!("{b}/{name}")).cloned();
            }
        }
    }

    /// One update from `grads`; `lr_factor` comes from the schedule.
    pub fn step(&mut self, grads: &GradStore, epoch: usize, lr_factor: f64) -> CResult<StepStats> {
        self.t += 1;
        let mut without_grad = Vec::new();
        // Global norm over trainable parameters (for clipping and logs).
        let mut sq = 0f64;
        for (name, s) in &self.slots {
            if self.frozen(s.group.as_ref()) {
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
        for i in 0..self.slots.len() {
            let group = self.slots[i].1.group.as_ref();
            if self.frozen(group) {
                continue;
            }
            let ctx = StepCtx {
                lr: self.group_lr(group, epoch) * lr_factor,
                weight_decay: group
                    .and_then(|g| self.groups.get(g))
                    .and_then(|g| g.weight_decay)
                    .unwrap_or(self.weight_decay),
                t: self.t,
            };
            let slot = &mut self.slots[i].1;
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let theta = slot.var.as_tensor().clone();
            let g = (g * scale)?;
            let next = self.rule.update(&theta, &g, &mut slot.state, &ctx)?;
            slot.var.set(&next)?;
            // Buffers carry values, not history: the next step must not
            // backpropagate into this one.
            for b in slot.state.iter_mut().flatten() {
                *b = b.detach();
            }
        }
        Ok(StepStats {
            grad_norm,
            without_grad,
        })
    }
}

/// A learning-rate schedule: a factor on every group's rate, from a
/// scheduler kind of the registry, or constant when the recipe has none.
#[derive(Default)]
pub struct Schedule {
    rule: Option<Box<dyn ScheduleRule>>,
}

impl Schedule {
    /// The factor 1 throughout (no `scheduler` in the recipe).
    pub fn constant() -> Self {
        Schedule { rule: None }
    }

    /// Builds the scheduler kind `kind` of `reg` with `params`; `base_lr`
    /// is the optimiser's rate (it turns an absolute `min_lr` into a
    /// factor).
    pub fn new(
        reg: &Registry,
        kind: &str,
        params: &BTreeMap<String, Value>,
        base_lr: f64,
    ) -> Result<Self, BuildError> {
        let k = reg
            .get(kind)
            .ok_or_else(|| BuildError(format!("`{kind}` is not a known kind")))?;
        Self::from_kind(k, params, base_lr)
    }

    /// [`Schedule::new`] for a kind already looked up. Parameters the
    /// caller left out take the schema's defaults.
    pub fn from_kind(
        kind: &Kind,
        params: &BTreeMap<String, Value>,
        base_lr: f64,
    ) -> Result<Self, BuildError> {
        let name = &kind.schema.name;
        let factory = kind.factory.scheduler().ok_or_else(|| {
            BuildError(format!(
                "`{name}` is {}, not a scheduler",
                kind.schema.role.describe()
            ))
        })?;
        let params = kind.with_defaults(params);
        validate_params(&kind.schema, &params)?;
        Ok(Schedule {
            rule: Some(factory(&Params::new(name, &params), base_lr)?),
        })
    }

    /// The factor at `step` of `total` steps, in `epoch`.
    pub fn factor(&self, step: usize, total: usize, epoch: usize) -> f64 {
        self.rule
            .as_ref()
            .map_or(1.0, |r| r.factor(step, total, epoch))
    }

    /// The factor that the epochs so far impose, given each finished
    /// epoch's monitored loss (see [`ScheduleRule::history_factor`]).
    pub fn history_factor(&self, monitored: &[f64]) -> f64 {
        self.rule
            .as_ref()
            .map_or(1.0, |r| r.history_factor(monitored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::Init;

    fn sum_sq_minus(vars: &[Var], c: f64) -> Tensor {
        vars.iter()
            .map(|v| {
                (v.as_tensor() - c)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
            })
            .reduce(|a, b| (a + b).unwrap())
            .unwrap()
    }

    #[test]
    fn groups_override_freeze_and_refuse_unknown_nodes() {
        let reg = crate::builtin_registry();
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
        let mut opt = Optimizer::new(&reg, "optim.sgd", &params, &store, &nodes, None).unwrap();
        let vars: Vec<Var> = store.vars().map(|(_, v)| v.clone()).collect();
        let loss = sum_sq_minus(&vars, 1.0);
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
        assert!(opt.trains("led.a") && !opt.trains("cnn.w"));
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
        assert!(Optimizer::new(&reg, "optim.adam", &bad, &store, &nodes, None).is_err());
    }

    #[test]
    fn clipping_bounds_the_step() {
        let reg = crate::builtin_registry();
        let mut store = ParamStore::new(0, Device::Cpu);
        store.get("w.p", &[1], Init::Zeros).unwrap();
        let p = BTreeMap::from([("lr".to_string(), Value::Float(1.0))]);
        let mut opt =
            Optimizer::new(&reg, "optim.sgd", &p, &store, &["w".into()], Some(0.5)).unwrap();
        let var = store.vars().next().unwrap().1.clone();
        let loss = (var.as_tensor() * 100.0).unwrap().sum_all().unwrap();
        let stats = opt.step(&loss.backward().unwrap(), 0, 1.0).unwrap();
        assert!((stats.grad_norm - 100.0).abs() < 1e-6);
        let moved = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((moved + 0.5).abs() < 1e-4, "{moved}");
    }

    /// A checkpoint taken mid-run and loaded into a fresh optimiser
    /// continues bit for bit as the uninterrupted run does.
    #[test]
    fn state_round_trips_for_an_exact_resume() {
        let reg = crate::builtin_registry();
        let p = BTreeMap::from([("lr".to_string(), Value::Float(0.1))]);
        let fresh = |store: &ParamStore| {
            Optimizer::new(&reg, "optim.adam", &p, store, &["w".into()], None).unwrap()
        };
        let steps = |opt: &mut Optimizer, var: &Var, n: usize| {
            for _ in 0..n {
                let loss = sum_sq_minus(std::slice::from_ref(var), 3.0);
                opt.step(&loss.backward().unwrap(), 0, 1.0).unwrap();
            }
        };
        let mut a = ParamStore::new(0, Device::Cpu);
        a.get("w.p", &[2], Init::Uniform(1.0)).unwrap();
        let var_a = a.vars().next().unwrap().1.clone();
        let mut whole = fresh(&a);
        let start = var_a.as_tensor().copy().unwrap();
        steps(&mut whole, &var_a, 3);
        let (t, saved) = whole.state();
        assert_eq!(t, 3);
        let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["m/w.p", "v/w.p"]);
        let mid = var_a.as_tensor().copy().unwrap();
        steps(&mut whole, &var_a, 2);

        let mut b = ParamStore::new(0, Device::Cpu);
        b.get("w.p", &[2], Init::Zeros).unwrap();
        let var_b = b.vars().next().unwrap().1.clone();
        var_b.set(&mid).unwrap();
        let mut resumed = fresh(&b);
        resumed.load_state(t, &saved.into_iter().collect());
        steps(&mut resumed, &var_b, 2);
        let (x, y) = (
            var_a.as_tensor().to_vec1::<f32>().unwrap(),
            var_b.as_tensor().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(x, y);
        assert_ne!(x, start.to_vec1::<f32>().unwrap());
    }

    #[test]
    fn only_optimizer_and_scheduler_kinds_build_here() {
        let reg = crate::builtin_registry();
        let store = ParamStore::new(0, Device::Cpu);
        let e = Optimizer::new(&reg, "sched.cosine", &BTreeMap::new(), &store, &[], None)
            .err()
            .unwrap();
        assert!(e.0.contains("not an optimizer"), "{e}");
        let e = Schedule::new(&reg, "optim.adam", &BTreeMap::new(), 0.1)
            .err()
            .unwrap();
        assert!(e.0.contains("not a scheduler"), "{e}");
        assert!(Optimizer::new(&reg, "optim.nope", &BTreeMap::new(), &store, &[], None).is_err());
        assert_eq!(Schedule::constant().factor(3, 10, 1), 1.0);
        assert_eq!(Schedule::constant().history_factor(&[1.0, 2.0]), 1.0);
    }
}
