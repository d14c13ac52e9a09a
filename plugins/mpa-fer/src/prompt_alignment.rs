//! `mpa_fer.prompt_alignment`: MPA-FER's prompt-level alignment L_pa,
//! each class's soft prompt against its hard prompt after the text
//! encoder. The paper writes an L1 distance; a public re-implementation
//! uses the contrastive form instead. Both are here, L1 by default.

use crate::{diagonal_ce, same_classes, scalar, similarities};
use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::layers::unit;
use mer_registry::{
    BuildCtx, BuildError, Component, Kind, KindBuilder, Mode, Role, SeededRng, ShapeCtx,
    ShapeError, TensorType, Value,
};

const KIND: &str = "mpa_fer.prompt_alignment";

pub(crate) fn kind() -> Kind {
    KindBuilder::new(KIND, Role::Loss)
        .doc("Prompt-level alignment (MPA-FER's L_pa) of encoded soft and hard prompts: `l1`, the paper's ‖θ(t_k) − θ(t*_k)‖₁, taken on L2-normalised embeddings and averaged over classes and dimensions (the paper gives neither the scale nor the reduction: ours); or `contrastive`, the same loss as `mpa_fer.token_alignment` on the encoded prompts (a public re-implementation's reading).")
        .input("soft", "encoded soft prompts [K, P] (`clip.text.embeds` with `context` > 0)")
        .input("hard", "encoded hard prompts [K, P] (`clip.text.embeds` of the described prompts)")
        .output("loss", "scalar")
        .choice("form", &["l1", "contrastive"], Some("l1"), "The paper's L1, or the contrastive form.")
        .float("temperature", Some(0.07), Some(1e-6), None, "τ of the contrastive form (unused by `l1`): ours, as in `mpa_fer.token_alignment`.")
        .shapes(shapes)
        .factory(build)
        .example(&[("form", Value::Str("l1".into()))], &[&[3, 4], &[3, 4]])
        .build()
}

struct PromptAlignment {
    contrastive: bool,
    temperature: f64,
}

impl Component for PromptAlignment {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let soft = input(inputs, 0, KIND)?;
        let hard = input(inputs, 1, KIND)?;
        if self.contrastive {
            return Ok(vec![diagonal_ce(&similarities(
                soft,
                hard,
                self.temperature,
            )?)?]);
        }
        Ok(vec![(unit(soft)? - unit(hard)?)?.abs()?.mean_all()?])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(PromptAlignment {
        contrastive: ctx.str("form")? == "contrastive",
        temperature: ctx.float("temperature")?,
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    same_classes(c)?;
    Ok(scalar())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;

    #[test]
    fn l1_is_zero_for_equal_directions_and_the_contrastive_form_differs() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1f32, 0.], [0., 2.]], &dev).unwrap();
        let run = |contrastive: bool, b: &Tensor| {
            PromptAlignment {
                contrastive,
                temperature: 0.07,
            }
            .forward(&[a.clone(), b.clone()], Mode::Eval, &mut SeededRng::new(0))
            .unwrap()[0]
                .to_scalar::<f32>()
                .unwrap()
        };
        // Scale does not count: both rows point the same way.
        assert!(run(false, &(&a * 3.0).unwrap()) < 1e-6);
        // Orthogonal rows swapped: |1−0| + |0−1| per class, over 4 entries.
        let swapped = Tensor::new(&[[0f32, 1.], [1., 0.]], &dev).unwrap();
        assert!((run(false, &swapped) - 1.0).abs() < 1e-5);
        assert!(run(true, &swapped) > 10.0);
    }
}
