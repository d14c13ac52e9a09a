//! candle implementations of the builtin `nn.*` components.
//!
//! Training paths use differentiable forms only: candle-nn's fused
//! `layer_norm`, `rms_norm` and `softmax_last_dim` record no backward pass,
//! so norms here are written from primitives. candle has no conv3d or
//! pool3d: both are composed from 2-D ops over stacked temporal taps. Every
//! kind here declares an example and is gradient-checked by finite
//! differences in this crate's tests.

use mer_registry::candle::{DType, Tensor};
use mer_registry::component::input;
use mer_registry::layers::{dropout, Attention, LayerNorm, Linear};
use mer_registry::{BuildCtx, BuildError, Component, Init, Mode, SeededRng, Value};
use std::sync::Mutex;

type CResult<T> = mer_registry::candle::Result<T>;

fn ints(ctx: &BuildCtx, name: &str) -> Result<Vec<usize>, BuildError> {
    match ctx.params.get(name) {
        Some(Value::List(l)) => l
            .iter()
            .map(|v| match v {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(BuildError(format!(
                    "`{}`: `{name}` must be non-negative integers",
                    ctx.kind
                ))),
            })
            .collect(),
        _ => Err(BuildError(format!("`{}` needs `{name}`", ctx.kind))),
    }
}

fn input_dims(ctx: &BuildCtx, i: usize) -> Result<Vec<usize>, BuildError> {
    ctx.inputs
        .get(i)
        .and_then(|t| {
            t.dims
                .iter()
                .skip(1)
                .map(|d| d.size())
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            BuildError(format!(
                "`{}` needs known input sizes (after the batch)",
                ctx.kind
            ))
        })
}

// ---- linear and MLP -------------------------------------------------------

struct LinearNode(Linear);

impl Component for LinearNode {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        Ok(vec![self.0.apply(input(inputs, 0, "nn.linear")?)?])
    }
}

pub fn build_linear(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d_in = ctx.input_width(0)?;
    let out = ctx.usize("out")?;
    let bias = ctx.bool("bias")?;
    Ok(Box::new(LinearNode(Linear::new(ctx, "", d_in, out, bias)?)))
}

#[derive(Clone, Copy)]
enum Act {
    Relu,
    Gelu,
    Silu,
    Sigmoid,
    Tanh,
    Identity,
}

impl Act {
    fn parse(s: &str) -> Act {
        match s {
            "relu" => Act::Relu,
            "gelu" => Act::Gelu,
            "silu" => Act::Silu,
            "sigmoid" => Act::Sigmoid,
            "tanh" => Act::Tanh,
            _ => Act::Identity,
        }
    }
    fn apply(self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Act::Relu => x.relu(),
            Act::Gelu => x.gelu_erf(),
            Act::Silu => x.silu(),
            // 1 / (1 + e^-x) from primitives: differentiable by construction.
            Act::Sigmoid => (x.neg()?.exp()? + 1.0)?.recip(),
            Act::Tanh => x.tanh(),
            Act::Identity => Ok(x.clone()),
        }
    }
}

struct Activation(Act, &'static str);

impl Component for Activation {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        Ok(vec![self.0.apply(input(inputs, 0, self.1)?)?])
    }
}

pub fn build_relu(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Relu, "nn.relu")))
}
pub fn build_gelu(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Gelu, "nn.gelu")))
}
pub fn build_silu(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Silu, "nn.silu")))
}
pub fn build_sigmoid(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Sigmoid, "nn.sigmoid")))
}

struct Mlp {
    layers: Vec<Linear>,
    act: Act,
    p: f64,
}

impl Component for Mlp {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let mut x = input(inputs, 0, "nn.mlp")?.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            x = l.apply(&x)?;
            if i < last {
                x = dropout(&self.act.apply(&x)?, self.p, false, mode, rng)?;
            }
        }
        Ok(vec![x])
    }
}

pub fn build_mlp(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let mut widths = vec![ctx.input_width(0)?];
    widths.extend(ints(ctx, "hidden")?);
    widths.push(ctx.usize("out")?);
    let act = Act::parse(ctx.str("activation")?);
    let p = ctx.float("dropout")?;
    let mut layers = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        layers.push(Linear::new(ctx, &format!("{i}."), w[0], w[1], true)?);
    }
    Ok(Box::new(Mlp { layers, act, p }))
}

