//! The optimiser and scheduler contracts.
//!
//! * An **optimiser** kind (role `Optimizer`, `optimizer = optim.adam {..}`)
//!   supplies only its update rule, an [`UpdateRule`]: how one parameter
//!   moves given its (clipped) gradient and its own state buffers. What every
//!   optimiser shares is done once by mer's optimiser driver, so a plugin's
//!   optimiser gets it too: parameter groups keyed by model node (`lr`,
//!   `weight_decay`, `freeze`, `step_every`/`step_gamma`), global-norm
//!   gradient clipping, the step count, the schedule's factor, and saving
//!   and restoring every buffer in the fold's checkpoint so a resumed run
//!   continues exactly. Declare the kind with [`optimizer_kind`], which adds
//!   those shared parameters to the schema.
//! * A **scheduler** kind (role `Scheduler`) supplies a factor on every
//!   group's learning rate, a [`ScheduleRule`].
//!
//! ```
//! use mer_registry::candle::{Result, Tensor};
//! use mer_registry::optim::{optimizer_kind, StepCtx, UpdateRule};
//! use mer_registry::{BuildError, Params};
//!
//! /// Plain gradient descent.
//! struct Gd;
//! impl UpdateRule for Gd {
//!     fn update(&self, theta: &Tensor, grad: &Tensor, _: &mut [Option<Tensor>], c: &StepCtx) -> Result<Tensor> {
//!         theta - (grad * c.lr)?
//!     }
//! }
//! fn gd(_: &Params) -> std::result::Result<Box<dyn UpdateRule>, BuildError> {
//!     Ok(Box::new(Gd))
//! }
//! let kind = optimizer_kind("my_paper.gd", "Gradient descent.", 0.0).optimizer(gd).build();
//! assert!(kind.factory.optimizer().is_some());
//! ```

use crate::component::BuildError;
use crate::params::Params;
use crate::{KindBuilder, ParamSpec, ParamType, Role, Value};
use candle_core::Tensor;

/// What an [`UpdateRule`] knows about one parameter in one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCtx {
    /// This parameter's learning rate now: its group's rate (after the
    /// group's `step_every` decay) times the schedule's factor.
    pub lr: f64,
    /// Its group's weight decay: the group's override, else the kind's
    /// `weight_decay` (0 for a kind that declares none). How it applies
    /// (added to the gradient, or decoupled) is the rule's choice.
    pub weight_decay: f64,
    /// The step number, counting from 1 (for bias corrections).
    pub t: i32,
}

/// An optimiser kind's update rule, applied to each trained parameter that
/// received a gradient. It is stateless itself: per-parameter state lives
/// in the buffers the driver keeps, checkpoints and restores.
pub trait UpdateRule: Send + Sync {
    /// Names of the per-parameter state buffers, in the order
    /// [`UpdateRule::update`] sees them (`["m", "v"]` for Adam). They name
    /// the checkpointed tensors (`<buffer>/<parameter>`), so keep them
    /// stable or older checkpoints will not resume; `p` and `best` are
    /// taken by the run store.
    fn buffers(&self) -> &'static [&'static str] {
        &[]
    }

    /// The parameter's next value. `grad` is already clipped; `state` has
    /// one entry per [`UpdateRule::buffers`] name, `None` until the rule
    /// first sets it (the driver detaches what is stored).
    fn update(
        &self,
        theta: &Tensor,
        grad: &Tensor,
        state: &mut [Option<Tensor>],
        ctx: &StepCtx,
    ) -> candle_core::Result<Tensor>;
}

/// Builds an optimiser's update rule from the kind's parameters (defaults
/// filled). The rule reads its own parameters (`betas`, `momentum`, ...);
/// the shared ones (`lr`, `weight_decay`, `groups`) are read by the driver.
pub type OptimizerFactory = fn(&Params) -> Result<Box<dyn UpdateRule>, BuildError>;

/// A learning-rate schedule: a factor on every group's rate.
pub trait ScheduleRule: Send + Sync {
    /// The factor at `step` (counting from 0) of `total` steps, in `epoch`
    /// (counting from 0).
    fn factor(&self, step: usize, total: usize, epoch: usize) -> f64;

    /// The factor imposed by the finished epochs, given each one's
    /// monitored loss (the inner-validation loss, else the training
    /// loss). Schedules that react to the loss (plateau) compute it here
    /// from the whole history, so a resumed run decides exactly as the
    /// uninterrupted one; the default is 1.
    fn history_factor(&self, monitored: &[f64]) -> f64 {
        let _ = monitored;
        1.0
    }
}

/// Builds a schedule from the kind's parameters (defaults filled) and the
/// optimiser's base learning rate (to turn an absolute `min_lr` into a
/// factor).
pub type SchedulerFactory =
    fn(params: &Params, base_lr: f64) -> Result<Box<dyn ScheduleRule>, BuildError>;

/// The type of the shared `groups` parameter: per-node overrides keyed by
/// model node name, `groups = { led = { lr = 0.1 }, enc = { freeze = true } }`.
pub fn groups_type() -> ParamType {
    let opt_float = |name: &str, doc: &str| ParamSpec {
        name: name.into(),
        ty: ParamType::Optional(Box::new(ParamType::Float {
            min: Some(0.0),
            max: None,
        })),
        default: Some(Value::None),
        doc: doc.into(),
    };
    ParamType::MapOf(Box::new(ParamType::Record(vec![
        opt_float(
            "lr",
            "Learning rate of this group; none inherits the optimiser's.",
        ),
        opt_float("weight_decay", "Weight decay of this group; none inherits."),
        ParamSpec {
            name: "freeze".into(),
            ty: ParamType::Bool,
            default: Some(Value::Bool(false)),
            doc: "Exclude this node's parameters from training.".into(),
        },
        ParamSpec {
            name: "step_every".into(),
            ty: ParamType::Optional(Box::new(ParamType::Int {
                min: Some(1),
                max: None,
            })),
            default: Some(Value::None),
            doc: "Multiply this group's lr by `step_gamma` every N epochs.".into(),
        },
        ParamSpec {
            name: "step_gamma".into(),
            ty: ParamType::Float {
                min: Some(0.0),
                max: None,
            },
            default: Some(Value::Float(0.1)),
            doc: "Factor for `step_every`.".into(),
        },
    ])))
}

/// Starts an optimiser kind with the parameters every optimiser shares and
/// the driver reads: `lr` (required), `weight_decay` (default
/// `weight_decay`) and `groups`. Add the rule's own parameters and its
/// factory ([`KindBuilder::optimizer`]).
pub fn optimizer_kind(name: &str, doc: &str, weight_decay: f64) -> KindBuilder {
    KindBuilder::new(name, Role::Optimizer)
        .doc(doc)
        .float("lr", None, Some(0.0), None, "Learning rate.")
        .float(
            "weight_decay",
            Some(weight_decay),
            Some(0.0),
            None,
            "Weight decay.",
        )
        .param(
            "groups",
            groups_type(),
            Some(Value::Map(Default::default())),
            "Per-node overrides, keyed by model node name.",
        )
}
