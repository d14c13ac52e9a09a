//! `siglip.vision`: SigLIP's image tower (`SiglipVisionModel`, or the vision
//! half of a `SiglipModel`), frozen, pooled by its multi-head attention
//! probe; DEFT-LLM reads flow images through it. The tower is
//! [`VisionTower`] in SigLIP's layout: patch convolution with a bias, no
//! CLS token and no pre-layernorm.

use super::clip_vision::{build_tower, tower_shapes, Family};
use super::*;
use mer_registry::{
    BuildCtx, Component, KindBuilder, ParamType, Role, ShapeCtx, ShapeError, TensorType, Value,
};

pub(super) fn kind() -> Kind {
    KindBuilder::new("siglip.vision", Role::Component)
        .doc("SigLIP's image tower from a Hugging Face folder (SiglipVisionModel or SiglipModel), frozen, pooled by its attention probe (MAP head). Images [B, C, H, W] at the checkpoint's size (C = 1 is repeated to RGB), or clips [B, C, T, H, W] frame by frame. Deep visual prompts are its trainable parameters.")
        .input("images", "images [B, C, H, W] in [0, 1] (or already normalised: `normalize = \"none\"`), or clips [B, C, T, H, W]")
        .output("pooled", "the attention-pooled embedding [B, D] (pooler_output; SigLIP's image embedding)")
        .output("tokens", "hidden states of layer `layer` [B, N, D] (no CLS token in SigLIP)")
        .path("weights", None, "Hugging Face folder (config.json + model.safetensors).")
        .int("layer", Some(-1), None, "Which hidden state `tokens` returns: 0 = the embeddings, k = after layer k, negative counts from the end.")
        .choice("normalize", &["siglip", "none"], Some("siglip"), "Pixel preprocessing: `siglip` maps [0, 1] inputs to [-1, 1] (mean = std = 0.5); `none` takes inputs already normalised.")
        .int("prompts", Some(0), Some(0), "Deep visual prompt tokens per layer (VPT-deep); 0 = none.")
        .param("prompt_layers", ParamType::Optional(Box::new(ParamType::Int { min: Some(1), max: None })), Some(Value::None), "How many of the first layers get prompts; none = every layer.")
        .shapes(shapes)
        .factory(build)
        .pretrained()
        .build()
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_tower(ctx, Family::Siglip, "siglip.vision")
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    tower_shapes(c, Family::Siglip)
}

/// SigLIP's multi-head attention pooling: a learnt probe token attends to
/// the final hidden states (torch `nn.MultiheadAttention`, q/k/v stacked
/// in `in_proj_weight`), then a residual MLP.
pub(crate) struct MapHead {
    probe: Tensor,
    q: Frozen,
    k: Frozen,
    v: Frozen,
    o: Frozen,
    norm: LayerNorm,
    fc1: Frozen,
    fc2: Frozen,
    heads: usize,
    act: Act,
}

impl MapHead {
    pub(crate) fn load(
        ck: &mut Checkpoint,
        prefix: &str,
        s: &Shape,
    ) -> Result<MapHead, BuildError> {
        let d = s.hidden;
        let probe = ck.take(&format!("{prefix}.probe"), &[1, 1, d])?;
        let w = ck.take(&format!("{prefix}.attention.in_proj_weight"), &[3 * d, d])?;
        let b = ck.take(&format!("{prefix}.attention.in_proj_bias"), &[3 * d])?;
        let part = |i: usize| -> Result<Frozen, BuildError> {
            Ok(Frozen {
                w: w.narrow(0, i * d, d)?.t()?.contiguous()?,
                b: Some(b.narrow(0, i * d, d)?.contiguous()?),
            })
        };
        Ok(MapHead {
            probe,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            o: ck.linear(&format!("{prefix}.attention.out_proj"), d, d, true)?,
            norm: ck.norm(&format!("{prefix}.layernorm"), d, s.eps)?,
            fc1: ck.linear(&format!("{prefix}.mlp.fc1"), d, s.intermediate, true)?,
            fc2: ck.linear(&format!("{prefix}.mlp.fc2"), s.intermediate, d, true)?,
            heads: s.heads,
            act: s.act,
        })
    }

    /// `[B, N, D]` → `[B, D]`.
    pub(crate) fn apply(&self, h: &Tensor) -> CResult<Tensor> {
        let (b, n, d) = h.dims3()?;
        let hd = d / self.heads;
        let heads = |t: Tensor, len: usize| -> CResult<Tensor> {
            t.reshape((b, len, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let probe = self.probe.repeat((b, 1, 1))?;
        let q = heads(self.q.apply(&probe)?, 1)?;
        let k = heads(self.k.apply(h)?, n)?;
        let v = heads(self.v.apply(h)?, n)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let a = softmax(&scores)?
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, 1, d))?;
        let a = self.o.apply(&a)?;
        let m = self
            .fc2
            .apply(&self.act.apply(&self.fc1.apply(&self.norm.apply(&a)?)?)?)?;
        (a + m)?.squeeze(1)
    }
}
