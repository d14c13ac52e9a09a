//! ViT patch (`nn.patch_embed`) and VideoMAE tubelet (`nn.tubelet_embed`)
//! embeddings: a convolution with kernel = stride, flattened to tokens, plus
//! learned positions and an optional class token.

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    vec![
        unary(
            "nn.patch_embed",
            "ViT patch embedding of images [B, C, H, W] → tokens [B, N, D].",
        )
        .int("patch", Some(16), Some(1), "Patch size.")
        .int("dim", None, Some(1), "Token width.")
        .bool("cls_token", true, "Prepend a learnable class token.")
        .shapes(patch_embed)
        .factory(build_patch_embed)
        .example(
            &[("patch", Value::Int(2)), ("dim", Value::Int(4))],
            &[&[2, 3, 4, 4]],
        )
        .build(),
        unary(
            "nn.tubelet_embed",
            "Video tubelet embedding [B, C, T, H, W] → tokens [B, N, D] (VideoMAE style).",
        )
        .ints("tubelet", Some(&[2, 16, 16]), Some(1), "Tubelet [t, h, w].")
        .int("dim", None, Some(1), "Token width.")
        .shapes(tubelet_embed)
        .factory(build_tubelet_embed)
        .example(
            &[
                (
                    "tubelet",
                    Value::List(vec![Value::Int(2), Value::Int(2), Value::Int(2)]),
                ),
                ("dim", Value::Int(4)),
            ],
            &[&[1, 2, 4, 4, 4]],
        )
        .build(),
    ]
}

fn patches(c: &ShapeCtx, along: &[(&Dim, i64, &str)]) -> Result<Dim, ShapeError> {
    let mut n = Dim::Size(1);
    for (d, p, axis) in along {
        let k = match d {
            Dim::Size(x) => {
                if (*x as i64) < *p || *p <= 0 {
                    return Err(ShapeError::new(format!(
                        "`{}`: patch {p} is larger than the {axis} size {x} of `{}`",
                        c.kind,
                        c.source(0)
                    ))
                    .at_input(0));
                }
                Dim::Size(*x / *p as usize)
            }
            Dim::Sym(s) => Dim::Sym(format!("{s}/{p}")),
        };
        n = n.mul(&k);
    }
    Ok(n)
}

fn patch_embed(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 4, "images [B, C, H, W]")?;
    let p = c.int("patch").unwrap_or(16);
    let mut n = patches(c, &[(&t.dims[2], p, "height"), (&t.dims[3], p, "width")])?;
    if c.bool("cls_token").unwrap_or(false) {
        n = n.add(&Dim::Size(1));
    }
    Ok(vec![TensorType::f32(
        vec![t.dims[0].clone(), n, sz(c.int("dim").unwrap_or(1))],
        Semantic::Tokens,
    )])
}

fn tubelet_embed(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 5, "clips [B, C, T, H, W]")?;
    let k = c.ints("tubelet");
    let g = |i: usize| *k.get(i).unwrap_or(&1);
    let n = patches(
        c,
        &[
            (&t.dims[2], g(0), "time"),
            (&t.dims[3], g(1), "height"),
            (&t.dims[4], g(2), "width"),
        ],
    )?;
    Ok(vec![TensorType::f32(
        vec![t.dims[0].clone(), n, sz(c.int("dim").unwrap_or(1))],
        Semantic::Tokens,
    )])
}

/// ViT patch / VideoMAE tubelet embedding: a convolution with kernel =
/// stride, flattened to tokens, plus learned positions (and a class token).
struct Embed {
    conv: Conv,
    cls: Option<Tensor>,
    pos: Tensor,
}

impl Component for Embed {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let y = self.conv.forward(inputs, mode, rng)?.remove(0); // [B, D, ...]
        let (b, d) = (y.dim(0)?, y.dim(1)?);
        let mut t = y.flatten_from(2)?.transpose(1, 2)?; // [B, N, D]
        if let Some(c) = &self.cls {
            t = Tensor::cat(&[c.broadcast_as((b, 1, d))?, t], 1)?;
        }
        Ok(vec![t.broadcast_add(&self.pos)?])
    }
}

fn build_embed(
    ctx: &mut BuildCtx,
    kernel: Vec<usize>,
    cls: bool,
) -> Result<Box<dyn Component>, BuildError> {
    let dims = input_dims(ctx, 0)?;
    let c = *dims
        .first()
        .ok_or_else(|| BuildError(format!("`{}` needs a channel dimension", ctx.kind)))?;
    let dim = ctx.usize("dim")?;
    let spatial = &dims[1..];
    if spatial.len() != kernel.len() || spatial.iter().zip(&kernel).any(|(s, k)| *k == 0 || s < k) {
        return Err(BuildError(format!(
            "`{}`: patch {kernel:?} does not fit input {spatial:?}",
            ctx.kind
        )));
    }
    let n: usize = spatial
        .iter()
        .zip(&kernel)
        .map(|(s, k)| s / k)
        .product::<usize>()
        + usize::from(cls);
    let fan_in = c * kernel.iter().product::<usize>();
    let mut wshape = vec![dim, c];
    wshape.extend(&kernel);
    let w = ctx.param("proj.weight", &wshape, Init::KaimingUniform { fan_in })?;
    let b = Some(ctx.param("proj.bias", &[dim], Init::Zeros)?);
    let temporal = (kernel.len() == 3).then(|| (kernel[0], kernel[0], 0));
    let stride = *kernel.last().unwrap_or(&1);
    if kernel.len() >= 2 && kernel[kernel.len() - 2] != stride {
        return Err(BuildError(format!(
            "`{}`: candle needs square spatial patches, got {kernel:?}",
            ctx.kind
        )));
    }
    let conv = Conv {
        w,
        b,
        stride,
        padding: 0,
        groups: 1,
        temporal,
    };
    let cls = if cls {
        Some(ctx.param("cls", &[1, 1, dim], Init::Normal(0.02))?)
    } else {
        None
    };
    let pos = ctx.param("pos", &[1, n, dim], Init::Normal(0.02))?;
    Ok(Box::new(Embed { conv, cls, pos }))
}

fn build_patch_embed(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let p = ctx.usize("patch")?;
    let cls = ctx.bool("cls_token")?;
    build_embed(ctx, vec![p, p], cls)
}

fn build_tubelet_embed(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let k = ints(ctx, "tubelet")?;
    build_embed(ctx, k, false)
}