struct Dropout {
    p: f64,
    channelwise: bool,
}

impl Component for Dropout {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        Ok(vec![dropout(
            input(inputs, 0, "nn.dropout")?,
            self.p,
            self.channelwise,
            mode,
            rng,
        )?])
    }
}

pub fn build_dropout(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Dropout {
        p: ctx.float("p")?,
        channelwise: ctx.bool("channelwise")?,
    }))
}

// ---- tensor plumbing ------------------------------------------------------

struct Flatten(usize);

impl Component for Flatten {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        Ok(vec![input(inputs, 0, "nn.flatten")?.flatten_from(self.0)?])
    }
}

pub fn build_flatten(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Flatten(ctx.usize("start")?)))
}

/// `nn.tokens`: `[B, C, ...]` → `[B, N, C]`, plus learned positions.
struct Tokens(Option<Tensor>);

impl Component for Tokens {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.tokens")?;
        let t = x.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        Ok(vec![match &self.0 {
            Some(p) => t.broadcast_add(p)?,
            None => t,
        }])
    }
}

pub fn build_tokens(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    if !ctx.bool("positions")? {
        return Ok(Box::new(Tokens(None)));
    }
    let dims = input_dims(ctx, 0)?;
    let c = *dims
        .first()
        .ok_or_else(|| BuildError("`nn.tokens` needs a channel dimension".into()))?;
    let n: usize = dims[1..].iter().product();
    let pos = ctx.param("pos", &[1, n, c], Init::Normal(0.02))?;
    Ok(Box::new(Tokens(Some(pos))))
}

/// `nn.reshape`: the per-sample dims become `shape` (one entry may be -1).
struct Reshape(Vec<i64>);

impl Component for Reshape {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.reshape")?;
        let b = x.dim(0)?;
        let per = x.elem_count().checked_div(b).unwrap_or(0);
        let known: usize = self
            .0
            .iter()
            .filter(|d| **d != -1)
            .map(|d| *d as usize)
            .product();
        let mut dims = vec![b];
        for d in &self.0 {
            dims.push(match *d {
                -1 if known > 0 => per / known,
                -1 => mer_registry::candle::bail!("nn.reshape: -1 beside a zero-sized dim"),
                d => d as usize,
            });
        }
        if dims[1..].iter().product::<usize>() != per {
            mer_registry::candle::bail!(
                "nn.reshape: {per} values per sample do not fit {:?}",
                self.0
            );
        }
        Ok(vec![x.reshape(dims)?])
    }
}

pub fn build_reshape(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let shape: Vec<i64> = match ctx.params.get("shape") {
        Some(Value::List(l)) => l
            .iter()
            .map(|v| match v {
                Value::Int(i) if *i == -1 || *i > 0 => Ok(*i),
                other => Err(BuildError(format!(
                    "`nn.reshape` shape entries are positive or -1, not {other:?}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(BuildError("`nn.reshape` needs `shape`".into())),
    };
    if shape.iter().filter(|d| **d == -1).count() > 1 {
        return Err(BuildError("`nn.reshape`: at most one -1".into()));
    }
    Ok(Box::new(Reshape(shape)))
}

fn norm_dim(dim: i64, rank: usize) -> CResult<usize> {
    let d = if dim < 0 { rank as i64 + dim } else { dim };
    if (0..rank as i64).contains(&d) {
        Ok(d as usize)
    } else {
        mer_registry::candle::bail!("dim {dim} out of range for rank {rank}")
    }
}

struct Join {
    dim: i64,
    stack: bool,
}

impl Component for Join {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let first = input(inputs, 0, "nn.concat")?;
        if self.stack {
            let d = norm_dim(self.dim, first.rank() + 1)?;
            Ok(vec![Tensor::stack(inputs, d)?])
        } else {
            let d = norm_dim(self.dim, first.rank())?;
            Ok(vec![Tensor::cat(inputs, d)?])
        }
    }
}

pub fn build_concat(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Join {
        dim: ctx.int("dim")?,
        stack: false,
    }))
}
pub fn build_stack(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Join {
        dim: ctx.int("dim")?,
        stack: true,
    }))
}

struct Add;

impl Component for Add {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let mut acc = input(inputs, 0, "nn.add")?.clone();
        for x in &inputs[1..] {
            acc = acc.broadcast_add(x)?;
        }
        Ok(vec![acc])
    }
}

