//! Shape functions of the builtin kinds. Each returns one type per output
//! port, in the order the kind declares its ports.

use mer_registry::{Dim, Semantic, ShapeCtx, ShapeError, TensorType};

fn b() -> Dim {
    Dim::sym("B")
}

fn sz(n: i64) -> Dim {
    Dim::Size(n.max(0) as usize)
}

/// Number of classes in a label-set name such as `5class` or `3class_megc`.
fn classes_of(name: &str) -> Option<usize> {
    name.split("class").next().and_then(|n| n.parse().ok())
}

fn class_index(classes: Option<usize>) -> TensorType {
    TensorType {
        dims: vec![b()],
        dtype: mer_registry::DType::I64,
        semantic: Semantic::ClassIndex { classes },
    }
}

fn group_ids() -> TensorType {
    TensorType {
        dims: vec![b()],
        dtype: mer_registry::DType::I64,
        semantic: Semantic::GroupId,
    }
}

fn hw(c: &ShapeCtx) -> (Dim, Dim) {
    let s = c.ints("size");
    (
        sz(*s.first().unwrap_or(&64)),
        sz(*s.get(1).or(s.first()).unwrap_or(&64)),
    )
}

/// video, emotion, landmarks, box, subject: the ports every clip dataset has.
fn clip_ports(c: &ShapeCtx, classes: Option<usize>) -> Vec<TensorType> {
    let ch = if c.bool("color").unwrap_or(false) {
        3
    } else {
        1
    };
    let t = sz(c.int("frames").unwrap_or(1));
    let (h, w) = hw(c);
    vec![
        TensorType::f32(vec![b(), Dim::Size(ch), t.clone(), h, w], Semantic::Video),
        class_index(classes),
        TensorType::f32(
            vec![b(), t.clone(), Dim::Size(68), Dim::Size(2)],
            Semantic::Landmarks,
        ),
        TensorType::f32(vec![b(), t, Dim::Size(4)], Semantic::Boxes),
        group_ids(),
    ]
}

fn aus_and_flow(c: &ShapeCtx, mut v: Vec<TensorType>) -> Vec<TensorType> {
    let (h, w) = hw(c);
    v.push(TensorType::f32(
        vec![b(), Dim::Size(c.ints("aus").len())],
        Semantic::MultiLabel,
    ));
    v.push(TensorType::f32(
        vec![b(), Dim::Size(2), h, w],
        Semantic::Flow,
    ));
    v
}

/// `me.*` and `synth.me`: clip ports, then aus and flow.
pub fn me_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let classes = c.str("classes").and_then(classes_of);
    Ok(aus_and_flow(c, clip_ports(c, classes)))
}

/// `me.smic`: clip ports, then flow (SMIC has no AU labels, so no `aus`).
pub fn smic_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let classes = c.str("classes").and_then(classes_of);
    let mut v = aus_and_flow(c, clip_ports(c, classes));
    v.remove(v.len() - 2);
    Ok(v)
}

/// `dfer.*` and `synth.dfer`: clip ports.
pub fn dfer_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let classes = c
        .usize("classes")
        .or_else(|| c.str("classes").and_then(classes_of))
        .or(Some(7));
    let mut v = clip_ports(c, classes);
    v.push(TensorType::f32(
        vec![
            b(),
            sz(c.int("frames").unwrap_or(1)),
            Dim::Size(5),
            Dim::Size(2),
        ],
        Semantic::Landmarks,
    ));
    Ok(v)
}

/// `fer.*`: image, emotion, landmarks.
pub fn still_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (h, w) = hw(c);
    let classes = c.str("classes").and_then(classes_of).or(Some(7));
    Ok(vec![
        TensorType::f32(vec![b(), Dim::Size(3), h, w], Semantic::Image),
        class_index(classes),
        TensorType::f32(vec![b(), Dim::Size(68), Dim::Size(2)], Semantic::Landmarks),
    ])
}

/// `au.*`: image, aus, landmarks, subject.
pub fn au_data(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (h, w) = hw(c);
    Ok(vec![
        TensorType::f32(vec![b(), Dim::Size(3), h, w], Semantic::Image),
        TensorType::f32(
            vec![b(), Dim::Size(c.ints("aus").len())],
            Semantic::MultiLabel,
        ),
        group_ids(),
    ])
}

/// Same type out as in (activations, norms, dropout, gating).
pub fn same(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    Ok(vec![TensorType::features(t.dims.clone())])
}

