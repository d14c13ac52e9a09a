//! Convolution and pooling over images and clips (`nn.conv2d`, `nn.conv3d`,
//! `nn.{max,avg}pool{2,3}d`) and squeeze-and-excitation (`nn.se`). candle
//! has no conv3d or pool3d: both are composed from 2-D ops over stacked
//! temporal taps and checked against naive references.

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    vec![
        unary("nn.conv2d", "2-D convolution over [B, C, H, W].")
            .int("out", None, Some(1), "Output channels.")
            .ints("kernel", Some(&[3, 3]), Some(1), "Kernel [kh, kw].")
            .ints("stride", Some(&[1, 1]), Some(1), "Stride [sh, sw].")
            .ints("padding", Some(&[0, 0]), Some(0), "Zero padding [ph, pw].")
            .int("groups", Some(1), Some(1), "Channel groups.")
            .bool("bias", true, "Learn a bias.")
            .shapes(conv2d)
            .factory(build_conv2d)
            .example(&[("out", Value::Int(3)), ("padding", Value::List(vec![Value::Int(1), Value::Int(1)]))], &[&[2, 2, 5, 5]])
            .build(),
        unary("nn.conv3d", "3-D convolution over [B, C, T, H, W], composed from one conv2d over stacked temporal taps (candle has no conv3d).")
            .int("out", None, Some(1), "Output channels.")
            .ints("kernel", Some(&[3, 3, 3]), Some(1), "Kernel [kt, kh, kw].")
            .ints("stride", Some(&[1, 1, 1]), Some(1), "Stride [st, sh, sw].")
            .ints("padding", Some(&[0, 0, 0]), Some(0), "Zero padding [pt, ph, pw].")
            .bool("bias", true, "Learn a bias.")
            .shapes(conv3d)
            .factory(build_conv3d)
            .example(&[("out", Value::Int(3)), ("kernel", Value::List(vec![Value::Int(2), Value::Int(3), Value::Int(3)])), ("padding", Value::List(vec![Value::Int(1), Value::Int(1), Value::Int(1)]))], &[&[2, 2, 4, 5, 5]])
            .build(),
        unary("nn.maxpool2d", "Max pooling over [B, C, H, W] (kernel = stride keeps the backward pass exact).")
            .ints("kernel", Some(&[2, 2]), Some(1), "Window [kh, kw].")
            .shapes(pool2d)
            .factory(build_maxpool)
            .example(&[], &[&[2, 2, 4, 4]])
            .build(),
        unary("nn.avgpool2d", "Average pooling over [B, C, H, W].")
            .ints("kernel", Some(&[2, 2]), Some(1), "Window [kh, kw].")
            .shapes(pool2d)
            .factory(build_avgpool)
            .example(&[], &[&[2, 2, 4, 4]])
            .build(),
        unary("nn.maxpool3d", "Max pooling over [B, C, T, H, W], composed from 2-D pooling and a temporal max.")
            .ints("kernel", Some(&[2, 2, 2]), Some(1), "Window [kt, kh, kw].")
            .shapes(pool3d)
            .factory(build_maxpool)
            .example(&[], &[&[1, 2, 4, 4, 4]])
            .build(),
        unary("nn.avgpool3d", "Average pooling over [B, C, T, H, W].")
            .ints("kernel", Some(&[2, 2, 2]), Some(1), "Window [kt, kh, kw].")
            .shapes(pool3d)
            .factory(build_avgpool)
            .example(&[], &[&[1, 2, 4, 4, 4]])
            .build(),
        unary("nn.se", "Squeeze-and-excitation channel gating.")
            .int("reduction", Some(16), Some(1), "Bottleneck reduction ratio.")
            .shapes(same)
            .factory(build_se)
            .example(&[("reduction", Value::Int(2))], &[&[2, 4, 3, 3]])
            .build(),
    ]
}

/// Output length of a convolution or pooling along one axis.
fn conv_len(
    c: &ShapeCtx,
    axis: &str,
    input: &Dim,
    k: i64,
    s: i64,
    p: i64,
) -> Result<Dim, ShapeError> {
    match input {
        Dim::Size(n) => {
            let padded = *n as i64 + 2 * p;
            if padded < k {
                return Err(ShapeError::new(format!(
                    "`{}`: kernel {k} is larger than the {axis} size {n}{} of `{}`",
                    c.kind,
                    if p > 0 {
                        format!(" (+{} padding)", 2 * p)
                    } else {
                        String::new()
                    },
                    c.source(0)
                ))
                .at_input(0)
                .help("use a smaller kernel, add padding, or pool less before this layer"));
            }
            Ok(Dim::Size(((padded - k) / s.max(1) + 1) as usize))
        }
        Dim::Sym(x) => Ok(Dim::Sym(format!("{x}'"))),
    }
}

