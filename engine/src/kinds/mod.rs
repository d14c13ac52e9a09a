//! Builtin kind schemas, one module per role.

mod data;
mod llm;
mod loss;
mod metric;
mod nn;
mod optim;
mod protocol;
mod shapes;

use mer_registry::Kind;

/// Every builtin kind.
pub fn all() -> Vec<Kind> {
    let mut v = Vec::new();
    v.extend(data::kinds());
    v.extend(nn::kinds());
    v.extend(llm::kinds());
    v.extend(loss::kinds());
    v.extend(metric::kinds());
    v.extend(optim::kinds());
    v.extend(protocol::kinds());
    v
}
