//! The wording of the floor, collapse and one-class clauses in a metric's
//! `how`: metrics write them, the report reads them back, so both use
//! these constants and functions.

/// Prefixes of the `how` clauses that state a classification metric's
/// floors and warnings; the report quotes them when a run stored no
/// confusion matrix to derive them from.
pub const FLOOR: &str = "floor on the pooled test labels: ";
/// Prefix of the clause saying every pooled prediction is one class, named
/// after it in backticks.
pub const COLLAPSED: &str = "collapsed: every pooled prediction is ";
/// Prefix of the clause naming the folds whose test set holds a single class.
pub const ONE_CLASS: &str = "folds whose test set holds one class: ";

/// What the test labels alone let a classifier score, for a reader to
/// compare against: `(majority class, its score when always predicted,
/// chance)`. `truth[c]` counts class `c` in the pooled test labels over
/// every class the model can predict; chance is uniform random guessing
/// over those classes, from expected counts. `metric` is `accuracy`,
/// `uar` or `uf1`; `None` for anything else or an empty test set.
pub fn class_floor(metric: &str, truth: &[usize]) -> Option<(usize, f64, f64)> {
    let n: usize = truth.iter().sum();
    let k = truth.len();
    if n == 0 {
        return None;
    }
    // The first class with the most samples: ties go to the lower index.
    let (maj, &top) =
        truth
            .iter()
            .enumerate()
            .fold(None, |b: Option<(usize, &usize)>, (i, c)| match b {
                Some((_, bc)) if bc >= c => b,
                _ => Some((i, c)),
            })?;
    let present = truth.iter().filter(|&&c| c > 0).count() as f64;
    let (n, top, kf) = (n as f64, top as f64, k as f64);
    let (always, chance) = match metric {
        "accuracy" => (top / n, 1.0 / kf),
        // Recall 1 on the majority class, 0 on every other present one.
        "uar" => (1.0 / present, 1.0 / kf),
        // The majority class's F1 is 2·top/(n+top); every other present
        // class scores 0 and absent ones are left out. Guessing gives class
        // c TP n_c/k, FP (n-n_c)/k, FN n_c(k-1)/k: F1 = 2n_c/(n+k·n_c),
        // and absent classes count 0 (they are predicted).
        "uf1" => (
            2.0 * top / (n + top) / present,
            truth
                .iter()
                .map(|&c| 2.0 * c as f64 / (n + kf * c as f64))
                .sum::<f64>()
                / kf,
        ),
        _ => return None,
    };
    Some((maj, always, chance))
}

/// The floor in words, the same whether the report derives it from a
/// stored confusion matrix or quotes a metric's `how`.
pub fn floor_words(majority: &str, always: f64, chance: f64) -> String {
    format!(
        "always `{majority}` {:.2}, chance {:.2}",
        100.0 * always,
        100.0 * chance
    )
}