pub fn build_add(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Add))
}

struct PoolTokens(&'static str);

impl Component for PoolTokens {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.pool_tokens")?;
        let n = x.dim(1)?;
        Ok(vec![match self.0 {
            "max" => x.max(1)?,
            "first" => x.narrow(1, 0, 1)?.squeeze(1)?,
            "last" => x.narrow(1, n - 1, 1)?.squeeze(1)?,
            _ => x.mean(1)?,
        }])
    }
}

pub fn build_pool_tokens(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let mode = match ctx.str("mode")? {
        "max" => "max",
        "first" => "first",
        "last" => "last",
        _ => "mean",
    };
    Ok(Box::new(PoolTokens(mode)))
}

// ---- normalisation (differentiable forms) ---------------------------------

struct LayerNormNode(LayerNorm);

impl Component for LayerNormNode {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        Ok(vec![self.0.apply(input(inputs, 0, "nn.layernorm")?)?])
    }
}

pub fn build_layernorm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let affine = if ctx.bool("affine")? {
        Some((
            ctx.param("weight", &[d], Init::Ones)?,
            ctx.param("bias", &[d], Init::Zeros)?,
        ))
    } else {
        None
    };
    Ok(Box::new(LayerNormNode(LayerNorm {
        eps: ctx.float("eps")?,
        affine,
        rms: false,
    })))
}

pub fn build_rmsnorm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let g = ctx.param("weight", &[d], Init::Ones)?;
    let zeros = Tensor::zeros(d, DType::F32, &ctx.device())?;
    Ok(Box::new(LayerNormNode(LayerNorm {
        eps: ctx.float("eps")?,
        affine: Some((g, zeros)),
        rms: true,
    })))
}

/// Batch norm over the channel dimension (dim 1). Running statistics are
/// state, not parameters: updated in training mode, used in eval mode.
struct BatchNorm {
    gamma: Tensor,
    beta: Tensor,
    momentum: f64,
    eps: f64,
    running: Mutex<(Tensor, Tensor)>,
}

impl Component for BatchNorm {
    fn forward(&self, inputs: &[Tensor], mode: Mode, _rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.batchnorm")?;
        let c = x.dim(1)?;
        let mut shape = vec![1usize; x.rank()];
        shape[1] = c;
        // Move channels last and flatten the rest: [N, C].
        let perm: Vec<usize> = (0..x.rank()).filter(|&i| i != 1).chain([1]).collect();
        let flat = x.permute(perm)?.reshape(((), c))?;
        let (mean, var) = match mode {
            Mode::Train => {
                let mean = flat.mean(0)?;
                let var = flat.broadcast_sub(&mean)?.sqr()?.mean(0)?;
                let n = flat.dim(0)? as f64;
                let mut guard = self.running.lock().map_err(|_| {
                    mer_registry::candle::Error::Msg("batchnorm state poisoned".into())
                })?;
                let unbiased = (var.detach() * (n / (n - 1.0).max(1.0)))?;
                let m = self.momentum;
                guard.0 = ((&guard.0 * (1.0 - m))? + (mean.detach() * m)?)?;
                guard.1 = ((&guard.1 * (1.0 - m))? + (unbiased * m)?)?;
                (mean, var)
            }
            Mode::Eval => {
                let guard = self.running.lock().map_err(|_| {
                    mer_registry::candle::Error::Msg("batchnorm state poisoned".into())
                })?;
                (guard.0.clone(), guard.1.clone())
            }
        };
        let y = x
            .broadcast_sub(&mean.reshape(shape.as_slice())?)?
            .broadcast_div(&(var.reshape(shape.as_slice())? + self.eps)?.sqrt()?)?;
        Ok(vec![y
            .broadcast_mul(&self.gamma.reshape(shape.as_slice())?)?
            .broadcast_add(&self.beta.reshape(shape.as_slice())?)?])
    }
}

pub fn build_batchnorm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let c = *input_dims(ctx, 0)?
        .first()
        .ok_or_else(|| BuildError("`nn.batchnorm` needs a channel dimension".into()))?;
    let dev = ctx.device();
    Ok(Box::new(BatchNorm {
        gamma: ctx.param("weight", &[c], Init::Ones)?,
        beta: ctx.param("bias", &[c], Init::Zeros)?,
        momentum: ctx.float("momentum")?,
        eps: ctx.float("eps")?,
        running: Mutex::new((
            Tensor::zeros(c, DType::F32, &dev)?,
            Tensor::ones(c, DType::F32, &dev)?,
        )),
    }))
}

