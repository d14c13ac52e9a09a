//! Protocol implementations (`protocol.*`): folds over a dataset index.
//!
//! Groups are always `(dataset, group value)`, so two datasets that both
//! number their subjects `sub01` never share a fold by accident. The runner
//! calls [`mer_registry::contracts::verify_folds`] on every result before
//! training.

use mer_registry::{BuildError, Fold, Params, Protocol, SampleMeta, SeededRng, Value};
use mer_registry::{FoldRule, Kind, KindBuilder, ParamType, Role};
use std::collections::{BTreeMap, BTreeSet};

// Factories get their parameters after the schema's defaults: a missing
// one is an error naming it, never a second default here.

fn group(p: &BTreeMap<String, Value>, kind: &str) -> Result<String, BuildError> {
    Params::new(kind, p).str("group").map(str::to_string)
}

fn names(p: &BTreeMap<String, Value>, kind: &str, k: &str) -> Result<Vec<String>, BuildError> {
    p.get(k)
        .and_then(Value::as_strings)
        .ok_or_else(|| BuildError(format!("`{kind}` needs `{k}`: a list of data node names")))
}

/// The value of column `col` for a sample: `subject` is the index's group;
/// anything else is a label column.
fn column(s: &SampleMeta, col: &str) -> Result<String, String> {
    if col == "subject" || col == "group" {
        return Ok(s.group.clone());
    }
    if col == "dataset" {
        return Ok(s.dataset.clone());
    }
    match s.labels.get(col) {
        Some(Value::Str(v)) => Ok(v.clone()),
        Some(Value::Int(i)) => Ok(i.to_string()),
        Some(other) => Ok(format!("{other:?}")),
        None => Err(format!(
            "sample `{}` of `{}` has no column `{col}` to group by",
            s.id, s.dataset
        )),
    }
}

/// Whether the index spans several datasets (fold names then carry the
/// dataset, e.g. `casme2/sub01`).
fn multi(index: &[SampleMeta]) -> bool {
    index
        .iter()
        .map(|s| &s.dataset)
        .collect::<BTreeSet<_>>()
        .len()
        > 1
}

fn group_key(s: &SampleMeta, col: &str, multi: bool) -> Result<String, String> {
    let g = column(s, col)?;
    Ok(if multi {
        format!("{}/{g}", s.dataset)
    } else {
        g
    })
}

/// Sample positions by group key, sorted by key.
fn group_positions(
    index: &[SampleMeta],
    col: &str,
) -> Result<BTreeMap<String, Vec<usize>>, String> {
    let m = multi(index) && col != "dataset";
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in index.iter().enumerate() {
        by.entry(group_key(s, col, m)?).or_default().push(i);
    }
    Ok(by)
}

/// One fold per value of `col`: train on the rest.
fn leave_one_out(index: &[SampleMeta], col: &str) -> Result<Vec<Fold>, String> {
    let by = group_positions(index, col)?;
    if by.len() < 2 {
        return Err(format!(
            "leave-one-out over `{col}` needs at least 2 groups, the data has {}",
            by.len()
        ));
    }
    Ok(by
        .iter()
        .map(|(g, test)| Fold {
            name: g.replace('/', "_"),
            train: by
                .iter()
                .filter(|(h, _)| *h != g)
                .flat_map(|(_, v)| v.iter().copied())
                .collect(),
            test: test.clone(),
        })
        .collect())
}

struct Loso {
    col: String,
}

impl Protocol for Loso {
    fn folds(&self, index: &[SampleMeta]) -> Result<Vec<Fold>, String> {
        leave_one_out(index, &self.col)
    }
}

struct KFold {
    k: usize,
    col: String,
    official: bool,
}

