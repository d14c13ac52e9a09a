//! Normalisation in differentiable forms (candle-nn's fused `layer_norm`
//! and `rms_norm` record no backward pass): `nn.layernorm`, `nn.rmsnorm`,
//! and `nn.batchnorm` with running statistics.

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    vec![
        unary(
            "nn.batchnorm",
            "Batch normalisation over the channel dimension; running statistics in eval mode.",
        )
        .float(
            "momentum",
            Some(0.1),
            Some(0.0),
            Some(1.0),
            "Running-statistics momentum.",
        )
        .float("eps", Some(1e-5), Some(0.0), None, "Numerical floor.")
        .shapes(same)
        .factory(build_batchnorm)
        .example(&[], &[&[4, 3, 5]])
        .build(),
        unary(
            "nn.layernorm",
            "Layer normalisation in a differentiable form (candle's fused op records no backward).",
        )
        .float("eps", Some(1e-5), Some(0.0), None, "Numerical floor.")
        .bool("affine", true, "Learn scale and shift.")
        .shapes(same)
        .factory(build_layernorm)
        .example(&[], &[&[3, 6]])
        .build(),
        unary("nn.rmsnorm", "RMS normalisation in a differentiable form.")
            .float("eps", Some(1e-6), Some(0.0), None, "Numerical floor.")
            .shapes(same)
            .factory(build_rmsnorm)
            .example(&[], &[&[3, 6]])
            .build(),
    ]
}

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

fn build_layernorm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_rmsnorm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

fn build_batchnorm(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
}
