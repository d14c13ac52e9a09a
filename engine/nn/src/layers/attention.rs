//! Multi-head attention (`nn.attention`, `nn.cross_attention`) and pre-norm
//! transformer blocks (`nn.transformer_encoder`, `nn.transformer_decoder`).

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    vec![
        unary("nn.attention", "Multi-head self-attention with an optional mask.")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Attention dropout.")
            .bool("causal", false, "Mask future positions.")
            .shapes(self_attention)
            .factory(build_attention)
            .example(&[("heads", Value::Int(2)), ("causal", Value::Bool(true))], &[&[2, 3, 4]])
            .build(),
        KindBuilder::new("nn.cross_attention", Role::Component)
            .doc("Multi-head cross-attention: queries attend to a context sequence.")
            .input("query", "queries [B, Nq, D]")
            .input("context", "keys and values [B, Nk, Dk]")
            .optional_input("mask", "additive attention bias [B, Nq, Nk]")
            .output("out", "attended queries [B, Nq, D]")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Attention dropout.")
            .shapes(cross_attention)
            .factory(build_cross_attention)
            .example(&[("heads", Value::Int(2))], &[&[2, 3, 4], &[2, 5, 6]])
            .build(),
        unary("nn.transformer_encoder", "Pre-norm transformer encoder blocks (self-attention + MLP).")
            .param("layers", ParamType::Int { min: Some(1), max: Some(1024) }, None, "Number of blocks (at most 1024).")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("mlp_ratio", Some(4.0), Some(0.0), None, "MLP width relative to the model width.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Dropout.")
            .shapes(self_attention)
            .factory(build_encoder)
            .example(&[("layers", Value::Int(1)), ("heads", Value::Int(2)), ("mlp_ratio", Value::Float(2.0))], &[&[2, 3, 4]])
            .build(),
        KindBuilder::new("nn.transformer_decoder", Role::Component)
            .doc("Pre-norm transformer decoder blocks: optional self-attention, cross-attention to `memory`, MLP.")
            .input("query", "decoder input [B, N, D]")
            .input("memory", "encoder output [B, M, D]")
            .output("out", "decoded sequence [B, N, D]")
            .param("layers", ParamType::Int { min: Some(1), max: Some(1024) }, None, "Number of blocks (at most 1024).")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("mlp_ratio", Some(4.0), Some(0.0), None, "MLP width relative to the model width.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Dropout.")
            .bool("self_attention", true, "Include self-attention in each block.")
            .shapes(decoder)
            .factory(build_decoder)
            .example(&[("layers", Value::Int(1)), ("heads", Value::Int(2)), ("mlp_ratio", Value::Float(2.0))], &[&[2, 3, 4], &[2, 5, 4]])
            .build(),
    ]
}

fn heads_divide(c: &ShapeCtx, t: &TensorType, i: usize) -> Result<(), ShapeError> {
    let heads = c.usize("heads").unwrap_or(1).max(1);
    if let Some(d) = t.last().and_then(Dim::size) {
        if d % heads != 0 {
            return Err(ShapeError::new(format!(
                "`{}`: width {d} of `{}` does not split into {heads} heads",
                c.kind,
                c.source(i)
            ))
            .at_input(i)
            .help(format!("use a head count that divides {d}")));
        }
    }
    Ok(())
}

fn self_attention(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 3, "tokens [B, N, D]")?;
    heads_divide(c, t, 0)?;
    Ok(vec![TensorType::f32(t.dims.clone(), Semantic::Tokens)])
}

fn cross_attention(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let q = c.expect_rank(0, 3, "queries [B, Nq, D]")?;
    c.expect_rank(1, 3, "context [B, Nk, D]")?;
    heads_divide(c, q, 0)?;
    Ok(vec![TensorType::f32(q.dims.clone(), Semantic::Tokens)])
}

fn decoder(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let q = c.expect_rank(0, 3, "queries [B, N, D]")?;
    let m = c.expect_rank(1, 3, "memory [B, M, D]")?;
    if let (Some(a), Some(b)) = (q.last(), m.last()) {
        if !a.compatible(b) {
            return Err(ShapeError::new(format!(
                "`{}`: query width {a} (`{}`) differs from memory width {b} (`{}`)",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(1));
        }
    }
    heads_divide(c, q, 0)?;
    Ok(vec![TensorType::f32(q.dims.clone(), Semantic::Tokens)])
}

/// Multi-head attention with the model width split evenly over heads.
fn mha(
    ctx: &mut BuildCtx,
    prefix: &str,
    d: usize,
    d_ctx: usize,
    heads: usize,
    p: f64,
    causal: bool,
) -> Result<Attention, BuildError> {
    let head_dim = Attention::split_width(ctx.kind, d, heads)?;
    let mut a = Attention::new(ctx, prefix, d, d_ctx, heads, head_dim)?;
    a.dropout = p;
    a.causal = causal;
    Ok(a)
}

struct SelfAttention(Attention);

impl Component for SelfAttention {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.attention")?;
        Ok(vec![self.0.apply(x, x, None, mode, rng)?])
    }
}

fn build_attention(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let (h, p, causal) = (
        ctx.usize("heads")?,
        ctx.float("dropout")?,
        ctx.bool("causal")?,
    );
    Ok(Box::new(SelfAttention(mha(ctx, "", d, d, h, p, causal)?)))
}

struct CrossAttention(Attention);

impl Component for CrossAttention {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let q = input(inputs, 0, "nn.cross_attention")?;
        let c = input(inputs, 1, "nn.cross_attention")?;
        Ok(vec![self.0.apply(q, c, inputs.get(2), mode, rng)?])
    }
}

