//! mer plugin `mpa_fer`: MPA-FER (Multi-granularity Prompt Alignment for
//! facial expression recognition; ICCV 2025, arXiv 2506.21017).
//!
//! Recipes enable it with `use mpa_fer`. The method sits on a frozen CLIP,
//! whose towers are mer's builtins: `clip.vision` carries the deep visual
//! prompts (`prompts = 8`) and gives the global embedding and the projected
//! patch embeddings; `clip.text` carries the soft prompts (`context = 10`,
//! CoOp) and the hard prompts with a description per class, written by a
//! real LLM (`describe`) or read from a file. This plugin adds what is
//! MPA-FER's own:
//! - `mpa_fer.cgla`: cross-modal global-local alignment, the classifier
//!   (global similarity plus the mean of the top-k patch similarities per
//!   class).
//! - `mpa_fer.token_alignment`: the contrastive loss between soft- and
//!   hard-prompt tokens (L_ta).
//! - `mpa_fer.prompt_alignment`: soft against hard prompts after the text
//!   encoder (L_pa), L1 as the paper writes it or contrastive as a public
//!   re-implementation does.
//! - `mpa_fer.prototype`: class prototypes from frozen CLIP features of the
//!   fold's training images, learnt in the runner's fit pass before
//!   training (never from a test image), and the loss pulling each prompted
//!   image feature to its class's prototype (L_v).
//!
//! What the paper leaves unknown (the logit scale, how a prompt becomes one
//! vector at token level, the L1's reduction, τ) is a parameter whose
//! default is ours; each kind's documentation says which.

mod cgla;
mod prompt_alignment;
mod prototype;
mod token_alignment;

use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::layers::{log_softmax, unit};
use mer_registry::plugin::Registrar;
use mer_registry::{export_plugin, ShapeCtx, ShapeError, TensorType};

/// Registers this plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {
    r.kind(cgla::kind());
    r.kind(token_alignment::kind());
    r.kind(prompt_alignment::kind());
    r.kind(prototype::kind());
}

export_plugin!("mpa_fer", register);

/// A shape error that names the kind.
fn fail(c: &ShapeCtx, message: String) -> ShapeError {
    ShapeError::new(format!("`{}`: {message}", c.kind))
}

/// Both inputs are `[K, W]` of one width: the same classes, one space.
fn same_classes(c: &ShapeCtx) -> Result<(), ShapeError> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    if a.rank() != 2 || b.rank() != 2 {
        return Err(fail(
            c,
            format!("needs two [K, W] class tables; got {a} and {b}"),
        ));
    }
    for d in 0..2 {
        if let (Some(x), Some(y)) = (a.dims[d].size(), b.dims[d].size()) {
            if x != y {
                let what = if d == 0 { "classes" } else { "wide" };
                return Err(fail(
                    c,
                    format!(
                        "`{}` is {x} {what}, `{}` {y}: both must describe the same classes in the same space",
                        c.source(0),
                        c.source(1)
                    ),
                )
                .at_input(1));
            }
        }
    }
    Ok(())
}

/// The contrastive loss over classes: row `d` of `m` holds the
/// similarities of hard prompt `d` to every soft prompt, divided by τ;
/// each row's own class is the target.
fn diagonal_ce(m: &Tensor) -> CResult<Tensor> {
    let k = m.dim(0)?;
    let lp = log_softmax(m)?;
    let eye = Tensor::eye(k, lp.dtype(), lp.device())?;
    (lp.mul(&eye)?.sum_all()? / -(k as f64))?.reshape(())
}

/// `cos(hard_d, soft_j) / τ` for every pair: `[K, K]`.
fn similarities(soft: &Tensor, hard: &Tensor, temperature: f64) -> CResult<Tensor> {
    unit(hard)?.matmul(&unit(soft)?.t()?)? / temperature
}

/// The scalar type every loss returns.
fn scalar() -> Vec<TensorType> {
    vec![TensorType::f32(vec![], mer_registry::Semantic::Scalar)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::Registry;

    pub(crate) fn registry() -> Registry {
        let mut reg = Registry::new();
        reg.add_static_plugin("mpa_fer", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        reg
    }

    #[test]
    fn every_kind_passes_gradcheck() {
        let reg = registry();
        for name in [
            "mpa_fer.cgla",
            "mpa_fer.token_alignment",
            "mpa_fer.prompt_alignment",
            "mpa_fer.prototype",
        ] {
            let k = reg.get(name).unwrap();
            let ex = k.example.as_ref().unwrap();
            let params = k.example_params().unwrap();
            let report = mer_registry::gradcheck::gradcheck(k, &params, &ex.inputs, 3).unwrap();
            assert!(report.ok(), "{name}: {report:?}");
            assert!(!report.checked.is_empty(), "{name}: nothing checked");
        }
    }

    #[test]
    fn the_contrastive_loss_is_low_when_each_hard_prompt_finds_its_soft_one() {
        let dev = mer_registry::candle::Device::Cpu;
        let eye = Tensor::eye(3, mer_registry::candle::DType::F32, &dev).unwrap();
        let matched = diagonal_ce(&similarities(&eye, &eye, 0.07).unwrap()).unwrap();
        let swapped = Tensor::new(&[[0f32, 1., 0.], [1., 0., 0.], [0., 0., 1.]], &dev).unwrap();
        let crossed = diagonal_ce(&similarities(&swapped, &eye, 0.07).unwrap()).unwrap();
        let (m, c) = (
            matched.to_scalar::<f32>().unwrap(),
            crossed.to_scalar::<f32>().unwrap(),
        );
        // ln(1 + 2·e^(−1/0.07)) ≈ 1.2e-6 when matched.
        assert!(m < 1e-5, "{m}");
        // Two of three rows point at the wrong class: ≈ (2/3)·(1/0.07).
        assert!((c - 2.0 / 3.0 / 0.07).abs() < 1e-3, "{c}");
    }
}