impl Protocol for KFold {
    fn folds(&self, index: &[SampleMeta]) -> Result<Vec<Fold>, String> {
        // A dataset's own fold lists win when asked for and complete.
        if self.official && !index.is_empty() && index.iter().all(|s| s.labels.contains_key("fold"))
        {
            let folds = leave_one_out(index, "fold")?;
            if folds.len() != self.k {
                return Err(format!(
                    "the data's official folds number {}, the recipe asks for k = {}",
                    folds.len(),
                    self.k
                ));
            }
            return Ok(folds
                .into_iter()
                .enumerate()
                .map(|(i, f)| Fold {
                    name: format!("fold{}", i + 1),
                    ..f
                })
                .collect());
        }
        let groups = group_positions(index, &self.col)?;
        if groups.len() < self.k {
            return Err(format!(
                "k = {} folds need at least {} `{}` groups, the data has {}",
                self.k,
                self.k,
                self.col,
                groups.len()
            ));
        }
        // Contiguous blocks of sorted groups (actor blocks, as CREMA-D and
        // RAVDESS protocols use), sizes differing by at most one.
        let keys: Vec<&String> = groups.keys().collect();
        let n = keys.len();
        let block = |g: usize| (g * self.k) / n;
        Ok((0..self.k)
            .map(|f| {
                let (mut train, mut test) = (vec![], vec![]);
                for (gi, key) in keys.iter().enumerate() {
                    let into = if block(gi) == f {
                        &mut test
                    } else {
                        &mut train
                    };
                    into.extend(groups[*key].iter().copied());
                }
                Fold {
                    name: format!("fold{}", f + 1),
                    train,
                    test,
                }
            })
            .collect())
    }
}

struct Official;

impl Protocol for Official {
    fn folds(&self, index: &[SampleMeta]) -> Result<Vec<Fold>, String> {
        let (mut train, mut test) = (vec![], vec![]);
        for (i, s) in index.iter().enumerate() {
            match s.labels.get("split") {
                Some(Value::Str(v)) if v == "train" => train.push(i),
                Some(Value::Str(v)) if v == "test" => test.push(i),
                Some(other) => {
                    return Err(format!(
                        "sample `{}` has split {other:?}; expected \"train\" or \"test\"",
                        s.id
                    ))
                }
                None => {
                    return Err(format!(
                        "dataset `{}` defines no official split (sample `{}`); use protocol.holdout or protocol.loso",
                        s.dataset, s.id
                    ))
                }
            }
        }
        Ok(vec![Fold {
            name: "official".into(),
            train,
            test,
        }])
    }
}

struct Holdout {
    fraction: f64,
    col: String,
}

impl Protocol for Holdout {
    fn folds(&self, index: &[SampleMeta]) -> Result<Vec<Fold>, String> {
        let groups = group_positions(index, &self.col)?;
        if groups.len() < 2 {
            return Err(format!(
                "a holdout split needs at least 2 `{}` groups",
                self.col
            ));
        }
        // Seeded by the group names, so the split is a property of the data
        // and recipe, identical across seeds and machines.
        let names: Vec<&String> = groups.keys().collect();
        let seed = fnv_seed(&names);
        let mut order: Vec<usize> = (0..names.len()).collect();
        let mut r = SeededRng::new(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, r.below(i + 1));
        }
        let n_test =
            ((names.len() as f64 * self.fraction).round() as usize).clamp(1, names.len() - 1);
        let test_groups: BTreeSet<usize> = order[..n_test].iter().copied().collect();
        let (mut train, mut test) = (vec![], vec![]);
        for (gi, key) in names.iter().enumerate() {
            let into = if test_groups.contains(&gi) {
                &mut test
            } else {
                &mut train
            };
            into.extend(groups[*key].iter().copied());
        }
        train.sort_unstable();
        test.sort_unstable();
        Ok(vec![Fold {
            name: "holdout".into(),
            train,
            test,
        }])
    }
}

fn fnv_seed(names: &[&String]) -> u64 {
    let mut acc = 0xcbf2_9ce4_8422_2325u64;
    for n in names {
        for b in n.bytes() {
            acc ^= b as u64;
            acc = acc.wrapping_mul(0x100_0000_01b3);
        }
    }
    acc
}

struct CrossDataset {
    train: Vec<String>,
    test: Vec<String>,
}

impl Protocol for CrossDataset {
    fn folds(&self, index: &[SampleMeta]) -> Result<Vec<Fold>, String> {
        let present: BTreeSet<&String> = index.iter().map(|s| &s.dataset).collect();
        for n in self.train.iter().chain(&self.test) {
            if !present.contains(n) {
                return Err(format!(
                    "protocol names data node `{n}`, which has no samples"
                ));
            }
        }
        if let Some(n) = self.train.iter().find(|n| self.test.contains(n)) {
            return Err(format!("data node `{n}` is both a training and a test set"));
        }
        let pick = |set: &[String]| -> Vec<usize> {
            index
                .iter()
                .enumerate()
                .filter(|(_, s)| set.contains(&s.dataset))
                .map(|(i, _)| i)
                .collect()
        };
        Ok(vec![Fold {
            name: format!("{}_to_{}", self.train.join("+"), self.test.join("+")),
            train: pick(&self.train),
            test: pick(&self.test),
        }])
    }
    fn across_datasets(&self) -> bool {
        true
    }
}

