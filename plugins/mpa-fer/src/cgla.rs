//! `mpa_fer.cgla`: cross-modal global-local alignment, MPA-FER's
//! classifier: `s_d = scale · (cos(z_g, t_d) + mean of the top-k cos(z_i, t_d))`,
//! the top k patches chosen per class. With `topk = 0` it is CLIP's
//! zero-shot head (the "no CGLA" row of the ablation).

use crate::fail;
use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::layers::unit;
use mer_registry::{
    BuildCtx, BuildError, Component, ExampleInput, Kind, KindBuilder, Mode, Role, SeededRng,
    Semantic, ShapeCtx, ShapeError, TensorType, Value,
};

const KIND: &str = "mpa_fer.cgla";

pub(crate) fn kind() -> Kind {
    KindBuilder::new(KIND, Role::Component)
        .doc("Cross-modal global-local alignment (MPA-FER): class logits from the global image embedding's cosine with each class embedding plus the mean cosine of that class's k most similar patches, times `scale`. The patches come from `clip.vision.patches` (post-layernorm and projection applied to each patch: how patches reach the joint space is not stated in the paper; this is MaskCLIP's reading, ours).")
        .input("global", "global image embeddings [B, P] (`clip.vision.embeds`)")
        .input("patches", "patch embeddings in the same space [B, N, P] (`clip.vision.patches`)")
        .input("classes", "class embeddings [K, P] (`clip.text.embeds`)")
        .output("logits", "class logits [B, K]")
        .int("topk", Some(16), Some(0), "Patches per class in the local term (MPA-FER: 16); 0 = the global term alone.")
        .float("scale", Some(100.0), Some(0.0), None, "Logit scale (CLIP's exp(logit_scale), 100 in OpenAI's checkpoints); MPA-FER does not state its own: ours.")
        .shapes(shapes)
        .factory(build)
        .example_inputs(
            &[("topk", Value::Int(2)), ("scale", Value::Float(5.0))],
            vec![
                ExampleInput::Features(vec![2, 4]),
                ExampleInput::Features(vec![2, 5, 4]),
                ExampleInput::Features(vec![3, 4]),
            ],
        )
        .build()
}

struct Cgla {
    topk: usize,
    scale: f64,
}

impl Component for Cgla {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let g = unit(input(inputs, 0, KIND)?)?;
        let patches = unit(input(inputs, 1, KIND)?)?;
        let t = unit(input(inputs, 2, KIND)?)?;
        let global = g.matmul(&t.t()?)?;
        if self.topk == 0 {
            return Ok(vec![(global * self.scale)?]);
        }
        let (b, n, p) = patches.dims3()?;
        if self.topk > n {
            mer_registry::candle::bail!("{KIND}: topk = {} but there are {n} patches", self.topk);
        }
        let k = t.dim(0)?;
        // [B, N, K] → [B, K, N]: each class ranks the patches.
        let local = patches
            .reshape((b * n, p))?
            .matmul(&t.t()?)?
            .reshape((b, n, k))?
            .transpose(1, 2)?
            .contiguous()?;
        // The choice of patches is not differentiated (as torch.topk's
        // indices are not); the chosen similarities are.
        let order = local.detach().arg_sort_last_dim(false)?;
        let top = order.narrow(2, 0, self.topk)?.contiguous()?;
        let mean = local.gather(&top, 2)?.mean(2)?;
        Ok(vec![((global + mean)? * self.scale)?])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Cgla {
        topk: ctx.usize("topk")?,
        scale: ctx.float("scale")?,
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (g, p, t) = (c.input(0)?, c.input(1)?, c.input(2)?);
    if g.rank() != 2 || p.rank() != 3 || t.rank() != 2 {
        return Err(fail(
            c,
            format!(
                "needs global [B, P], patches [B, N, P] and classes [K, P]; got {g}, {p} and {t}"
            ),
        ));
    }
    let widths = [g.dims[1].size(), p.dims[2].size(), t.dims[1].size()];
    let known: Vec<usize> = widths.iter().flatten().copied().collect();
    if known.windows(2).any(|w| w[0] != w[1]) {
        return Err(fail(
            c,
            format!(
                "widths differ (global {}, patches {}, classes {}): all three must be in CLIP's joint space",
                g.dims[1], p.dims[2], t.dims[1]
            ),
        ));
    }
    if let (Some(k), Some(n)) = (c.usize("topk"), p.dims[1].size()) {
        if k > n {
            return Err(fail(
                c,
                format!("topk = {k} but `{}` has {n} patches", c.source(1)),
            ));
        }
    }
    Ok(vec![TensorType::f32(
        vec![g.dims[0].clone(), t.dims[0].clone()],
        Semantic::Features,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::Dim;

    /// One image, two classes, three patches: the logits by hand.
    #[test]
    fn logits_are_global_plus_the_mean_of_the_top_patches() {
        let dev = Device::Cpu;
        let g = Tensor::new(&[[1f32, 0.]], &dev).unwrap();
        // Patch cosines with class 0 (x axis): 1, 0, −1; with class 1: 0, 1, 0.
        let p = Tensor::new(&[[[2f32, 0.], [0., 3.], [-1., 0.]]], &dev).unwrap();
        let t = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap();
        let c = Cgla {
            topk: 2,
            scale: 10.0,
        };
        let y = c
            .forward(
                &[g.clone(), p.clone(), t.clone()],
                Mode::Eval,
                &mut SeededRng::new(0),
            )
            .unwrap()[0]
            .to_vec2::<f32>()
            .unwrap();
        // Class 0: 1 + (1 + 0)/2; class 1: 0 + (1 + 0)/2.
        assert!(
            (y[0][0] - 15.0).abs() < 1e-4 && (y[0][1] - 5.0).abs() < 1e-4,
            "{y:?}"
        );
        let zs = Cgla {
            topk: 0,
            scale: 10.0,
        }
        .forward(&[g, p, t], Mode::Eval, &mut SeededRng::new(0))
        .unwrap()[0]
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(zs, vec![vec![10.0, 0.0]]);
    }

    #[test]
    fn more_patches_than_the_image_has_is_a_checker_error() {
        let reg = crate::tests::registry();
        let k = reg.get(KIND).unwrap();
        let mut params = k.example_params().unwrap();
        params.insert("topk".into(), Value::Int(16));
        let f = |d: Vec<usize>| TensorType::features(d.into_iter().map(Dim::Size).collect());
        let inputs = [f(vec![2, 8]), f(vec![2, 4, 8]), f(vec![7, 8])];
        let sources = [
            "v.embeds".to_string(),
            "v.patches".into(),
            "t.embeds".into(),
        ];
        let e = (k.shapes.unwrap())(&ShapeCtx {
            kind: KIND,
            params: &params,
            inputs: &inputs,
            sources: &sources,
        })
        .unwrap_err();
        assert!(
            e.message
                .contains("topk = 16 but `v.patches` has 4 patches"),
            "{}",
            e.message
        );
    }
}