fn conv(
    c: &ShapeCtx,
    spatial: usize,
    layout: &str,
    out_ch: Option<i64>,
    stride_is_kernel: bool,
) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, spatial + 2, layout)?;
    let k = c.ints("kernel");
    let s = if stride_is_kernel {
        k.clone()
    } else {
        c.ints("stride")
    };
    let p = c.ints("padding");
    let names = ["time", "height", "width"];
    let names = &names[3 - spatial..];
    let mut dims = vec![
        t.dims[0].clone(),
        out_ch.map(sz).unwrap_or_else(|| t.dims[1].clone()),
    ];
    for (i, (axis, len)) in names.iter().zip(&t.dims[2..]).enumerate() {
        let ki = *k.get(i).unwrap_or(&1);
        let si = *s.get(i).unwrap_or(&1);
        let pi = *p.get(i).unwrap_or(&0);
        dims.push(conv_len(c, axis, len, ki, si, pi)?);
    }
    Ok(vec![TensorType::features(dims)])
}

fn conv2d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 2, "[B, C, H, W]", c.int("out"), false)
}

fn conv3d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 3, "[B, C, T, H, W]", c.int("out"), false)
}

fn pool2d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 2, "[B, C, H, W]", None, true)
}

fn pool3d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 3, "[B, C, T, H, W]", None, true)
}

pub(super) struct Conv {
    pub(super) w: Tensor,
    pub(super) b: Option<Tensor>,
    pub(super) stride: usize,
    pub(super) padding: usize,
    pub(super) groups: usize,
    /// `Some((kt, st, pt))` for a conv3d composed from conv2d.
    pub(super) temporal: Option<(usize, usize, usize)>,
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

fn build_conv2d(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_conv3d(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_maxpool(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_pool(ctx, true)
}

fn build_avgpool(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_se(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let c = *input_dims(ctx, 0)?.first().unwrap_or(&1);
    let hidden = (c / ctx.usize("reduction")?.max(1)).max(1);
    Ok(Box::new(Se {
        down: Linear::new(ctx, "down.", c, hidden, true)?,
        up: Linear::new(ctx, "up.", hidden, c, true)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn conv3d_matches_a_naive_reference() {
        let (b, c, t, h, w) = (2, 2, 5, 6, 5);
        let (o, kt, kh, kw) = (3, 2, 3, 2);
        let (st, pt, ph) = (2, 1, 1);
        let (conv, store) = build(
            "nn.conv3d",
            &[
                ("out", Value::Int(o as i64)),
                ("kernel", int_list(&[kt as i64, kh as i64, kw as i64])),
                ("stride", int_list(&[st as i64, 1, 1])),
                ("padding", int_list(&[pt as i64, ph as i64, ph as i64])),
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
            let (p, _) = build(kind, &[("kernel", int_list(&[2, 2, 3]))], &dims);
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
    fn conv3d_follows_pytorch_arithmetic() {
        let mut p = BTreeMap::new();
        p.insert("out".into(), Value::Int(32));
        p.insert(
            "kernel".into(),
            Value::List(vec![Value::Int(1), Value::Int(5), Value::Int(5)]),
        );
        p.insert(
            "stride".into(),
            Value::List(vec![Value::Int(1), Value::Int(1), Value::Int(1)]),
        );
        p.insert(
            "padding".into(),
            Value::List(vec![Value::Int(0), Value::Int(0), Value::Int(0)]),
        );
        let x = [TensorType::f32(
            vec![
                b(),
                Dim::Size(1),
                Dim::Size(5),
                Dim::Size(64),
                Dim::Size(64),
            ],
            Semantic::Video,
        )];
        let s = ["clips.video".to_string()];
        let out = conv3d(&ctx(&p, &x, &s)).unwrap();
        assert_eq!(out[0].to_string(), "[B, 32, 5, 60, 60]");
        p.insert(
            "kernel".into(),
            Value::List(vec![Value::Int(9), Value::Int(5), Value::Int(5)]),
        );
        let e = conv3d(&ctx(&p, &x, &s)).unwrap_err();
        assert!(
            e.message
                .contains("kernel 9 is larger than the time size 5"),
            "{}",
            e.message
        );
    }
}