/// Builds `protocol.loso`: one fold per value of the `group` column
/// (subjects by default), per dataset.
pub fn loso(p: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    Ok(Box::new(Loso {
        col: group(p, "protocol.loso")?,
    }))
}
/// Builds `protocol.kfold`: `k` folds of contiguous group blocks, or the
/// dataset's own fold lists when `official` and every sample has one.
pub fn kfold(p: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    Ok(Box::new(KFold {
        k: match p.get("k") {
            Some(Value::Int(k)) if *k >= 2 => *k as usize,
            _ => return Err(BuildError("`k` must be an integer ≥ 2".into())),
        },
        col: group(p, "protocol.kfold")?,
        official: Params::new("protocol.kfold", p).bool("official")?,
    }))
}
/// Builds `protocol.official`: the dataset's own `split` label as one
/// train/test fold.
pub fn official(_: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    Ok(Box::new(Official))
}
/// Builds `protocol.holdout`: one split with `test_fraction` of the groups
/// in the test set, seeded by the group names.
pub fn holdout(p: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    Ok(Box::new(Holdout {
        fraction: Params::new("protocol.holdout", p).float("test_fraction")?,
        col: group(p, "protocol.holdout")?,
    }))
}
/// Builds `protocol.cross_dataset`: one fold training on the `train` data
/// nodes and testing on the `test` ones.
pub fn cross_dataset(p: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    Ok(Box::new(CrossDataset {
        train: names(p, "protocol.cross_dataset", "train")?,
        test: names(p, "protocol.cross_dataset", "test")?,
    }))
}
/// Builds `protocol.lodo`: leave one dataset out, one fold per data node.
pub fn lodo(_: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    Ok(Box::new(Loso {
        col: "dataset".into(),
    }))
}
/// MEGC composite: LOSO over the union of the datasets (the per-dataset
/// cuts are taken from the pooled predictions by the report).
pub fn megc(p: &BTreeMap<String, Value>) -> Result<Box<dyn Protocol>, BuildError> {
    loso(p)
}

// ---- the kinds -------------------------------------------------------------