fn build_cross_attention(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let dc = ctx.input_width(1)?;
    let (h, p) = (ctx.usize("heads")?, ctx.float("dropout")?);
    Ok(Box::new(CrossAttention(mha(ctx, "", d, dc, h, p, false)?)))
}

/// One pre-norm block: [self-attention], [cross-attention], MLP.
struct Block {
    norms: Vec<LayerNorm>,
    self_attn: Option<Attention>,
    cross: Option<Attention>,
    fc1: Linear,
    fc2: Linear,
    p: f64,
}

fn layer_norm(ctx: &mut BuildCtx, prefix: &str, d: usize) -> Result<LayerNorm, BuildError> {
    LayerNorm::new(ctx, prefix, d, 1e-5)
}

impl Block {
    fn norm(&self, i: usize, x: &Tensor) -> CResult<Tensor> {
        self.norms[i].apply(x)
    }

    fn apply(
        &self,
        x: &Tensor,
        memory: Option<&Tensor>,
        mode: Mode,
        rng: &mut SeededRng,
    ) -> CResult<Tensor> {
        let mut x = x.clone();
        let mut i = 0;
        if let Some(a) = &self.self_attn {
            let h = self.norm(i, &x)?;
            x = (&x + dropout(&a.apply(&h, &h, None, mode, rng)?, self.p, false, mode, rng)?)?;
            i += 1;
        }
        if let (Some(c), Some(m)) = (&self.cross, memory) {
            let h = self.norm(i, &x)?;
            x = (&x + dropout(&c.apply(&h, m, None, mode, rng)?, self.p, false, mode, rng)?)?;
            i += 1;
        }
        let h = self.norm(i, &x)?;
        let h = dropout(&self.fc1.apply(&h)?.gelu_erf()?, self.p, false, mode, rng)?;
        &x + dropout(&self.fc2.apply(&h)?, self.p, false, mode, rng)?
    }
}

struct Transformer {
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    decoder: bool,
}

impl Component for Transformer {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let mut x = input(inputs, 0, "nn.transformer")?.clone();
        let memory = if self.decoder {
            Some(input(inputs, 1, "nn.transformer_decoder")?)
        } else {
            None
        };
        for b in &self.blocks {
            x = b.apply(&x, memory, mode, rng)?;
        }
        Ok(vec![self.final_norm.apply(&x)?])
    }
}

fn build_transformer(ctx: &mut BuildCtx, decoder: bool) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let dm = if decoder { ctx.input_width(1)? } else { d };
    let layers = ctx.usize("layers")?;
    let heads = ctx.usize("heads")?;
    let hidden = ((d as f64) * ctx.float("mlp_ratio")?).round().max(1.0) as usize;
    let p = ctx.float("dropout")?;
    let with_self = !decoder || ctx.bool("self_attention")?;
    let mut blocks = Vec::new();
    for l in 0..layers {
        let pre = format!("{l}.");
        let mut norms = Vec::new();
        let self_attn = if with_self {
            norms.push(layer_norm(ctx, &format!("{pre}norm_self."), d)?);
            Some(mha(ctx, &format!("{pre}self."), d, d, heads, p, false)?)
        } else {
            None
        };
        let cross = if decoder {
            norms.push(layer_norm(ctx, &format!("{pre}norm_cross."), d)?);
            Some(mha(ctx, &format!("{pre}cross."), d, dm, heads, p, false)?)
        } else {
            None
        };
        norms.push(layer_norm(ctx, &format!("{pre}norm_mlp."), d)?);
        blocks.push(Block {
            norms,
            self_attn,
            cross,
            fc1: Linear::new(ctx, &format!("{pre}fc1."), d, hidden, true)?,
            fc2: Linear::new(ctx, &format!("{pre}fc2."), hidden, d, true)?,
            p,
        });
    }
    let final_norm = layer_norm(ctx, "norm.", d)?;
    Ok(Box::new(Transformer {
        blocks,
        final_norm,
        decoder,
    }))
}

fn build_encoder(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_transformer(ctx, false)
}

fn build_decoder(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_transformer(ctx, true)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn causal_attention_never_looks_ahead() {
        let (att, _) = build(
            "nn.attention",
            &[("heads", Value::Int(2)), ("causal", Value::Bool(true))],
            &[1, 4, 6],
        );
        let x = randn(&[1, 4, 6], 4);
        let mut v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        for e in v.iter_mut().skip(2 * 6) {
            *e += 3.0; // change positions 2 and 3 only
        }
        let x2 = Tensor::from_vec(v, (1, 4, 6), &Device::Cpu).unwrap();
        let run = |x: &Tensor| {
            att.forward(std::slice::from_ref(x), Mode::Eval, &mut SeededRng::new(0))
                .unwrap()
                .remove(0)
        };
        let (a, b) = (run(&x), run(&x2));
        let early = (a.narrow(1, 0, 2).unwrap() - b.narrow(1, 0, 2).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let late = (a.narrow(1, 2, 2).unwrap() - b.narrow(1, 2, 2).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(early < 1e-6, "positions 0-1 saw the future: {early}");
        assert!(late > 1e-3);
    }
}
