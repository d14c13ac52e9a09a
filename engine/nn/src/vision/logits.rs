//! `clip.logits`: CLIP's classifier head, `scale · cos(image, class)`:
//! zero-shot classification when the class embeddings come from
//! `clip.text`, prompt learning when those carry learnt context.

use super::*;
use mer_registry::component::input;
use mer_registry::{
    BuildCtx, Component, Dim, ExampleInput, KindBuilder, Mode, Role, SeededRng, Semantic, ShapeCtx,
    ShapeError, TensorType, Value,
};

pub(super) fn kind() -> Kind {
    KindBuilder::new("clip.logits", Role::Component)
        .doc("Scaled cosine similarity of image embeddings [B, P] with class embeddings [K, P]: class logits [B, K], as CLIP classifies zero-shot.")
        .input("image", "image embeddings [B, P] (`clip.vision.embeds`)")
        .input("classes", "class embeddings [K, P] (`clip.text.embeds`)")
        .output("out", "class logits [B, K]")
        .float("scale", Some(100.0), Some(0.0), None, "Logit scale: CLIP's learnt exp(logit_scale), 100 in OpenAI's checkpoints.")
        .shapes(shapes)
        .factory(build)
        .example_inputs(
            &[("scale", Value::Float(10.0))],
            vec![ExampleInput::Features(vec![2, 4]), ExampleInput::Features(vec![3, 4])],
        )
        .build()
}

struct Logits {
    scale: f64,
}

impl Component for Logits {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let img = unit(input(inputs, 0, "clip.logits")?)?;
        let cls = unit(input(inputs, 1, "clip.logits")?)?;
        Ok(vec![(img.matmul(&cls.t()?)? * self.scale)?])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Logits {
        scale: ctx.float("scale")?,
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (img, cls) = (c.input(0)?, c.input(1)?);
    if img.rank() != 2 || cls.rank() != 2 {
        return Err(fail(
            c,
            format!(
                "needs image embeddings [B, P] and class embeddings [K, P]; got ranks {} and {}",
                img.rank(),
                cls.rank()
            ),
        ));
    }
    if let (Some(a), Some(b)) = (img.dims[1].size(), cls.dims[1].size()) {
        if a != b {
            return Err(fail(c, format!(
                "image embeddings are {a} wide, class embeddings {b}: both must come from the same CLIP"
            )));
        }
    }
    let k: Dim = cls.dims[0].clone();
    Ok(vec![TensorType::f32(
        vec![img.dims[0].clone(), k],
        Semantic::Features,
    )])
}
