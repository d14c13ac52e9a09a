//! `mer-nn`: the builtin layers (`nn.*`), LLM bodies with LoRA (`llm.*`),
//! vision-language towers (`clip.*`, `siglip.*`), losses, metrics and
//! protocols on candle, each kind's schema beside it.

#![warn(missing_docs)]

pub mod answers;
pub mod checkpoint;
pub mod layers;
pub mod llm;
pub mod loss;
pub mod metrics;
pub mod protocols;
pub mod vision;

/// Every kind this crate implements.
pub fn kinds() -> Vec<mer_registry::Kind> {
    let mut v = layers::kinds();
    v.extend(llm::kinds());
    v.extend(loss::kinds());
    v.extend(metrics::kinds());
    v.extend(protocols::kinds());
    v.extend(vision::kinds());
    v
}

/// A registry of this crate's kinds only, for its own tests.
#[cfg(test)]
pub(crate) fn builtin_registry() -> mer_registry::Registry {
    let mut r = mer_registry::Registry::new();
    for k in kinds() {
        r.add_builtin(k).expect("unique builtin names");
    }
    r
}
