//! `mer-train`: the executor, optimisers and schedules, the runner (one
//! variant over its protocol's folds) and the experiment driver (a plan's
//! cells, locally or as Slurm array tasks). It sits at the top of the
//! engine's crates, so it assembles the builtin registry.

#![warn(missing_docs)]

pub mod driver;
pub mod exec;
pub mod optim;
mod rules;
pub mod runner;
pub mod slurm;
pub mod towers;

/// Every builtin kind: datasets, layers and LLMs, losses, metrics,
/// protocols, optimisers and schedules.
pub fn all() -> Vec<mer_registry::Kind> {
    let mut v = mer_data::kinds();
    v.extend(mer_nn::kinds());
    v.extend(rules::kinds());
    v
}

use mer_registry::Registry;

/// A registry holding every builtin kind.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    for k in all() {
        // Builtin names are fixed at compile time; a duplicate is a bug in
        // this crate, caught by `builtin_kinds_are_unique` below.
        if let Err(e) = r.add_builtin(k) {
            panic!("builtin kind table is inconsistent: {e}");
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::{Catalog, ParamType, Role};

    #[test]
    fn builtin_kinds_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for k in all() {
            assert!(
                seen.insert(k.schema.name.clone()),
                "duplicate {}",
                k.schema.name
            );
        }
        assert!(seen.len() > 60, "{}", seen.len());
    }

    #[test]
    fn defaults_satisfy_their_own_types() {
        fn fits(ty: &ParamType, v: &mer_registry::Value) -> bool {
            use mer_registry::Value as V;
            match (ty, v) {
                (ParamType::Optional(_), V::None) => true,
                (ParamType::Optional(t), v) => fits(t, v),
                (ParamType::Any, _) => true,
                (ParamType::Bool, V::Bool(_)) => true,
                (ParamType::Int { min, max }, V::Int(i)) => {
                    min.is_none_or(|m| *i >= m) && max.is_none_or(|m| *i <= m)
                }
                (ParamType::Float { min, max }, V::Float(x)) => {
                    min.is_none_or(|m| *x >= m) && max.is_none_or(|m| *x <= m)
                }
                (ParamType::Str { choices }, V::Str(s)) => {
                    choices.is_empty() || choices.contains(s)
                }
                (ParamType::Path, V::Str(_)) => true,
                (ParamType::List(t), V::List(l)) => l.iter().all(|x| fits(t, x)),
                (ParamType::MapOf(t), V::Map(m)) => m.values().all(|x| fits(t, x)),
                (ParamType::Record(_), V::Map(_)) => true,
                _ => false,
            }
        }
        for k in all() {
            let k = k.schema;
            for p in &k.params {
                if let Some(d) = &p.default {
                    assert!(
                        fits(&p.ty, d),
                        "{}.{}: default {d} is not {}",
                        k.name,
                        p.name,
                        p.ty.describe()
                    );
                }
            }
            if k.role == Role::Component || k.role == Role::Data {
                assert!(!k.outputs.is_empty(), "{} has no output port", k.name);
            }
        }
    }

    /// Every builtin with a factory has a runnable example, and its
    /// gradients (parameters and inputs) match finite differences.
    #[test]
    fn every_builtin_component_passes_gradcheck() {
        let r = builtin_registry();
        let mut checked = 0;
        for schema in r.kinds() {
            let k = r.get(&schema.name).expect("listed");
            // Kinds that load a checkpoint (llm.causal, the CLIP and SigLIP
            // towers) need files on disk; their own tests gradcheck them on
            // generated ones (llm::tests, vision::tests).
            let loads_weights = schema
                .params
                .iter()
                .any(|p| p.ty == mer_registry::ParamType::Path && p.default.is_none());
            if k.factory.component().is_none() || loads_weights {
                continue;
            }
            let ex = k
                .example
                .as_ref()
                .unwrap_or_else(|| panic!("{} has a factory but no example", schema.name));
            let params = k
                .example_params()
                .unwrap_or_else(|| panic!("{}: example misses a required parameter", schema.name));
            let report = mer_registry::gradcheck::gradcheck(k, &params, &ex.inputs, 3)
                .unwrap_or_else(|e| panic!("{}: {e}", schema.name));
            for c in &report.checked {
                assert!(c.reached, "{}: no gradient reached {}", schema.name, c.name);
                assert!(
                    c.max_error <= report.tolerance,
                    "{}: {} off by {:.2e}",
                    schema.name,
                    c.name,
                    c.max_error
                );
            }
            checked += 1;
        }
        assert!(checked >= 37, "{checked}");
    }

    /// Odd shapes and out-of-range values are errors, never panics: every
    /// builtin factory and forward pass is driven with them.
    #[test]
    fn bad_shapes_and_values_are_errors_not_panics() {
        use mer_registry::ExampleInput as E;
        let r = builtin_registry();
        let shapes: [&[usize]; 5] = [
            &[4],
            &[2, 3],
            &[1, 1, 1],
            &[2, 1, 1, 1, 1],
            &[2, 3, 4, 5, 6],
        ];
        let odd = |v: &mer_registry::Value| -> Vec<mer_registry::Value> {
            use mer_registry::Value as V;
            match v {
                V::Int(_) => vec![V::Int(0), V::Int(-1), V::Int(1 << 40)],
                V::List(_) => vec![
                    V::List(vec![]),
                    V::List(vec![V::Int(0), V::Int(0), V::Int(0)]),
                    V::List(vec![V::Int(9)]),
                ],
                V::Float(_) => vec![V::Float(-1.0), V::Float(f64::NAN)],
                _ => vec![],
            }
        };
        let mut runs = 0;
        for schema in r.kinds() {
            let k = r.get(&schema.name).expect("listed");
            let Some(base) = k.example_params() else {
                continue;
            };
            let mut variants = vec![base.clone()];
            for (name, v) in &base {
                for o in odd(v) {
                    let mut p = base.clone();
                    p.insert(name.clone(), o);
                    variants.push(p);
                }
            }
            for params in &variants {
                for shape in shapes {
                    for n in 1..=2 {
                        let inputs = vec![E::Features(shape.to_vec()); n];
                        // Ok or Err are both fine; a panic fails the test.
                        let _ = mer_registry::gradcheck::gradcheck(k, params, &inputs, 1);
                        runs += 1;
                    }
                }
            }
        }
        assert!(runs > 1000, "{runs}");
    }

    #[test]
    fn protocols_declare_folds() {
        let r = builtin_registry();
        for k in r.kinds().filter(|k| k.role == Role::Protocol) {
            assert!(k.folds.is_some(), "{}", k.name);
        }
        assert!(r.kind("nn.linear").is_some());
    }
}
