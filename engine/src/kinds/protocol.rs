//! Evaluation protocols (`protocol.*`). Folds are keyed by
//! (dataset, group); train/test disjointness is verified before training.

use mer_registry::{FoldRule, Kind, KindBuilder, ParamType, Role, Value};

pub fn kinds() -> Vec<Kind> {
    let names = ParamType::List(Box::new(ParamType::Str { choices: vec![] }));
    vec![
        KindBuilder::new("protocol.loso", Role::Protocol)
            .doc("Leave one subject out: one fold per (dataset, subject).")
            .string("group", Some("subject"), "Data column whose values form the folds.")
            .folds(FoldRule::PerGroup("group".into()))
            .protocol(crate::protocols::loso)
            .build(),
        KindBuilder::new("protocol.kfold", Role::Protocol)
            .doc("k-fold, subject-independent: groups are split into k blocks. Uses a dataset's official fold lists when it has them.")
            .int("k", Some(5), Some(2), "Number of folds.")
            .string("group", Some("subject"), "Data column that must not straddle folds.")
            .bool("official", true, "Use the dataset's official folds (DFEW sets, CREMA-D/RAVDESS actor blocks) when defined.")
            .folds(FoldRule::FromParam("k".into()))
            .protocol(crate::protocols::kfold)
            .build(),
        KindBuilder::new("protocol.official", Role::Protocol)
            .doc("The dataset's official train/test split.")
            .folds(FoldRule::Fixed(1))
            .protocol(crate::protocols::official)
            .build(),
        KindBuilder::new("protocol.holdout", Role::Protocol)
            .doc("A seeded subject-independent train/test split.")
            .float("test_fraction", Some(0.2), Some(0.01), Some(0.99), "Fraction of groups in the test set.")
            .string("group", Some("subject"), "Data column that must not straddle the split.")
            .folds(FoldRule::Fixed(1))
            .protocol(crate::protocols::holdout)
            .build(),
        KindBuilder::new("protocol.cross_dataset", Role::Protocol)
            .doc("Train on some datasets, test on others (by data node name).")
            .param("train", names.clone(), None, "Data nodes to train on.")
            .param("test", names, None, "Data nodes to test on.")
            .folds(FoldRule::Fixed(1))
            .protocol(crate::protocols::cross_dataset)
            .build(),
        KindBuilder::new("protocol.lodo", Role::Protocol)
            .doc("Leave one dataset out over all data nodes.")
            .folds(FoldRule::PerGroup("dataset".into()))
            .protocol(crate::protocols::lodo)
            .build(),
        KindBuilder::new("protocol.megc", Role::Protocol)
            .doc("MEGC composite: CASME II + SAMM + SMIC in 3 classes, LOSO over the union, with per-dataset cuts in the report.")
            .string("group", Some("subject"), "Group column.")
            .param("classes", ParamType::Str { choices: vec!["3class_megc".into()] }, Some(Value::Str("3class_megc".into())), "Label set.")
            .folds(FoldRule::PerGroup("group".into()))
            .protocol(crate::protocols::megc)
            .build(),
    ]
}
