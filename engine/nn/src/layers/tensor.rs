//! Tensor plumbing between layers: `nn.flatten`, `nn.tokens`, `nn.reshape`,
//! `nn.pool_tokens`, `nn.concat`, `nn.stack` and `nn.add`.

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    vec![
        unary("nn.flatten", "Flattens dimensions from `start` on.")
            .int("start", Some(1), Some(0), "First dimension to flatten.")
            .shapes(flatten)
            .factory(build_flatten)
            .example(&[], &[&[2, 3, 4]])
            .build(),
        unary("nn.tokens", "Feature map [B, C, ...] → tokens [B, N, C], N the product of the dims after C (a convolutional stem feeding attention).")
            .bool("positions", false, "Add a learned position embedding, so attention and pooling downstream know where each token came from.")
            .shapes(tokens)
            .factory(build_tokens)
            .example(&[("positions", Value::Bool(true))], &[&[2, 3, 2, 2, 2]])
            .build(),
        unary("nn.reshape", "Reshapes to `shape` (one entry may be -1).")
            .param("shape", ParamType::List(Box::new(ParamType::Int { min: Some(-1), max: None })), None, "Target shape after the batch dimension.")
            .shapes(reshape)
            .factory(build_reshape)
            .example(&[("shape", Value::List(vec![Value::Int(3), Value::Int(-1)]))], &[&[2, 4, 3]])
            .build(),
        unary("nn.pool_tokens", "Reduces a token sequence [B, N, D] to [B, D].")
            .choice("mode", &["mean", "max", "first", "last"], Some("mean"), "Reduction.")
            .shapes(pool_tokens)
            .factory(build_pool_tokens)
            .example(&[], &[&[2, 4, 5]])
            .build(),
        KindBuilder::new("nn.concat", Role::Component)
            .doc("Concatenates inputs along `dim` (features by default).")
            .variadic_input("xs", "tensors to join")
            .output("out", "joined tensor")
            .int("dim", Some(-1), None, "Dimension (negative counts from the end).")
            .shapes(concat)
            .factory(build_concat)
            .example(&[], &[&[2, 3], &[2, 4]])
            .build(),
        KindBuilder::new("nn.stack", Role::Component)
            .doc("Stacks inputs along a new dimension (e.g. several tokens into a sequence).")
            .variadic_input("xs", "tensors of one shape")
            .output("out", "stacked tensor")
            .int("dim", Some(1), Some(0), "Position of the new dimension.")
            .shapes(stack)
            .factory(build_stack)
            .example(&[], &[&[2, 3], &[2, 3]])
            .build(),
        KindBuilder::new("nn.add", Role::Component)
            .doc("Element-wise sum of inputs (with broadcasting).")
            .variadic_input("xs", "tensors")
            .output("out", "sum")
            .shapes(add)
            .factory(build_add)
            .example(&[], &[&[2, 3], &[2, 3]])
            .build(),
    ]
}

fn flatten(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

fn tokens(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

fn reshape(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

fn pool_tokens(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 3, "tokens [B, N, D]")?;
    Ok(vec![TensorType::features(vec![
        t.dims[0].clone(),
        t.dims[2].clone(),
    ])])
}

fn concat(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let first = c.input(0)?;
    let rank = first.rank();
    let dim = shape_dim(c.int("dim").unwrap_or(-1), rank).ok_or_else(|| {
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

fn stack(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

fn add(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
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

fn shape_dim(dim: i64, rank: usize) -> Option<usize> {
    let d = if dim < 0 { rank as i64 + dim } else { dim };
    (0..rank as i64).contains(&d).then_some(d as usize)
}

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

fn build_flatten(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_tokens(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_reshape(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_concat(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Join {
        dim: ctx.int("dim")?,
        stack: false,
    }))
}

fn build_stack(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_add(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_pool_tokens(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let mode = match ctx.str("mode")? {
        "max" => "max",
        "first" => "first",
        "last" => "last",
        _ => "mean",
    };
    Ok(Box::new(PoolTokens(mode)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
}