/// `[.., D] → [.., out]`.
pub fn last_to_out(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    if t.rank() == 0 {
        return Err(ShapeError::new(format!(
            "`{}` needs at least one dimension, `{}` is a scalar",
            c.kind,
            c.source(0)
        ))
        .at_input(0));
    }
    Ok(vec![t.with_last(sz(c.int("out").unwrap_or(1)))])
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

pub fn conv2d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 2, "[B, C, H, W]", c.int("out"), false)
}
pub fn conv3d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 3, "[B, C, T, H, W]", c.int("out"), false)
}
pub fn pool2d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 2, "[B, C, H, W]", None, true)
}
pub fn pool3d(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    conv(c, 3, "[B, C, T, H, W]", None, true)
}

fn norm_dim(dim: i64, rank: usize) -> Option<usize> {
    let d = if dim < 0 { rank as i64 + dim } else { dim };
    (0..rank as i64).contains(&d).then_some(d as usize)
}

pub fn flatten(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    let start = c.usize("start").unwrap_or(1);
    if start >= t.rank() {
        return Err(ShapeError::new(format!(
            "`nn.flatten` from dim {start}, but `{}` is {t}",
            c.source(0)
        ))
        .at_input(0));
    }
    let mut dims: Vec<Dim> = t.dims[..start].to_vec();
    dims.push(t.dims[start..].iter().fold(Dim::Size(1), |a, d| a.mul(d)));
    Ok(vec![TensorType::features(dims)])
}

pub fn tokens(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    if t.rank() < 3 {
        return Err(ShapeError::new(format!(
            "`nn.tokens` expects a feature map [B, C, ...], but `{}` is {t}",
            c.source(0)
        ))
        .at_input(0));
    }
    let n = t.dims[2..].iter().fold(Dim::Size(1), |a, d| a.mul(d));
    Ok(vec![TensorType::f32(
        vec![t.dims[0].clone(), n, t.dims[1].clone()],
        Semantic::Tokens,
    )])
}

pub fn reshape(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.input(0)?;
    let shape = c.ints("shape");
    let known: Option<usize> = shape
        .iter()
        .filter(|&&d| d != -1)
        .map(|&d| usize::try_from(d).ok())
        .product();
    let mut dims = vec![t.dims[0].clone()];
    let holes = shape.iter().filter(|&&d| d == -1).count();
    if holes > 1 {
        return Err(ShapeError::new("`nn.reshape`: at most one -1"));
    }
    match (t.per_sample(), known) {
        (Some(n), Some(k)) if holes == 0 && n != k => {
            return Err(ShapeError::new(format!(
                "`nn.reshape` to {shape:?} needs {k} values per sample, `{}` has {n}",
                c.source(0)
            ))
            .at_input(0))
        }
        (Some(n), Some(k)) if holes == 1 && (k == 0 || n % k != 0) => {
            return Err(ShapeError::new(format!(
                "`nn.reshape` to {shape:?}: {n} values per sample do not divide into {k}",
            ))
            .at_input(0))
        }
        _ => {}
    }
    for &d in &shape {
        dims.push(if d == -1 {
            match (t.per_sample(), known) {
                (Some(n), Some(k)) if k > 0 => Dim::Size(n / k),
                _ => Dim::sym("?"),
            }
        } else {
            sz(d)
        });
    }
    Ok(vec![TensorType::features(dims)])
}

pub fn pool_tokens(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 3, "tokens [B, N, D]")?;
    Ok(vec![TensorType::features(vec![
        t.dims[0].clone(),
        t.dims[2].clone(),
    ])])
}

pub fn concat(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let first = c.input(0)?;
    let rank = first.rank();
    let dim = norm_dim(c.int("dim").unwrap_or(-1), rank).ok_or_else(|| {
        ShapeError::new(format!(
            "`nn.concat`: dim {} is out of range for {first}",
            c.int("dim").unwrap_or(-1)
        ))
    })?;
    let mut out = first.dims.clone();
    for (i, t) in c.inputs.iter().enumerate().skip(1) {
        if t.rank() != rank {
            return Err(ShapeError::new(format!(
                "`nn.concat`: `{}` is {first} but `{}` is {t}; inputs need the same rank",
                c.source(0),
                c.source(i)
            ))
            .at_input(i)
            .help("flatten both sides first (`nn.flatten`) or pool the tokens"));
        }
        for (d, (a, x)) in out.iter().zip(&t.dims).enumerate() {
            if d != dim && !a.compatible(x) {
                return Err(ShapeError::new(format!(
                    "`nn.concat` along dim {dim}: `{}` is {first} but `{}` is {t} (dim {d} differs: {a} vs {x})",
                    c.source(0),
                    c.source(i)
                ))
                .at_input(i));
            }
        }
        out[dim] = out[dim].add(&t.dims[dim]);
    }
    Ok(vec![TensorType::features(out)])
}

