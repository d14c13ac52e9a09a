//! `mer new plugin NAME`: the files of a new plugin crate.
//!
//! The template is a complete, working plugin (one trainable component with
//! a shape function, a factory and a unit test), so a new paper starts from
//! something that builds, loads and passes its own test.

use std::path::PathBuf;

/// Why a name cannot be a plugin namespace.
pub fn check_name(name: &str, builtin: &[String]) -> Result<(), String> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!("`{name}` is not a plugin name: use lowercase letters, digits and `_`, starting with a letter"));
    }
    if builtin.iter().any(|b| b == name) {
        return Err(format!("`{name}` is a builtin namespace"));
    }
    Ok(())
}

/// `(relative path, contents)` of every file of plugin `name`.
pub fn plugin_files(name: &str) -> Vec<(PathBuf, String)> {
    let crate_name = format!("mer-plugin-{}", name.replace('_', "-"));
    let lib_name = format!("mer_plugin_{name}");
    let cargo = format!(
        r#"[package]
name = "{crate_name}"
description = "mer plugin `{name}`"
version.workspace = true
edition.workspace = true
license.workspace = true

[lib]
name = "{lib_name}"
# cdylib: loaded by `use {name}`; rlib: linked statically by tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
# candle comes only through the SDK: one copy in the process.
mer-registry.workspace = true
"#
    );
    let lib = format!(
        r#"//! mer plugin `{name}`.
//!
//! Recipes enable it with `use {name}`; its kinds live under `{name}.`.

use mer_registry::candle::{{Result as CResult, Tensor}};
use mer_registry::component::input;
use mer_registry::plugin::Registrar;
use mer_registry::{{
    export_plugin, BuildCtx, BuildError, Component, Dim, Init, KindBuilder, Mode, Role, SeededRng,
    ShapeCtx, ShapeError, TensorType,
}};

/// A gated projection: `y = (x·W + b) ⊙ σ(x·G)`.
struct GatedLinear {{
    weight: Tensor,
    bias: Tensor,
    gate: Tensor,
}}

impl Component for GatedLinear {{
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {{
        let x = input(inputs, 0, "{name}.gated_linear")?;
        let y = x
            .broadcast_matmul(&self.weight)?
            .broadcast_add(&self.bias)?;
        let g = mer_registry::candle_nn::ops::sigmoid(&x.broadcast_matmul(&self.gate)?)?;
        Ok(vec![(y * g)?])
    }}
}}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {{
    // The input width comes from the producer: recipes never repeat it.
    let d_in = ctx.input_width(0)?;
    let d_out = ctx.usize("out")?;
    let weight = ctx.param(
        "weight",
        &[d_in, d_out],
        Init::KaimingUniform {{ fan_in: d_in }},
    )?;
    let bias = ctx.param("bias", &[d_out], Init::Zeros)?;
    let gate = ctx.param(
        "gate",
        &[d_in, d_out],
        Init::KaimingUniform {{ fan_in: d_in }},
    )?;
    Ok(Box::new(GatedLinear {{ weight, bias, gate }}))
}}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {{
    let t = c.input(0)?;
    if t.rank() < 2 {{
        return Err(ShapeError::new(format!(
            "`{name}.gated_linear` expects [B, .., D], `{{}}` is {{t}}",
            c.source(0)
        ))
        .at_input(0));
    }}
    Ok(vec![t.with_last(Dim::Size(c.usize("out").unwrap_or(1)))])
}}

/// Registers this plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {{
    r.kind(
        KindBuilder::new("{name}.gated_linear", Role::Component)
            .doc("A linear map gated by a sigmoid of the input.")
            .input("x", "features [B, .., D]")
            .output("out", "features [B, .., out]")
            .int("out", None, Some(1), "Output width.")
            .shapes(shapes)
            .factory(build)
            .build(),
    );
}}

export_plugin!("{name}", register);

#[cfg(test)]
mod tests {{
    use super::*;
    use mer_registry::candle::{{DType, Device, Var}};
    use mer_registry::{{ParamStore, Registry, Value}};
    use std::collections::BTreeMap;

    #[test]
    fn builds_runs_and_trains() {{
        let mut reg = Registry::new();
        reg.add_static_plugin("{name}", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        let kind = reg.get("{name}.gated_linear").unwrap();
        let mut store = ParamStore::new(1, Device::Cpu);
        let params = BTreeMap::from([("out".to_string(), Value::Int(2))]);
        let inputs = [TensorType::features(vec![Dim::sym("B"), Dim::Size(3)])];
        let c = kind.build("g", &params, &inputs, &mut store).unwrap();
        let x = Tensor::ones((4, 3), DType::F32, &Device::Cpu).unwrap();
        let y = c
            .forward(&[x], Mode::Train, &mut SeededRng::new(0))
            .unwrap();
        assert_eq!(y[0].dims(), &[4, 2]);
        // Gradients reach every parameter.
        let grads = y[0].sum_all().unwrap().backward().unwrap();
        let vars: Vec<&Var> = store.vars().map(|(_, v)| v).collect();
        assert_eq!(vars.len(), 3);
        for v in vars {{
            assert!(grads.get(v.as_tensor()).is_some());
        }}
    }}
}}
"#
    );
    let recipe = format!(
        r#"mer 0.1
use {name}

// Example recipe for plugin `{name}` on generated data.

experiment {name}_example {{
  title = "{name}: example on generated micro-expressions"
  seed  = 1
  data clips = synth.me {{ subjects = 4, clips_per_subject = 6, frames = 4, size = [16, 16], aus = [1, 2, 4, 12] }}
  model {{
    feat = nn.flatten(clips.video)
    aus  = {name}.gated_linear(feat) {{ out = 4 }}
  }}
  loss      = loss.bce(aus, clips.aus)
  optimizer = optim.adam {{ lr = 1e-3 }}
  train     {{ epochs = 2, batch = 8 }}
  protocol  = protocol.loso
  metrics   = [metric.f1(aus, clips.aus)]
}}
"#
    );
    vec![
        (PathBuf::from(format!("plugins/{name}/Cargo.toml")), cargo),
        (PathBuf::from(format!("plugins/{name}/src/lib.rs")), lib),
        (PathBuf::from(format!("recipes/{name}/example.mer")), recipe),
    ]
}
