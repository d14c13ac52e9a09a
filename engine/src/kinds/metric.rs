//! Metrics (`metric.*`). Every metric is computed both pooled over folds
//! and as a per-fold mean; `report` picks which one the headline shows, and
//! the report states it.

use super::shapes;
use mer_registry::{Kind, KindBuilder, Role};

fn metric(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Metric)
        .doc(doc)
        .input("pred", "predictions (logits or probabilities)")
        .input("target", "targets")
        .choice(
            "report",
            &["pooled", "per_fold_mean"],
            Some("pooled"),
            "Which aggregate the headline table shows (both are stored).",
        )
}

pub fn kinds() -> Vec<Kind> {
    vec![
        metric("metric.accuracy", "Accuracy (WAR: weighted average recall).").shapes(shapes::loss_classification)
            .metric(crate::metrics::accuracy)
            .build(),
        metric("metric.uar", "Unweighted average recall (mean of per-class recall).").shapes(shapes::loss_classification)
            .metric(crate::metrics::uar)
            .build(),
        metric("metric.uf1", "Unweighted F1 (mean of per-class F1); classes absent from a fold are listed, never silently dropped.").shapes(shapes::loss_classification)
            .metric(crate::metrics::uf1)
            .build(),
        metric("metric.f1", "Multi-label F1 per label (AUs) and their mean.")
            .choice("average", &["binary", "macro2"], Some("binary"), "binary: positive-class F1 per AU; macro2: mean of positive- and negative-class F1 per AU (as AU-LLM's code reports).")
            .float("threshold", Some(0.5), Some(0.0), Some(1.0), "Decision threshold on probabilities.")
            .choice("threshold_from", &["fixed", "inner_val", "test_tuned"], Some("fixed"), "Where the threshold comes from; test_tuned reproduces papers and is labelled as such.")
            .shapes(shapes::loss_multilabel)
            .metric(crate::metrics::f1)
            .build(),
        metric("metric.auc", "ROC AUC per label and mean.").shapes(shapes::loss_multilabel)
            .metric(crate::metrics::roc_auc)
            .build(),
        metric("metric.confusion", "Confusion matrix (rows: truth, columns: prediction).").shapes(shapes::loss_classification)
            .metric(crate::metrics::confusion)
            .build(),
        metric("metric.per_class", "Per-class precision, recall and F1 table.").shapes(shapes::loss_classification)
            .metric(crate::metrics::per_class)
            .build(),
        metric("metric.mae", "Mean absolute error of regression outputs.").shapes(shapes::loss_regression)
            .metric(crate::metrics::mae)
            .build(),
    ]
}