pub(crate) fn kinds() -> Vec<Kind> {
    let names = ParamType::List(Box::new(ParamType::Str { choices: vec![] }));
    vec![
        KindBuilder::new("protocol.loso", Role::Protocol)
            .doc("Leave one subject out: one fold per (dataset, subject).")
            .string("group", Some("subject"), "Data column whose values form the folds.")
            .folds(FoldRule::PerGroup("group".into()))
            .protocol(loso)
            .build(),
        KindBuilder::new("protocol.kfold", Role::Protocol)
            .doc("k-fold, subject-independent: groups are split into k blocks. Uses a dataset's official fold lists when it has them.")
            .int("k", Some(5), Some(2), "Number of folds.")
            .string("group", Some("subject"), "Data column that must not straddle folds.")
            .bool("official", true, "Use the dataset's official folds (DFEW sets, CREMA-D/RAVDESS actor blocks) when defined.")
            .folds(FoldRule::FromParam("k".into()))
            .protocol(kfold)
            .build(),
        KindBuilder::new("protocol.official", Role::Protocol)
            .doc("The dataset's official train/test split.")
            .folds(FoldRule::Fixed(1))
            .protocol(official)
            .build(),
        KindBuilder::new("protocol.holdout", Role::Protocol)
            .doc("A seeded subject-independent train/test split.")
            .float("test_fraction", Some(0.2), Some(0.01), Some(0.99), "Fraction of groups in the test set.")
            .string("group", Some("subject"), "Data column that must not straddle the split.")
            .folds(FoldRule::Fixed(1))
            .protocol(holdout)
            .build(),
        KindBuilder::new("protocol.cross_dataset", Role::Protocol)
            .doc("Train on some datasets, test on others (by data node name).")
            .param("train", names.clone(), None, "Data nodes to train on.")
            .param("test", names, None, "Data nodes to test on.")
            .folds(FoldRule::Fixed(1))
            .protocol(cross_dataset)
            .build(),
        KindBuilder::new("protocol.lodo", Role::Protocol)
            .doc("Leave one dataset out over all data nodes.")
            .folds(FoldRule::PerGroup("dataset".into()))
            .protocol(lodo)
            .build(),
        KindBuilder::new("protocol.megc", Role::Protocol)
            .doc("MEGC composite: CASME II + SAMM + SMIC in 3 classes, LOSO over the union, with per-dataset cuts in the report.")
            .string("group", Some("subject"), "Group column.")
            .param("classes", ParamType::Str { choices: vec!["3class_megc".into()] }, Some(Value::Str("3class_megc".into())), "Label set.")
            .folds(FoldRule::PerGroup("group".into()))
            .protocol(megc)
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::verify_folds;

    fn idx(spec: &[(&str, &str)]) -> Vec<SampleMeta> {
        spec.iter()
            .enumerate()
            .map(|(i, (d, g))| SampleMeta {
                id: format!("{d}/{g}/{i}"),
                dataset: d.to_string(),
                group: g.to_string(),
                labels: BTreeMap::new(),
            })
            .collect()
    }

    fn covers_once(index: &[SampleMeta], folds: &[Fold]) {
        let mut seen = vec![0; index.len()];
        for f in folds {
            for t in &f.test {
                seen[*t] += 1;
            }
        }
        assert!(
            seen.iter().all(|c| *c == 1),
            "every sample tested once: {seen:?}"
        );
        verify_folds(index, folds).unwrap();
    }

    #[test]
    fn loso_keys_groups_by_dataset_and_subject() {
        let index = idx(&[("a", "s1"), ("a", "s2"), ("b", "s1"), ("b", "s1")]);
        let f = Loso {
            col: "subject".into(),
        }
        .folds(&index)
        .unwrap();
        assert_eq!(
            f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a_s1", "a_s2", "b_s1"]
        );
        covers_once(&index, &f);
        assert_eq!(f[2].test, vec![2, 3]);
    }

    #[test]
    fn kfold_makes_blocks_and_prefers_official_lists() {
        let index = idx(&[
            ("a", "s1"),
            ("a", "s2"),
            ("a", "s3"),
            ("a", "s4"),
            ("a", "s5"),
        ]);
        let f = KFold {
            k: 2,
            col: "subject".into(),
            official: true,
        }
        .folds(&index)
        .unwrap();
        assert_eq!(f.len(), 2);
        covers_once(&index, &f);
        assert!(KFold {
            k: 6,
            col: "subject".into(),
            official: true
        }
        .folds(&index)
        .is_err());
        let mut off = index.clone();
        for (i, s) in off.iter_mut().enumerate() {
            s.labels
                .insert("fold".into(), Value::Int((i % 2) as i64 + 1));
        }
        let f = KFold {
            k: 2,
            col: "subject".into(),
            official: true,
        }
        .folds(&off)
        .unwrap();
        assert_eq!(f[0].test, vec![0, 2, 4], "official lists are used");
    }

    #[test]
    fn holdout_is_subject_independent_and_stable() {
        let index = idx(&[
            ("a", "s1"),
            ("a", "s2"),
            ("a", "s3"),
            ("a", "s4"),
            ("a", "s1"),
        ]);
        let h = Holdout {
            fraction: 0.25,
            col: "subject".into(),
        };
        let f = h.folds(&index).unwrap();
        verify_folds(&index, &f).unwrap();
        assert_eq!(f, h.folds(&index).unwrap());
        assert_eq!(f[0].train.len() + f[0].test.len(), 5);
    }

    #[test]
    fn cross_dataset_and_official_refuse_what_the_data_lacks() {
        let index = idx(&[("a", "s1"), ("b", "s1")]);
        let f = CrossDataset {
            train: vec!["a".into()],
            test: vec!["b".into()],
        }
        .folds(&index)
        .unwrap();
        assert_eq!((f[0].train.clone(), f[0].test.clone()), (vec![0], vec![1]));
        assert!(CrossDataset {
            train: vec!["a".into()],
            test: vec!["c".into()]
        }
        .folds(&index)
        .is_err());
        let e = Official.folds(&index).unwrap_err();
        assert!(e.contains("no official split"), "{e}");
        let f = Loso {
            col: "dataset".into(),
        }
        .folds(&index)
        .unwrap();
        assert_eq!(f.len(), 2, "leave one dataset out");
    }
}
