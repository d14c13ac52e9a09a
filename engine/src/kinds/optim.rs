//! Optimisers (`optim.*`) and learning-rate schedules (`sched.*`).

use mer_registry::{Kind, KindBuilder, ParamSpec, ParamType, Role, Value};

/// Per-node parameter groups: `groups = { led = { lr = 0.1 } }`.
fn groups() -> ParamType {
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

fn optimizer(name: &str, doc: &str, wd: f64) -> KindBuilder {
    KindBuilder::new(name, Role::Optimizer)
        .doc(doc)
        .float("lr", None, Some(0.0), None, "Learning rate.")
        .float("weight_decay", Some(wd), Some(0.0), None, "Weight decay.")
        .param(
            "groups",
            groups(),
            Some(Value::Map(Default::default())),
            "Per-node overrides, keyed by model node name.",
        )
}

pub fn kinds() -> Vec<Kind> {
    let betas = ParamType::List(Box::new(ParamType::Float {
        min: Some(0.0),
        max: Some(1.0),
    }));
    let betas_d = Some(Value::List(vec![Value::Float(0.9), Value::Float(0.999)]));
    vec![
        optimizer("optim.adam", "Adam with L2 weight decay added to the gradient (PyTorch Adam).", 0.0)
            .param("betas", betas.clone(), betas_d.clone(), "Moment decay rates [β1, β2].")
            .float("eps", Some(1e-8), Some(0.0), None, "Denominator floor.")
            .build(),
        optimizer("optim.adamw", "AdamW with decoupled weight decay.", 0.01)
            .param("betas", betas, betas_d, "Moment decay rates [β1, β2].")
            .float("eps", Some(1e-8), Some(0.0), None, "Denominator floor.")
            .build(),
        optimizer("optim.sgd", "SGD with optional (Nesterov) momentum.", 0.0)
            .float("momentum", Some(0.0), Some(0.0), Some(1.0), "Momentum.")
            .bool("nesterov", false, "Nesterov momentum.")
            .build(),
        KindBuilder::new("sched.cosine", Role::Scheduler)
            .doc("Linear warmup then cosine decay to `min_lr`, per step.")
            .float("warmup", Some(0.0), Some(0.0), Some(1.0), "Warmup as a fraction of all steps.")
            .float("min_lr", Some(0.0), Some(0.0), None, "Final learning rate.")
            .build(),
        KindBuilder::new("sched.step", Role::Scheduler)
            .doc("Multiply the learning rate by `gamma` every `every` epochs.")
            .int("every", None, Some(1), "Epochs between steps.")
            .float("gamma", Some(0.1), Some(0.0), None, "Factor.")
            .build(),
        KindBuilder::new("sched.plateau", Role::Scheduler)
            .doc("Multiply the learning rate by `factor` when the monitored training-side loss stops improving.")
            .float("factor", Some(0.1), Some(0.0), Some(1.0), "Factor.")
            .int("patience", Some(10), Some(1), "Epochs without improvement.")
            .float("min_lr", Some(0.0), Some(0.0), None, "Floor.")
            .build(),
    ]
}
