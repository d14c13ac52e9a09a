//! The run matrix: variants × seeds × folds, each run with a stable id.

use crate::resolve::Val;
use crate::schema::{Catalog, FoldRule};
use crate::CheckedExperiment;
use serde::Serialize;

/// One planned run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedRun {
    /// 12 hex digits of BLAKE3(variant hash, seed, fold): stable across
    /// machines and invocations for the same resolved recipe.
    pub id: String,
    pub variant: String,
    pub seed: i64,
    /// `1`..`k`, or `*` when the folds are known only once data is indexed.
    pub fold: String,
}

/// The plan of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub experiment: String,
    pub recipe_hash: String,
    pub protocol: String,
    /// How folds are formed, in words.
    pub folds: String,
    pub runs: Vec<PlannedRun>,
}

fn run_id(variant_hash: &str, seed: i64, fold: &str) -> String {
    let h = blake3::hash(format!("{variant_hash}:{seed}:{fold}").as_bytes());
    h.to_hex()[..12].to_string()
}

pub fn plan(exp: &CheckedExperiment, catalog: &dyn Catalog) -> Plan {
    let mut runs = Vec::new();
    let mut protocol = String::new();
    let mut folds_desc = String::new();
    for v in &exp.variants {
        let tree = &v.variant.tree;
        let (kind, params) = match tree.get("protocol").map(|n| &n.val) {
            Some(Val::Call(c)) => (c.kind.clone(), c.params.clone()),
            _ => (String::new(), Default::default()),
        };
        let folds: Vec<String> = match catalog.kind(&kind).and_then(|s| s.folds.clone()) {
            Some(FoldRule::Fixed(n)) => {
                folds_desc = format!("{n} fixed fold(s)");
                (1..=n).map(|i| i.to_string()).collect()
            }
            Some(FoldRule::FromParam(p)) => {
                let n = match params.get(&p).map(|n| &n.val) {
                    Some(Val::Int(k)) => (*k).max(0) as usize,
                    _ => 0,
                };
                folds_desc = format!("{n} folds (`{p}`)");
                (1..=n).map(|i| i.to_string()).collect()
            }
            Some(FoldRule::PerGroup(param)) => {
                let col = match params.get(&param).map(|n| &n.val) {
                    Some(Val::Str(s)) => s.clone(),
                    _ => param.clone(),
                };
                folds_desc = format!("one fold per `{col}`, counted when the data is indexed");
                vec!["*".to_string()]
            }
            None => {
                folds_desc = "1 fold".into();
                vec!["1".to_string()]
            }
        };
        protocol = kind;
        let seeds: Vec<i64> = match tree.get("seeds").map(|n| &n.val) {
            Some(Val::List(l)) => l
                .iter()
                .filter_map(|n| match n.val {
                    Val::Int(i) => Some(i),
                    _ => None,
                })
                .collect(),
            _ => vec![0],
        };
        for seed in seeds {
            for f in &folds {
                runs.push(PlannedRun {
                    id: run_id(&v.hash, seed, f),
                    variant: v.variant.name.clone(),
                    seed,
                    fold: f.clone(),
                });
            }
        }
    }
    Plan {
        experiment: exp.name.clone(),
        recipe_hash: exp.hash.clone(),
        protocol,
        folds: folds_desc,
        runs,
    }
}

impl Plan {
    /// A fixed-width table for the terminal and for snapshots.
    pub fn to_table(&self) -> String {
        let short = &self.recipe_hash[..12.min(self.recipe_hash.len())];
        let mut out = format!(
            "experiment {}  (recipe {short})\nprotocol {}: {}\n{} run(s), each written to <runs>/{}/{short}/<variant>/seed<seed>/folds/<fold>/ (its id in plan.json there and as the MLflow tag mer.run_id)\n\n",
            self.experiment,
            self.protocol,
            self.folds,
            self.runs.len(),
            self.experiment,
        );
        let w = self
            .runs
            .iter()
            .map(|r| r.variant.len())
            .max()
            .unwrap_or(7)
            .max(7);
        out.push_str(&format!(
            "{:<12}  {:<w$}  {:>6}  fold\n",
            "run", "variant", "seed"
        ));
        for r in &self.runs {
            out.push_str(&format!(
                "{:<12}  {:<w$}  {:>6}  {}\n",
                r.id, r.variant, r.seed, r.fold
            ));
        }
        out
    }
}
