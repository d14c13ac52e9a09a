//! Gradient-safe building blocks for components.
//!
//! candle-nn's fused `layer_norm`, `rms_norm` and `softmax_last_dim` record
//! no backward pass: a component built on them trains nothing upstream of
//! the fused op, silently. Everything here is written from primitive ops
//! that do record their backward pass, and is gradient-checked through the
//! builtin kinds that use it (`nn.linear`, `nn.layernorm`, `nn.attention`,
//! ...). Plugin authors compose their components from these instead of
//! reaching for `candle_nn` layers.
//!
//! Every layer creates its parameters through a [`BuildCtx`] under a name
//! prefix (`"0.fc1."` gives `<node>.0.fc1.weight`), so parameters are seeded
//! per name and saved in checkpoints by name. Weights are stored as
//! `[in, out]`: PyTorch checkpoints hold `[out, in]` and are transposed by
//! [`Linear::from_torch`].

use crate::component::{BuildCtx, BuildError, Init, Mode};
use crate::rng::SeededRng;
use candle_core::{Tensor, D};

type CResult<T> = candle_core::Result<T>;

/// An affine map over the last dimension, `y = x·W + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[in, out]`.
    pub weight: Tensor,
    /// `[out]`, absent for bias-free projections.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Creates `<prefix>weight` (Kaiming-uniform, as PyTorch) and, when
    /// `bias`, `<prefix>bias` (uniform ±1/√in, as PyTorch).
    pub fn new(
        ctx: &mut BuildCtx,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self, BuildError> {
        let weight = ctx.param(
            &format!("{prefix}weight"),
            &[d_in, d_out],
            Init::KaimingUniform { fan_in: d_in },
        )?;
        let bias = if bias {
            Some(ctx.param(
                &format!("{prefix}bias"),
                &[d_out],
                Init::Uniform(1.0 / (d_in.max(1) as f32).sqrt()),
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Creates the layer's parameters from a PyTorch `nn.Linear` state
    /// (`weight` `[out, in]`, `bias` `[out]`), transposed to mer's layout.
    pub fn from_torch(
        ctx: &mut BuildCtx,
        prefix: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Self, BuildError> {
        let weight = ctx.param_from(&format!("{prefix}weight"), &weight.t()?.contiguous()?)?;
        let bias = match bias {
            Some(b) => Some(ctx.param_from(&format!("{prefix}bias"), b)?),
            None => None,
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the map to `[.., in]`.
    pub fn apply(&self, x: &Tensor) -> CResult<Tensor> {
        let y = rows_matmul(x, &self.weight, |x, w| x.matmul(w))?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Layer normalisation (or RMS normalisation) over the last dimension, from
/// primitives.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Scale and shift, absent for a plain normalisation.
    pub affine: Option<(Tensor, Tensor)>,
    /// RMS norm: no centring.
    pub rms: bool,
}

impl LayerNorm {
    /// A layer norm with `<prefix>weight` (ones) and `<prefix>bias` (zeros).
    pub fn new(ctx: &mut BuildCtx, prefix: &str, d: usize, eps: f64) -> Result<Self, BuildError> {
        Ok(LayerNorm {
            eps,
            affine: Some((
                ctx.param(&format!("{prefix}weight"), &[d], Init::Ones)?,
                ctx.param(&format!("{prefix}bias"), &[d], Init::Zeros)?,
            )),
            rms: false,
        })
    }

    /// Normalises `[.., D]`.
    pub fn apply(&self, x: &Tensor) -> CResult<Tensor> {
        let y = if self.rms {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            x.broadcast_div(&(ms + self.eps)?.sqrt()?)?
        } else {
            let mean = x.mean_keepdim(D::Minus1)?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            xc.broadcast_div(&(var + self.eps)?.sqrt()?)?
        };
        match &self.affine {
            Some((g, b)) => y.broadcast_mul(g)?.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Inverted dropout driven by mer's seeded RNG: identity in eval mode.
/// `channelwise` drops whole channels (`[B, C, 1, ..]` masks).
pub fn dropout(
    x: &Tensor,
    p: f64,
    channelwise: bool,
    mode: Mode,
    rng: &mut SeededRng,
) -> CResult<Tensor> {
    if mode == Mode::Eval || p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    let mask_dims: Vec<usize> = if channelwise && x.rank() > 2 {
        x.dims()
            .iter()
            .enumerate()
            .map(|(i, d)| if i < 2 { *d } else { 1 })
            .collect()
    } else {
        x.dims().to_vec()
    };
    let n: usize = mask_dims.iter().product();
    let keep = (1.0 - p) as f32;
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if rng.uniform() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, mask_dims, x.device())?.to_dtype(x.dtype())?;
    x.broadcast_mul(&mask)
}

/// `x · w` for `x` `[.., in]` and a 2-D `w` as one `[rows, in] · [in, out]`
/// product (`mul` on the flattened rows), reshaped back. candle's
/// `broadcast_matmul` folds the rows itself only for a contiguous `x`; for
/// a view (a narrowed or transposed `x`) it broadcasts `w` over the leading
/// axes and makes it contiguous: a copy of the whole weight per batch
/// element on every call (for an LLM's vocabulary head, hundreds of MB).
/// Reshaping copies the view instead, which is the smaller of the two.
fn rows_matmul(
    x: &Tensor,
    w: &Tensor,
    mul: impl Fn(&Tensor, &Tensor) -> CResult<Tensor>,
) -> CResult<Tensor> {
    if x.rank() <= 2 || w.rank() != 2 {
        return x.broadcast_matmul(w);
    }
    let mut dims = x.dims().to_vec();
    let k = dims.pop().unwrap_or(1);
    let rows: usize = dims.iter().product();
    dims.push(w.dim(1)?);
    mul(&x.reshape((rows, k))?, w)?.reshape(dims)
}

/// `x · w` for a frozen `w` (a `[in, out]` tensor that is never an optimiser
/// variable: a pretrained base weight under LoRA, an LLM's projections and
/// head): the same numbers as `x.broadcast_matmul(w)`, and the same
/// gradient for `x`, but no gradient for `w`. candle's matmul backward
/// computes both operands' gradients, so a frozen weight would cost a full
/// weight-gradient GEMM and a weight-sized buffer on every step, for
/// nothing. When nothing upstream of `x` needs a gradient, it is the plain
/// matmul. A `w` in another dtype than `x` (bf16 frozen weights) multiplies
/// in `w`'s dtype and returns `x`'s.
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> CResult<Tensor> {
    if x.dtype() != w.dtype() {
        // Frozen weights held in bf16/f16 (`dtype = "bf16"` on a GPU): the
        // product runs in the weights' dtype and comes back in the input's.
        // Both casts are differentiable, so `x` keeps its gradient.
        return frozen_matmul(&x.to_dtype(w.dtype())?, w)?.to_dtype(x.dtype());
    }
    if x.rank() > 2 && w.rank() == 2 {
        return rows_matmul(x, w, frozen_matmul);
    }
    let custom = x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda());
    if composed_ops() || !x.track_op() || !custom || w.rank() != 2 {
        return x.broadcast_matmul(w);
    }
    let y = x.detach().broadcast_matmul(w)?;
    if !y.is_contiguous() || y.layout().start_offset() != 0 {
        return x.broadcast_matmul(w);
    }
    x.apply_op2(&y, FrozenMatmul { w: w.clone() })
}

/// `MER_COMPOSED_OPS=1`: every fused or custom op of the SDK runs its
/// composed reference form instead (plain candle ops), to measure what the
/// custom op saves (`MER_COMPOSED_OPS=1 cargo bench --bench train_step`)
/// or to rule it out when a gradient looks wrong. Read once per process.
pub fn composed_ops() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MER_COMPOSED_OPS").is_ok_and(|v| v == "1"))
}

/// Ties the product computed without a graph (`y`) to `x` for the backward
/// pass: forward hands `y` on, backward gives `x` its gradient only.
struct FrozenMatmul {
    w: Tensor,
}

impl candle_core::CustomOp2 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        _x: &candle_core::CpuStorage,
        _lx: &candle_core::Layout,
        y: &candle_core::CpuStorage,
        ly: &candle_core::Layout,
    ) -> CResult<(candle_core::CpuStorage, candle_core::Shape)> {
        // `y` is a fresh contiguous product from offset 0 (checked by
        // `frozen_matmul`): its storage is exactly the result.
        Ok((y.clone(), ly.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _lx: &candle_core::Layout,
        y: &candle_core::CudaStorage,
        ly: &candle_core::Layout,
    ) -> CResult<(candle_core::CudaStorage, candle_core::Shape)> {
        // A device-side copy of the product: cheap beside the weight
        // gradient GEMM (and its weight-sized buffer) that it saves.
        use candle_core::backend::BackendStorage;
        Ok((y.try_clone(ly)?, ly.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.broadcast_matmul(&self.w.t()?)?), None))
    }
}

/// Log-softmax over the last dimension from primitives (the max detached,
/// as in [`softmax`]): what cross-entropies are built on.
pub fn log_softmax(x: &Tensor) -> CResult<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// L2-normalises the last dimension (ε inside the root keeps a zero row
/// finite): cosine similarities become matrix products, as CLIP computes
/// them.
pub fn unit(x: &Tensor) -> CResult<Tensor> {
    x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?)
}

/// Softmax over the last dimension from primitives. The max is detached:
/// it only stabilises the exponent and cancels in the result.
pub fn softmax(x: &Tensor) -> CResult<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// The projections of a [`Attention`] layer, for loading checkpoints whose
/// query, key and value are separate matrices (as in Hugging Face models).
#[derive(Debug, Clone)]
pub struct AttentionWeights {
    /// `[d_query, heads·head_dim]`.
    pub q: Linear,
    /// `[d_context, heads·head_dim]`.
    pub k: Linear,
    /// `[d_context, heads·head_dim]`.
    pub v: Linear,
    /// `[heads·head_dim, d_query]`.
    pub out: Linear,
}

/// Multi-head scaled dot-product attention: queries from one sequence,
/// keys and values from another (the same one for self-attention).
///
/// The per-head width is free (`head_dim`), as in Keras'
/// `MultiHeadAttention(key_dim=…)`, so `heads·head_dim` need not equal the
/// model width.
#[derive(Debug, Clone)]
pub struct Attention {
    /// The four projections.
    pub w: AttentionWeights,
    /// Number of heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
    /// Dropout on the attention probabilities.
    pub dropout: f64,
    /// Mask future positions (decoder-style self-attention).
    pub causal: bool,
}

impl Attention {
    /// Creates `<prefix>{q,k,v,out}.{weight,bias}` for queries of width
    /// `d`, contexts of width `d_ctx`, and `heads` heads of `head_dim`.
    pub fn new(
        ctx: &mut BuildCtx,
        prefix: &str,
        d: usize,
        d_ctx: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self, BuildError> {
        if heads == 0 || head_dim == 0 {
            return Err(BuildError(format!(
                "`{}`: attention needs at least one head of width ≥ 1",
                ctx.kind
            )));
        }
        let inner = heads * head_dim;
        let w = AttentionWeights {
            q: Linear::new(ctx, &format!("{prefix}q."), d, inner, true)?,
            k: Linear::new(ctx, &format!("{prefix}k."), d_ctx, inner, true)?,
            v: Linear::new(ctx, &format!("{prefix}v."), d_ctx, inner, true)?,
            out: Linear::new(ctx, &format!("{prefix}out."), inner, d, true)?,
        };
        Ok(Attention {
            w,
            heads,
            head_dim,
            dropout: 0.0,
            causal: false,
        })
    }

    /// Splits the model width `d` into `heads` equal heads, or explains why
    /// it cannot.
    pub fn split_width(kind: &str, d: usize, heads: usize) -> Result<usize, BuildError> {
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(BuildError(format!(
                "`{kind}`: width {d} does not split into {heads} heads"
            )));
        }
        Ok(d / heads)
    }

    fn split(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, n, _) = x.dims3()?;
        x.reshape((b, n, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attends from `x` `[B, Nq, d]` to `context` `[B, Nk, d_ctx]`. `mask`
    /// `[B, Nq, Nk]` is added to the scores (use large negatives to block).
    pub fn apply(
        &self,
        x: &Tensor,
        context: &Tensor,
        mask: Option<&Tensor>,
        mode: Mode,
        rng: &mut SeededRng,
    ) -> CResult<Tensor> {
        let (b, nq, _) = x.dims3()?;
        let nk = context.dim(1)?;
        let q = self.split(&self.w.q.apply(x)?)?;
        let k = self.split(&self.w.k.apply(context)?)?;
        let v = self.split(&self.w.v.apply(context)?)?;
        let mut scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        if self.causal {
            let m: Vec<f32> = (0..nq)
                .flat_map(|i| (0..nk).map(move |j| if j > i { -1e9 } else { 0.0 }))
                .collect();
            scores = scores.broadcast_add(&Tensor::from_vec(m, (nq, nk), x.device())?)?;
        }
        if let Some(m) = mask {
            scores = scores.broadcast_add(&m.unsqueeze(1)?)?;
        }
        let attn = dropout(&softmax(&scores)?, self.dropout, false, mode, rng)?;
        let y = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, nq, self.heads * self.head_dim))?;
        self.w.out.apply(&y)
    }
}

/// Fixed sinusoidal position table `[n, d]` (Vaswani et al.; VideoMAE adds
/// it to its tubelet tokens instead of learning positions).
pub fn sinusoid_positions(n: usize, d: usize, device: &candle_core::Device) -> CResult<Tensor> {
    let mut v = vec![0f32; n * d];
    for pos in 0..n {
        for j in 0..d {
            let angle = pos as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / d as f64);
            v[pos * d + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_vec(v, (n, d), device)
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    /// The frozen matmul gives the plain one's output and input gradient,
    /// and no weight gradient.
    #[test]
    fn frozen_matmul_matches_the_plain_one_without_a_weight_gradient() {
        let dev = candle_core::Device::Cpu;
        let mut rng = SeededRng::new(3);
        let x = Var::from_tensor(&rng.normal_tensor(&[2, 3, 5], &dev).unwrap()).unwrap();
        let w = rng.normal_tensor(&[5, 4], &dev).unwrap();
        let g = rng.normal_tensor(&[2, 3, 4], &dev).unwrap();
        let plain = x.as_tensor().broadcast_matmul(&w).unwrap();
        let frozen = frozen_matmul(x.as_tensor(), &w).unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert_eq!(diff(&plain, &frozen), 0.0);
        let gp = (plain * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gf = (frozen * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (ap, af) = (
            gp.get(x.as_tensor()).unwrap(),
            gf.get(x.as_tensor()).unwrap(),
        );
        assert!(diff(ap, af) < 1e-6, "{}", diff(ap, af));
        assert!(gp.get(&w).is_some(), "candle's matmul computes it");
        assert!(gf.get(&w).is_none(), "the frozen one does not");
        // Nothing to differentiate: the plain op, no custom node.
        let c = frozen_matmul(&x.as_tensor().detach(), &w).unwrap();
        assert_eq!(diff(&c, &frozen_matmul(x.as_tensor(), &w).unwrap()), 0.0);
    }

    /// bf16 frozen weights (`dtype = "bf16"`): an f32 input gets an f32
    /// output and its gradient, within bf16's precision of the f32 product.
    #[test]
    fn frozen_matmul_takes_half_precision_weights_and_keeps_the_input_gradient() {
        let dev = candle_core::Device::Cpu;
        let mut rng = SeededRng::new(5);
        let x = Var::from_tensor(&rng.normal_tensor(&[2, 3, 8], &dev).unwrap()).unwrap();
        let w32 = rng.normal_tensor(&[8, 4], &dev).unwrap();
        let g = rng.normal_tensor(&[2, 3, 4], &dev).unwrap();
        let rel = |a: &Tensor, b: &Tensor| -> f32 {
            let d: f32 = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            let m: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            d / m
        };
        for half in [candle_core::DType::BF16, candle_core::DType::F16] {
            let w = w32.to_dtype(half).unwrap();
            let y = frozen_matmul(x.as_tensor(), &w).unwrap();
            assert_eq!(y.dtype(), candle_core::DType::F32);
            let want = x.as_tensor().broadcast_matmul(&w32).unwrap();
            assert!(rel(&y, &want) < 2e-2, "{half:?}: {}", rel(&y, &want));
            let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = grads
                .get(x.as_tensor())
                .expect("the input keeps its gradient");
            assert_eq!(gx.dtype(), candle_core::DType::F32);
            let gwant = g.broadcast_matmul(&w32.t().unwrap()).unwrap();
            assert!(rel(gx, &gwant) < 2e-2, "{half:?}: {}", rel(gx, &gwant));
            assert!(grads.get(&w).is_none());
        }
    }

    use super::*;
    use crate::component::ParamStore;
    use candle_core::{DType, Device};
    use std::collections::BTreeMap;

    #[test]
    fn softmax_matches_candle_and_attention_mixes_values() {
        let x = Tensor::new(&[[1f32, 2.0, 3.0], [0.0, 0.0, 5.0]], &Device::Cpu).unwrap();
        let a = softmax(&x).unwrap().to_vec2::<f32>().unwrap();
        let b = candle_nn::ops::softmax_last_dim(&x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (r, s) in a.iter().zip(&b) {
            for (u, v) in r.iter().zip(s) {
                assert!((u - v).abs() < 1e-6);
            }
        }
        let mut store = ParamStore::new(0, Device::Cpu);
        let params = BTreeMap::new();
        let mut ctx = BuildCtx {
            node: "a",
            kind: "test",
            params: &params,
            inputs: &[],
            vars: &mut store,
        };
        // Three heads of 5 over a width of 4: the inner width is free.
        let att = Attention::new(&mut ctx, "", 4, 6, 3, 5).unwrap();
        let q = Tensor::ones((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let c = Tensor::ones((2, 7, 6), DType::F32, &Device::Cpu).unwrap();
        let y = att
            .apply(&q, &c, None, Mode::Eval, &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(y.dims(), &[2, 3, 4]);
        assert!(Attention::split_width("k", 256, 3).is_err());
    }

    #[test]
    fn sinusoid_table_starts_with_sin0_cos0() {
        let t = sinusoid_positions(3, 4, &Device::Cpu).unwrap();
        let v = t.to_vec2::<f32>().unwrap();
        assert_eq!(v[0], vec![0.0, 1.0, 0.0, 1.0]);
        assert!((v[1][0] - 1f32.sin()).abs() < 1e-6);
    }
}