pub fn stack(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let first = c.input(0)?;
    for (i, t) in c.inputs.iter().enumerate().skip(1) {
        if t.rank() != first.rank() || !t.dims.iter().zip(&first.dims).all(|(a, b)| a.compatible(b))
        {
            return Err(ShapeError::new(format!(
                "`nn.stack` needs equal shapes: `{}` is {first}, `{}` is {t}",
                c.source(0),
                c.source(i)
            ))
            .at_input(i));
        }
    }
    let dim = c.usize("dim").unwrap_or(1).min(first.rank());
    let mut dims = first.dims.clone();
    dims.insert(dim, Dim::Size(c.inputs.len()));
    Ok(vec![TensorType::f32(dims, Semantic::Tokens)])
}

pub fn add(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let first = c.input(0)?;
    for (i, t) in c.inputs.iter().enumerate().skip(1) {
        let ok = t.rank() == first.rank()
            && t.dims
                .iter()
                .zip(&first.dims)
                .all(|(a, b)| a.compatible(b) || a.size() == Some(1) || b.size() == Some(1));
        if !ok {
            return Err(ShapeError::new(format!(
                "`nn.add` needs broadcastable shapes: `{}` is {first}, `{}` is {t}",
                c.source(0),
                c.source(i)
            ))
            .at_input(i));
        }
    }
    Ok(vec![TensorType::features(first.dims.clone())])
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

pub fn self_attention(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 3, "tokens [B, N, D]")?;
    heads_divide(c, t, 0)?;
    Ok(vec![TensorType::f32(t.dims.clone(), Semantic::Tokens)])
}

pub fn cross_attention(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let q = c.expect_rank(0, 3, "queries [B, Nq, D]")?;
    c.expect_rank(1, 3, "context [B, Nk, D]")?;
    heads_divide(c, q, 0)?;
    Ok(vec![TensorType::f32(q.dims.clone(), Semantic::Tokens)])
}

