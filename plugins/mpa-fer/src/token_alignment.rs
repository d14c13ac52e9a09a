//! `mpa_fer.token_alignment`: MPA-FER's token-level alignment L_ta, a
//! contrastive loss pulling each class's soft prompt towards the hard
//! prompt of the same class and away from the others', at the level of the
//! input word embeddings.

use crate::{diagonal_ce, same_classes, scalar, similarities};
use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::{
    BuildCtx, BuildError, Component, Kind, KindBuilder, Mode, Role, SeededRng, ShapeCtx,
    ShapeError, TensorType, Value,
};

const KIND: &str = "mpa_fer.token_alignment";

pub(crate) fn kind() -> Kind {
    KindBuilder::new(KIND, Role::Loss)
        .doc("Token-level alignment (MPA-FER's L_ta): −mean_d log softmax_j(cos(soft_j, hard_d) / τ)[d], over the K classes. Each prompt is one vector: its word embeddings averaged (`clip.text.words`); the paper does not say how it pools, a public re-implementation averages: ours.")
        .input("soft", "soft-prompt tokens per class [K, D] (`clip.text.words` with `context` > 0)")
        .input("hard", "hard-prompt tokens per class [K, D] (`clip.text.words` of the described prompts)")
        .output("loss", "scalar")
        .float("temperature", Some(0.07), Some(1e-6), None, "τ: the paper does not state it; 0.07 is CLIP's initial value (a re-implementation reports 0.01 diverging): ours.")
        .shapes(shapes)
        .factory(build)
        .example(&[("temperature", Value::Float(0.5))], &[&[3, 4], &[3, 4]])
        .build()
}

struct TokenAlignment {
    temperature: f64,
}

impl Component for TokenAlignment {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let soft = input(inputs, 0, KIND)?;
        let hard = input(inputs, 1, KIND)?;
        Ok(vec![diagonal_ce(&similarities(
            soft,
            hard,
            self.temperature,
        )?)?])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(TokenAlignment {
        temperature: ctx.float("temperature")?,
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    same_classes(c)?;
    Ok(scalar())
}