// ---- convolution and pooling ---------------------------------------------

struct Conv {
    w: Tensor,
    b: Option<Tensor>,
    stride: usize,
    padding: usize,
    groups: usize,
    /// `Some((kt, st, pt))` for a conv3d composed from conv2d.
    temporal: Option<(usize, usize, usize)>,
}

impl Conv {
    fn conv2d(&self, x: &Tensor, w: &Tensor) -> CResult<Tensor> {
        let y = x.conv2d(w, self.padding, self.stride, 1, self.groups)?;
        match &self.b {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Component for Conv {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.conv")?;
        let Some((kt, st, pt)) = self.temporal else {
            return Ok(vec![self.conv2d(x, &self.w)?]);
        };
        // conv3d as one conv2d: stack the kt temporal taps of every output
        // step into channels, then fold time into the batch.
        let (b, c, _t, h, w) = x.dims5()?;
        let x = if pt > 0 {
            x.pad_with_zeros(2, pt, pt)?
        } else {
            x.clone()
        };
        let t_pad = x.dim(2)?;
        if t_pad < kt {
            mer_registry::candle::bail!(
                "nn.conv3d: temporal kernel {kt} is longer than the {t_pad} frames (with padding)"
            );
        }
        let t_out = (t_pad - kt) / st.max(1) + 1;
        let steps: Vec<Tensor> = (0..t_out)
            .map(|i| x.narrow(2, i * st, kt))
            .collect::<CResult<_>>()?;
        let taps = Tensor::stack(&steps, 1)?; // [B, T', C, kt, H, W]
        let taps = taps.reshape((b * t_out, c * kt, h, w))?;
        let (o, ci, kt_, kh, kw) = self.w.dims5()?;
        let w2 = self.w.reshape((o, ci * kt_, kh, kw))?;
        let y = self.conv2d(&taps, &w2)?; // [B*T', O, H', W']
        let (_, o, h2, w2) = y.dims4()?;
        Ok(vec![y
            .reshape((b, t_out, o, h2, w2))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?])
    }
}

fn same_or_err(v: &[usize], what: &str, kind: &str) -> Result<usize, BuildError> {
    let first = *v.first().unwrap_or(&1);
    if v.iter().any(|&x| x != first) {
        return Err(BuildError(format!(
            "`{kind}`: candle convolves with one {what} for both spatial axes; got {v:?}"
        )));
    }
    Ok(first)
}

pub fn build_conv2d(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let c = *input_dims(ctx, 0)?.first().unwrap_or(&1);
    let out = ctx.usize("out")?;
    let k = ints(ctx, "kernel")?;
    let groups = ctx.usize("groups")?.max(1);
    if c % groups != 0 || out % groups != 0 {
        return Err(BuildError(format!(
            "`nn.conv2d`: {c} input and {out} output channels must divide into {groups} groups"
        )));
    }
    let (kh, kw) = (*k.first().unwrap_or(&1), *k.get(1).unwrap_or(&1));
    let fan_in = c / groups * kh * kw;
    let w = ctx.param(
        "weight",
        &[out, c / groups, kh, kw],
        Init::KaimingUniform { fan_in },
    )?;
    let b = if ctx.bool("bias")? {
        Some(ctx.param("bias", &[out], Init::Uniform(1.0 / (fan_in as f32).sqrt()))?)
    } else {
        None
    };
    Ok(Box::new(Conv {
        w,
        b,
        stride: same_or_err(&ints(ctx, "stride")?, "stride", "nn.conv2d")?,
        padding: same_or_err(&ints(ctx, "padding")?, "padding", "nn.conv2d")?,
        groups,
        temporal: None,
    }))
}

pub fn build_conv3d(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let c = *input_dims(ctx, 0)?.first().unwrap_or(&1);
    let out = ctx.usize("out")?;
    let k = ints(ctx, "kernel")?;
    let s = ints(ctx, "stride")?;
    let p = ints(ctx, "padding")?;
    let (kt, kh, kw) = (
        *k.first().unwrap_or(&1),
        *k.get(1).unwrap_or(&1),
        *k.get(2).unwrap_or(&1),
    );
    let fan_in = c * kt * kh * kw;
    let w = ctx.param(
        "weight",
        &[out, c, kt, kh, kw],
        Init::KaimingUniform { fan_in },
    )?;
    let b = if ctx.bool("bias")? {
        Some(ctx.param("bias", &[out], Init::Uniform(1.0 / (fan_in as f32).sqrt()))?)
    } else {
        None
    };
    Ok(Box::new(Conv {
        w,
        b,
        stride: same_or_err(&s[1.min(s.len())..], "stride", "nn.conv3d")?,
        padding: same_or_err(&p[1.min(p.len())..], "padding", "nn.conv3d")?,
        groups: 1,
        temporal: Some((
            kt,
            *s.first().unwrap_or(&1).max(&1),
            *p.first().unwrap_or(&0),
        )),
    }))
}

struct Pool {
    max: bool,
    kernel: Vec<usize>,
}

impl Component for Pool {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.pool")?;
        let pool2 = |x: &Tensor, kh: usize, kw: usize| {
            if self.max {
                window_max(x, kh, kw)
            } else {
                x.avg_pool2d((kh, kw))
            }
        };
        if self.kernel.len() == 2 {
            return Ok(vec![pool2(x, self.kernel[0], self.kernel[1])?]);
        }
        // pool3d: spatial pooling on [B, C*T, H, W], then a temporal
        // reduction over windows of kt (kernel = stride, so exact backward).
        let (kt, kh, kw) = (self.kernel[0], self.kernel[1], self.kernel[2]);
        let (b, c, t, h, w) = x.dims5()?;
        let y = pool2(&x.reshape((b, c * t, h, w))?, kh, kw)?;
        let (_, _, h2, w2) = y.dims4()?;
        let t2 = t / kt;
        let y = y
            .reshape((b, c, t, h2, w2))?
            .narrow(2, 0, t2 * kt)?
            .reshape((b, c, t2, kt, h2, w2))?;
        Ok(vec![if self.max { y.max(3)? } else { y.mean(3)? }])
    }
}

/// Max pooling with kernel = stride from a reshape and a `max` reduction.
/// candle 0.11's `max_pool2d` backward scales the gradient by
/// (maxima in the window) / (window size) where it should divide by the
/// number of maxima, so a single maximum in a 2×2 window receives a quarter
/// of its gradient (measured by the gradient check in this crate).
fn window_max(x: &Tensor, kh: usize, kw: usize) -> CResult<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / kh, w / kw);
    x.narrow(2, 0, h2 * kh)?
        .narrow(3, 0, w2 * kw)?
        .reshape((b, c, h2, kh, w2, kw))?
        .permute((0, 1, 2, 4, 3, 5))?
        .reshape((b, c, h2, w2, kh * kw))?
        .max(4)
}

