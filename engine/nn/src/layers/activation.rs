//! Element-wise activations (`nn.gelu`, `nn.relu`, `nn.silu`,
//! `nn.sigmoid`) and seeded `nn.dropout`.

use super::*;

/// The kinds this file implements.
pub(super) fn kinds() -> Vec<Kind> {
    vec![
        unary(
            "nn.dropout",
            "Dropout with mer's seeded RNG; identity in eval mode.",
        )
        .float("p", Some(0.1), Some(0.0), Some(1.0), "Drop probability.")
        .bool("channelwise", false, "Drop whole channels (Dropout2d/3d).")
        .shapes(same)
        .factory(build_dropout)
        .example(&[("p", Value::Float(0.5))], &[&[4, 6]])
        .build(),
        unary("nn.gelu", "GELU (exact erf form).")
            .shapes(same)
            .factory(build_gelu)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.relu", "ReLU.")
            .shapes(same)
            .factory(build_relu)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.silu", "SiLU.")
            .shapes(same)
            .factory(build_silu)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.sigmoid", "Logistic sigmoid.")
            .shapes(same)
            .factory(build_sigmoid)
            .example(&[], &[&[3, 5]])
            .build(),
    ]
}

pub(super) fn act() -> (ParamType, Option<Value>) {
    (
        ParamType::Str {
            choices: ["gelu", "relu", "silu", "tanh", "none"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        },
        Some(Value::Str("gelu".into())),
    )
}

#[derive(Clone, Copy)]
pub(super) enum Act {
    Relu,
    Gelu,
    Silu,
    Sigmoid,
    Tanh,
    Identity,
}

impl Act {
    pub(super) fn parse(s: &str) -> Act {
        match s {
            "relu" => Act::Relu,
            "gelu" => Act::Gelu,
            "silu" => Act::Silu,
            "sigmoid" => Act::Sigmoid,
            "tanh" => Act::Tanh,
            _ => Act::Identity,
        }
    }
    pub(super) fn apply(self, x: &Tensor) -> CResult<Tensor> {
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

fn build_relu(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Relu, "nn.relu")))
}

fn build_gelu(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Gelu, "nn.gelu")))
}

fn build_silu(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Silu, "nn.silu")))
}

fn build_sigmoid(_ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Activation(Act::Sigmoid, "nn.sigmoid")))
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

fn build_dropout(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    Ok(Box::new(Dropout {
        p: ctx.float("p")?,
        channelwise: ctx.bool("channelwise")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
}
