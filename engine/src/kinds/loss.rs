//! Losses (`loss.*`). Each reduces to a scalar; `loss = a * x + b * y`
//! forms the weighted total.

use super::shapes;
use mer_registry::{ExampleInput, Kind, KindBuilder, ParamType, Role, Value};

fn pair(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Loss)
        .doc(doc)
        .input("pred", "predictions (logits unless stated)")
        .input("target", "targets")
}

fn reduction() -> (ParamType, Option<Value>) {
    (
        ParamType::Str {
            choices: vec!["mean".into(), "sum".into()],
        },
        Some(Value::Str("mean".into())),
    )
}

pub fn kinds() -> Vec<Kind> {
    let (red, red_d) = reduction();
    let optional_floats =
        ParamType::Optional(Box::new(ParamType::List(Box::new(ParamType::Float {
            min: Some(0.0),
            max: None,
        }))));
    vec![
        pair("loss.cross_entropy", "Softmax cross-entropy over classes.")
            .param("weights", optional_floats.clone(), Some(Value::None), "Per-class weights; none weighs classes equally.")
            .float("label_smoothing", Some(0.0), Some(0.0), Some(1.0), "Label smoothing ε.")
            .param("reduction", red.clone(), red_d.clone(), "Batch reduction.")
            .shapes(shapes::loss_classification)
            .factory(crate::loss::build_cross_entropy)
            .example_inputs(&[("label_smoothing", Value::Float(0.1))], vec![ExampleInput::Features(vec![4, 5]), ExampleInput::ClassIndex { dims: vec![4], classes: 5 }])
            .build(),
        pair("loss.bce", "Binary cross-entropy with logits, per label (multi-label AUs).")
            .param("pos_weight", optional_floats, Some(Value::None), "Per-label positive weights.")
            .param("reduction", red.clone(), red_d.clone(), "Batch reduction.")
            .shapes(shapes::loss_multilabel)
            .factory(crate::loss::build_bce)
            .example_inputs(&[], vec![ExampleInput::Features(vec![4, 3]), ExampleInput::Binary(vec![4, 3])])
            .build(),
        pair("loss.asymmetric", "Asymmetric loss for multi-label targets (Ridnik et al.): focusing γ+ / γ− and probability clipping of negatives.")
            .float("gamma_pos", Some(0.0), Some(0.0), None, "Focusing exponent for positives.")
            .float("gamma_neg", Some(4.0), Some(0.0), None, "Focusing exponent for negatives.")
            .float("clip", Some(0.05), Some(0.0), Some(1.0), "Probability margin shifted off negatives.")
            .param("reduction", red.clone(), Some(Value::Str("sum".into())), "Batch reduction (AU-LLM sums).")
            .shapes(shapes::loss_multilabel)
            .factory(crate::loss::build_asymmetric)
            .example_inputs(&[], vec![ExampleInput::Features(vec![4, 3]), ExampleInput::Binary(vec![4, 3])])
            .build(),
        pair("loss.focal", "Focal loss over classes.")
            .float("gamma", Some(2.0), Some(0.0), None, "Focusing exponent.")
            .param("alpha", ParamType::Optional(Box::new(ParamType::Float { min: Some(0.0), max: Some(1.0) })), Some(Value::None), "Class balance factor.")
            .param("reduction", red.clone(), red_d.clone(), "Batch reduction.")
            .shapes(shapes::loss_classification)
            .factory(crate::loss::build_focal)
            .example_inputs(&[], vec![ExampleInput::Features(vec![4, 5]), ExampleInput::ClassIndex { dims: vec![4], classes: 5 }])
            .build(),
        pair("loss.mse", "Mean squared error (regression targets such as boxes and landmarks).")
            .param("reduction", red.clone(), red_d.clone(), "Reduction.")
            .shapes(shapes::loss_regression)
            .factory(crate::loss::build_mse)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 8]), ExampleInput::Features(vec![3, 2, 4])])
            .build(),
        pair("loss.l1", "Mean absolute error.")
            .param("reduction", red.clone(), red_d.clone(), "Reduction.")
            .shapes(shapes::loss_regression)
            .factory(crate::loss::build_l1)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 8]), ExampleInput::Binary(vec![3, 8])])
            .build(),
        pair("loss.cosine", "1 − cosine similarity between prediction and target vectors.").shapes(shapes::loss_pairs)
            .factory(crate::loss::build_cosine)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 4]), ExampleInput::Features(vec![3, 4])])
            .build(),
        pair("loss.contrastive", "InfoNCE between matched rows of `pred` and `target` (CLIP-style alignment).")
            .float("temperature", Some(0.07), Some(1e-4), None, "Softmax temperature τ.")
            .shapes(shapes::loss_pairs)
            .factory(crate::loss::build_contrastive)
            .example_inputs(&[], vec![ExampleInput::Features(vec![3, 4]), ExampleInput::Features(vec![3, 4])])
            .build(),
        pair("loss.lm", "Next-token cross-entropy over answer tokens, with per-token-type weights (labels vs rationale).")
            .float("label_weight", Some(1.0), Some(0.0), None, "Weight of label tokens.")
            .float("rationale_weight", Some(1.0), Some(0.0), None, "Weight of rationale tokens.")
            .shapes(shapes::loss_any)
            .build(),
    ]
}