fn build_pool(ctx: &mut BuildCtx, max: bool) -> Result<Box<dyn Component>, BuildError> {
    let kernel = ints(ctx, "kernel")?;
    let want = if ctx.kind.ends_with("3d") { 3 } else { 2 };
    if kernel.len() != want || kernel.contains(&0) {
        return Err(BuildError(format!(
            "`{}`: kernel must be {want} positive sizes, got {kernel:?}",
            ctx.kind
        )));
    }
    Ok(Box::new(Pool { max, kernel }))
}
pub fn build_maxpool(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_pool(ctx, true)
}
pub fn build_avgpool(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_pool(ctx, false)
}

/// Squeeze-and-excitation: channel gates from globally pooled features.
struct Se {
    down: Linear,
    up: Linear,
}

impl Component for Se {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "nn.se")?;
        let (b, c) = (x.dim(0)?, x.dim(1)?);
        let pooled = x.reshape((b, c, ()))?.mean(2)?;
        let g = Act::Sigmoid.apply(&self.up.apply(&self.down.apply(&pooled)?.relu()?)?)?;
        let mut shape = vec![b, c];
        shape.extend(std::iter::repeat_n(1, x.rank() - 2));
        Ok(vec![x.broadcast_mul(&g.reshape(shape)?)?])
    }
}