pub fn decoder(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

pub fn patch_embed(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

pub fn tubelet_embed(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

/// `llm.causal`: every prefix is `[B, D]` (one token) or `[B, N, D]`, all
/// in the LLM's width.
pub fn llm_causal(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let mut width: Option<Dim> = None;
    let mut tokens = Dim::Size(0);
    for (i, t) in c.inputs.iter().enumerate() {
        let n =
            match t.rank() {
                2 => Dim::Size(1),
                3 => t.dims[1].clone(),
                _ => return Err(ShapeError::new(format!(
                    "`llm.causal` prefix tokens are [B, D] or [B, N, D]; `{}` is {t}",
                    c.source(i)
                ))
                .at_input(i)
                .help(
                    "project features to the LLM width first (e.g. `nn.linear(x) { out = 1536 }`)",
                )),
            };
        tokens = tokens.add(&n);
        let d = t.last().cloned().unwrap_or(Dim::sym("D_llm"));
        if let Some(w) = &width {
            if !w.compatible(&d) {
                return Err(ShapeError::new(format!("`llm.causal`: prefix `{}` has width {d}, an earlier prefix has {w}; all prefixes live in the LLM's width", c.source(i))).at_input(i));
            }
        } else {
            width = Some(d);
        }
    }
    let h = width.unwrap_or(Dim::sym("D_llm"));
    let bt = vec![b(), Dim::sym("T"), h.clone()];
    Ok(vec![
        TensorType::features(vec![b(), h.clone()]),
        TensorType::f32(bt, Semantic::Tokens),
        TensorType::f32(vec![b(), tokens, h], Semantic::Tokens),
        TensorType::features(vec![b(), Dim::sym("T"), Dim::sym("V")]),
    ])
}

pub fn llm_prompt(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let batch = c
        .inputs
        .first()
        .and_then(|t| t.dims.first().cloned())
        .unwrap_or_else(b);
    Ok(vec![TensorType::f32(
        vec![
            batch,
            sz(c.int("tokens").unwrap_or(1)),
            sz(c.int("dim").unwrap_or(1)),
        ],
        Semantic::Tokens,
    )])
}

/// Class scores `[B, C]` against class-index targets.
fn classification(c: &ShapeCtx, what: &str) -> Result<(), ShapeError> {
    let pred = c.input(0)?;
    let target = c.input(1)?;
    let classes = match &target.semantic {
        Semantic::ClassIndex { classes } => *classes,
        other => {
            let alt = if *other == Semantic::MultiLabel {
                " — for multi-label AU targets use loss.bce / loss.asymmetric / metric.f1"
            } else {
                ""
            };
            return Err(ShapeError::new(format!(
                "`{}` needs class-index targets, but `{}` is {}{alt}",
                c.kind,
                c.source(1),
                other.describe()
            ))
            .at_input(1));
        }
    };
    if pred.rank() != 2 {
        return Err(ShapeError::new(format!(
            "`{}` expects {what} [B, C], `{}` is {pred}",
            c.kind,
            c.source(0)
        ))
        .at_input(0));
    }
    if let (Some(n), Some(k)) = (classes, pred.dims[1].size()) {
        if n != k {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` scores {k} classes, but `{}` has {n} classes",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(0)
            .help(format!("set the head's `out = {n}`")));
        }
    }
    Ok(())
}

/// Per-label scores `[B, K]` against multi-label targets `[B, K]`.
fn multilabel(c: &ShapeCtx) -> Result<(), ShapeError> {
    let pred = c.input(0)?;
    let target = c.input(1)?;
    if target.semantic != Semantic::MultiLabel {
        let alt = if matches!(target.semantic, Semantic::ClassIndex { .. }) {
            " — for class labels use loss.cross_entropy / metric.uf1"
        } else {
            ""
        };
        return Err(ShapeError::new(format!(
            "`{}` needs multi-label targets, but `{}` is {}{alt}",
            c.kind,
            c.source(1),
            target.semantic.describe()
        ))
        .at_input(1));
    }
    let k = target.last().and_then(Dim::size);
    if pred.rank() != 2 {
        return Err(ShapeError::new(format!(
            "`{}` expects per-label scores [B, K], `{}` is {pred}",
            c.kind,
            c.source(0)
        ))
        .at_input(0));
    }
    if let (Some(k), Some(p)) = (k, pred.dims[1].size()) {
        if k != p {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` scores {p} labels, but `{}` has {k}",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(0)
            .help(format!(
                "the dataset provides {k} AU labels; set the head's `out = {k}`"
            )));
        }
    }
    Ok(())
}

/// Regression: the same number of values per sample.
fn regression(c: &ShapeCtx) -> Result<(), ShapeError> {
    let pred = c.input(0)?;
    let target = c.input(1)?;
    if let (Some(a), Some(b)) = (pred.per_sample(), target.per_sample()) {
        if a != b {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` is {pred} ({a} per sample) but `{}` is {target} ({b} per sample)",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(0)
            .help(format!("set the head's `out = {b}`")));
        }
    }
    Ok(())
}

pub fn loss_classification(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    classification(c, "class scores").map(|_| vec![])
}
pub fn loss_multilabel(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    multilabel(c).map(|_| vec![])
}
pub fn loss_regression(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    regression(c).map(|_| vec![])
}
pub fn loss_pairs(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    if let (Some(x), Some(y)) = (a.last().and_then(Dim::size), b.last().and_then(Dim::size)) {
        if x != y {
            return Err(ShapeError::new(format!(
                "`{}`: `{}` has width {x}, `{}` has width {y}",
                c.kind,
                c.source(0),
                c.source(1)
            ))
            .at_input(1));
        }
    }
    Ok(vec![])
}
pub fn loss_any(_c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    Ok(vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::Value;
    use std::collections::BTreeMap;

    fn ctx<'a>(
        params: &'a BTreeMap<String, Value>,
        inputs: &'a [TensorType],
        sources: &'a [String],
    ) -> ShapeCtx<'a> {
        ShapeCtx {
            kind: "nn.test",
            params,
            inputs,
            sources,
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

    #[test]
    fn concat_sums_and_reports_mismatch() {
        let p = BTreeMap::from([("dim".to_string(), Value::Int(-1))]);
        let x = [
            TensorType::features(vec![b(), Dim::Size(10368)]),
            TensorType::features(vec![b(), Dim::Size(256)]),
        ];
        let s = ["cnn.mid".to_string(), "cnn.high".to_string()];
        assert_eq!(
            concat(&ctx(&p, &x, &s)).unwrap()[0].to_string(),
            "[B, 10624]"
        );
        let y = [
            TensorType::features(vec![b(), Dim::Size(10368)]),
            TensorType::features(vec![b(), Dim::Size(4), Dim::Size(256)]),
        ];
        let e = concat(&ctx(&p, &y, &s)).unwrap_err();
        assert_eq!(e.input, Some(1));
    }

    #[test]
    fn targets_are_checked_by_meaning() {
        let p = BTreeMap::new();
        let x = [
            TensorType::features(vec![b(), Dim::Size(8)]),
            class_index(Some(5)),
        ];
        let s = ["aus.out".to_string(), "clips.emotion".to_string()];
        let e = loss_multilabel(&ctx(&p, &x, &s)).unwrap_err();
        assert!(
            e.message.contains("needs multi-label targets"),
            "{}",
            e.message
        );
        let e = loss_classification(&ctx(&p, &x, &s)).unwrap_err();
        assert!(
            e.message
                .contains("scores 8 classes, but `clips.emotion` has 5"),
            "{}",
            e.message
        );
    }
}