pub fn build_se(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let c = *input_dims(ctx, 0)?.first().unwrap_or(&1);
    let hidden = (c / ctx.usize("reduction")?.max(1)).max(1);
    Ok(Box::new(Se {
        down: Linear::new(ctx, "down.", c, hidden, true)?,
        up: Linear::new(ctx, "up.", hidden, c, true)?,
    }))
}

// ---- attention and transformers -------------------------------------------

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

pub fn build_attention(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

pub fn build_cross_attention(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

pub fn build_encoder(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_transformer(ctx, false)
}
pub fn build_decoder(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_transformer(ctx, true)
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

pub fn build_patch_embed(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let p = ctx.usize("patch")?;
    let cls = ctx.bool("cls_token")?;
    build_embed(ctx, vec![p, p], cls)
}

pub fn build_tubelet_embed(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let k = ints(ctx, "tubelet")?;
    build_embed(ctx, k, false)
}

/// LoRA: a frozen base weight (a plain tensor, never an optimiser variable)
/// plus a trainable low-rank update `(alpha / r)·B·A`, with B starting at
/// zero so training starts from the base model exactly.
pub struct LoraLinear {
    base: Tensor,
    a: Tensor,
    b: Tensor,
    scale: f64,
    p: f64,
}

impl LoraLinear {
    /// Adapts `base` (`[in, out]`), creating `<prefix>lora_A` and
    /// `<prefix>lora_B` in the store.
    pub fn new(
        ctx: &mut BuildCtx,
        prefix: &str,
        base: Tensor,
        rank: usize,
        alpha: f64,
        p: f64,
    ) -> Result<Self, BuildError> {
        let (d_in, d_out) = base.dims2()?;
        let a = ctx.param(
            &format!("{prefix}lora_A.weight"),
            &[rank, d_in],
            Init::KaimingUniform { fan_in: d_in },
        )?;
        let b = ctx.param(
            &format!("{prefix}lora_B.weight"),
            &[d_out, rank],
            Init::Zeros,
        )?;
        Ok(LoraLinear {
            base,
            a,
            b,
            scale: alpha / rank.max(1) as f64,
            p,
        })
    }

    /// `y = x·W + scale·(drop(x)·Aᵀ)·Bᵀ`: the scale touches the update only.
    pub fn apply(&self, x: &Tensor, mode: Mode, rng: &mut SeededRng) -> CResult<Tensor> {
        let y = x.broadcast_matmul(&self.base)?;
        let h = dropout(x, self.p, false, mode, rng)?.broadcast_matmul(&self.a.t()?)?;
        y + (h.broadcast_matmul(&self.b.t()?)? * self.scale)?
    }

    /// The merged weight `W + scale·(B·A)ᵀ`, for export without adapters.
    pub fn merged(&self) -> CResult<Tensor> {
        &self.base + (self.b.matmul(&self.a)?.t()? * self.scale)?
    }
}

impl Component for LoraLinear {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        Ok(vec![self.apply(
            input(inputs, 0, "nn.lora_linear")?,
            mode,
            rng,
        )?])
    }
}

fn lora_settings(ctx: &BuildCtx) -> (usize, f64, f64) {
    let mut s = (8usize, 16.0f64, 0.0f64);
    if let Some(Value::Map(m)) = ctx.params.get("lora") {
        if let Some(Value::Int(r)) = m.get("rank") {
            s.0 = (*r).max(1) as usize;
        }
        if let Some(a) = m.get("alpha").and_then(Value::as_f64) {
            s.1 = a;
        }
        if let Some(p) = m.get("dropout").and_then(Value::as_f64) {
            s.2 = p;
        }
    }
    s
}

pub fn build_lora_linear(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d_in = ctx.input_width(0)?;
    let out = ctx.usize("out")?;
    let (rank, alpha, p) = lora_settings(ctx);
    // Standalone, the frozen base is a seeded random projection; inside an
    // LLM body it is the pretrained weight.
    let mut rng = SeededRng::derive(ctx.vars.seed(), &format!("{}.base", ctx.node));
    let n = d_in
        .checked_mul(out)
        .filter(|&n| n <= mer_registry::component::MAX_PARAM_ELEMENTS)
        .ok_or_else(|| {
            BuildError(format!(
                "`nn.lora_linear`: a {d_in}×{out} base weight is too large"
            ))
        })?;
    let bound = 1.0 / (d_in as f32).sqrt();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform_range(-bound, bound)).collect();
    let base = Tensor::from_vec(data, (d_in, out), &ctx.device())?;
    Ok(Box::new(LoraLinear::new(ctx, "", base, rank, alpha, p)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::{Dim, ParamStore, TensorType};
    use std::collections::BTreeMap;

    fn build(
        kind: &str,
        params: &[(&str, Value)],
        dims: &[usize],
    ) -> (Box<dyn Component>, ParamStore) {
        let reg = crate::builtin_registry();
        let k = reg.get(kind).expect("kind").clone();
        let mut p: BTreeMap<String, Value> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.clone()))
            .collect();
        for s in &k.schema.params {
            if let Some(d) = &s.default {
                p.entry(s.name.clone()).or_insert_with(|| d.clone());
            }
        }
        let mut store = ParamStore::new(5, Device::Cpu);
        let t = [TensorType::features(
            dims.iter().map(|&d| Dim::Size(d)).collect(),
        )];
        let c = k.build("n", &p, &t, &mut store).expect("build");
        (c, store)
    }

    fn randn(dims: &[usize], seed: u64) -> Tensor {
        SeededRng::new(seed)
            .normal_tensor(dims, &Device::Cpu)
            .expect("tensor")
    }

    fn ints(v: &[i64]) -> Value {
        Value::List(v.iter().map(|i| Value::Int(*i)).collect())
    }

    #[test]
    fn conv3d_matches_a_naive_reference() {
        let (b, c, t, h, w) = (2, 2, 5, 6, 5);
        let (o, kt, kh, kw) = (3, 2, 3, 2);
        let (st, pt, ph) = (2, 1, 1);
        let (conv, store) = build(
            "nn.conv3d",
            &[
                ("out", Value::Int(o as i64)),
                ("kernel", ints(&[kt as i64, kh as i64, kw as i64])),
                ("stride", ints(&[st as i64, 1, 1])),
                ("padding", ints(&[pt as i64, ph as i64, ph as i64])),
            ],
            &[b, c, t, h, w],
        );
        let x = randn(&[b, c, t, h, w], 1);
        let y = conv
            .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        let vars: BTreeMap<String, Vec<f32>> = store
            .vars()
            .map(|(n, v)| {
                (
                    n.clone(),
                    v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                )
            })
            .collect();
        let (wt, bias) = (&vars["n.weight"], &vars["n.bias"]);
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let xat = |bi: usize, ci: usize, ti: isize, hi: isize, wi: isize| -> f32 {
            if ti < 0
                || hi < 0
                || wi < 0
                || ti >= t as isize
                || hi >= h as isize
                || wi >= w as isize
            {
                return 0.0;
            }
            xv[(((bi * c + ci) * t + ti as usize) * h + hi as usize) * w + wi as usize]
        };
        let (t2, h2, w2) = (
            (t + 2 * pt - kt) / st + 1,
            h + 2 * ph - kh + 1,
            w + 2 * ph - kw + 1,
        );
        assert_eq!(y.dims(), &[b, o, t2, h2, w2]);
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let mut max_err = 0f32;
        for bi in 0..b {
            for oi in 0..o {
                for ti in 0..t2 {
                    for hi in 0..h2 {
                        for wi in 0..w2 {
                            let mut acc = bias[oi];
                            for ci in 0..c {
                                for a in 0..kt {
                                    for p in 0..kh {
                                        for q in 0..kw {
                                            let wv =
                                                wt[(((oi * c + ci) * kt + a) * kh + p) * kw + q];
                                            acc += wv
                                                * xat(
                                                    bi,
                                                    ci,
                                                    (ti * st + a) as isize - pt as isize,
                                                    (hi + p) as isize - ph as isize,
                                                    (wi + q) as isize - ph as isize,
                                                );
                                        }
                                    }
                                }
                            }
                            let got = yv[(((bi * o + oi) * t2 + ti) * h2 + hi) * w2 + wi];
                            max_err = max_err.max((got - acc).abs());
                        }
                    }
                }
            }
        }
        assert!(
            max_err < 1e-4,
            "conv3d differs from the naive sum by {max_err}"
        );
    }

    #[test]
    fn pool3d_matches_a_naive_reference() {
        let dims = [1, 2, 4, 4, 6];
        let x = randn(&dims, 2);
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        for max in [true, false] {
            let kind = if max { "nn.maxpool3d" } else { "nn.avgpool3d" };
            let (p, _) = build(kind, &[("kernel", ints(&[2, 2, 3]))], &dims);
            let y = p
                .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
                .unwrap()
                .remove(0);
            assert_eq!(y.dims(), &[1, 2, 2, 2, 2]);
            let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            let mut i = 0;
            for c in 0..2 {
                for t in 0..2 {
                    for h in 0..2 {
                        for w in 0..2 {
                            let mut vals = Vec::new();
                            for a in 0..2 {
                                for b in 0..2 {
                                    for d in 0..3 {
                                        vals.push(
                                            xv[((c * 4 + t * 2 + a) * 4 + h * 2 + b) * 6
                                                + w * 3
                                                + d],
                                        );
                                    }
                                }
                            }
                            let want = if max {
                                vals.iter().cloned().fold(f32::MIN, f32::max)
                            } else {
                                vals.iter().sum::<f32>() / vals.len() as f32
                            };
                            assert!(
                                (yv[i] - want).abs() < 1e-5,
                                "{kind} at {i}: {} vs {want}",
                                yv[i]
                            );
                            i += 1;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dropout_is_seeded_and_off_in_eval() {
        let (d, _) = build("nn.dropout", &[("p", Value::Float(0.5))], &[64, 64]);
        let x = Tensor::ones((64, 64), DType::F32, &Device::Cpu).unwrap();
        let run = |seed, mode| -> Vec<f32> {
            d.forward(std::slice::from_ref(&x), mode, &mut SeededRng::new(seed))
                .unwrap()[0]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(run(1, Mode::Eval), vec![1.0; 4096]);
        assert_eq!(run(7, Mode::Train), run(7, Mode::Train));
        assert_ne!(run(7, Mode::Train), run(8, Mode::Train));
        let kept = run(7, Mode::Train).iter().filter(|v| **v > 0.0).count() as f64 / 4096.0;
        assert!((kept - 0.5).abs() < 0.05, "{kept}");
        assert!(
            run(7, Mode::Train).iter().all(|v| *v == 0.0 || *v == 2.0),
            "inverted scaling"
        );
    }

    #[test]
    fn batchnorm_learns_running_statistics() {
        let (bn, _) = build("nn.batchnorm", &[("momentum", Value::Float(1.0))], &[8, 3]);
        let x = (randn(&[8, 3], 3) * 2.0).unwrap().affine(1.0, 5.0).unwrap();
        let train = bn
            .forward(
                std::slice::from_ref(&x),
                Mode::Train,
                &mut SeededRng::new(0),
            )
            .unwrap()
            .remove(0);
        let m: Vec<f32> = train.mean(0).unwrap().to_vec1().unwrap();
        assert!(
            m.iter().all(|v| v.abs() < 1e-5),
            "train output is centred: {m:?}"
        );
        // With momentum 1 the running stats are this batch's: eval output
        // equals train output up to the unbiased-variance factor.
        let eval = bn
            .forward(&[x], Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        let ratio = (eval
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            / train
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()) as f64;
        assert!((ratio - 7.0 / 8.0).abs() < 1e-3, "{ratio}");
    }

    #[test]
    fn lora_starts_at_the_base_trains_b_and_merges() {
        let (lora, store) = build("nn.lora_linear", &[("out", Value::Int(3))], &[4, 5]);
        assert_eq!(
            store.len(),
            2,
            "only A and B are trainable; the base is a plain tensor"
        );
        let x = randn(&[4, 5], 9);
        let y0 = lora
            .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        let grads = y0.sum_all().unwrap().backward().unwrap();
        for (name, v) in store.vars() {
            let g = grads.get(v.as_tensor()).expect("reached");
            let nonzero = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0;
            // B = 0 at init: A's gradient is exactly zero, B's is not.
            assert_eq!(nonzero, name.contains("lora_B"), "{name}");
            if name.contains("lora_B") {
                v.set(&(v.as_tensor() - (g * 0.5).unwrap()).unwrap())
                    .unwrap();
            }
        }
        let y1 = lora
            .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
            .unwrap()
            .remove(0);
        assert!(
            (&y1 - &y0)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 1e-3,
            "the update changed the output"
        );
    }

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
