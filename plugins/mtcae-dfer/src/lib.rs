//! mer plugin `mtcae_dfer`: MTCAE-DFER (Xiang et al., IJCB 2025).
//!
//! Recipes enable it with `use mtcae_dfer`. The method is a shared video
//! encoder whose tokens feed three cascaded ViT decoders, one per task
//! (face box → landmarks → expression): each decoder queries the previous
//! decoder's output and attends to the shared encoder tokens.
//!
//! Kinds:
//! - `mtcae_dfer.videomae`: a VideoMAE ViT encoder (tubelet embedding,
//!   fixed sinusoidal positions, pre-norm blocks). With `weights` it loads a
//!   Hugging Face VideoMAE checkpoint (safetensors); without, it starts from
//!   a seeded initialisation.
//! - `mtcae_dfer.decoder`: the notebook's `MTDecoder` (cross-attention and
//!   MLP blocks, no self-attention).
//! - `mtcae_dfer.head`: mean over tokens → LayerNorm → dropout → linear.
//!
//! Sizes and defaults follow the authors' executed notebook, as recovered
//! in the project's research notes (`deft-mpa-mtcae.md` §3).

mod videomae;

use mer_registry::candle::{Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::layers::{dropout, Attention, LayerNorm, Linear};
use mer_registry::plugin::Registrar;
use mer_registry::{
    export_plugin, BuildCtx, BuildError, Component, Dim, KindBuilder, Mode, Role, SeededRng,
    Semantic, ShapeCtx, ShapeError, TensorType, Value,
};

/// One `MTBlock`: `y += MHA(LN(y), x)`, then `y += MLP(LN(y))`.
struct Block {
    norm_q: LayerNorm,
    attn: Attention,
    norm_mlp: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    p: f64,
}

/// The notebook's `MTDecoder`: the memory is normalised once, then every
/// block cross-attends from the query stream to it.
struct Decoder {
    norm_memory: LayerNorm,
    blocks: Vec<Block>,
}

impl Component for Decoder {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let mut y = input(inputs, 0, "mtcae_dfer.decoder")?.clone();
        let x = self
            .norm_memory
            .apply(input(inputs, 1, "mtcae_dfer.decoder")?)?;
        for b in &self.blocks {
            let h = b.norm_q.apply(&y)?;
            y = (&y + b.attn.apply(&h, &x, None, mode, rng)?)?;
            let h = b.norm_mlp.apply(&y)?;
            let h = dropout(&b.fc1.apply(&h)?.gelu_erf()?, b.p, false, mode, rng)?;
            // The notebook's MLP ends in a GELU too (Dense(proj, gelu)).
            let h = dropout(&b.fc2.apply(&h)?.gelu_erf()?, b.p, false, mode, rng)?;
            y = (&y + h)?;
        }
        Ok(vec![y])
    }
}

fn build_decoder(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let dm = ctx.input_width(1)?;
    let (depth, heads, key_dim, mlp) = (
        ctx.usize("depth")?,
        ctx.usize("heads")?,
        ctx.usize("key_dim")?,
        ctx.usize("mlp")?,
    );
    let (p, eps) = (ctx.float("dropout")?, ctx.float("eps")?);
    let norm_memory = LayerNorm::new(ctx, "norm_memory.", dm, eps)?;
    let mut blocks = Vec::new();
    for l in 0..depth {
        let mut attn = Attention::new(ctx, &format!("{l}.attn."), d, dm, heads, key_dim)?;
        attn.dropout = p;
        blocks.push(Block {
            norm_q: LayerNorm::new(ctx, &format!("{l}.norm_q."), d, eps)?,
            attn,
            norm_mlp: LayerNorm::new(ctx, &format!("{l}.norm_mlp."), d, eps)?,
            fc1: Linear::new(ctx, &format!("{l}.fc1."), d, mlp, true)?,
            fc2: Linear::new(ctx, &format!("{l}.fc2."), mlp, d, true)?,
            p,
        });
    }
    Ok(Box::new(Decoder {
        norm_memory,
        blocks,
    }))
}

fn decoder_shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let q = c.expect_rank(0, 3, "queries [B, N, D]")?;
    c.expect_rank(1, 3, "encoder tokens [B, M, D_enc]")?;
    Ok(vec![TensorType::f32(q.dims.clone(), Semantic::Tokens)])
}

/// Task head: mean over tokens → LayerNorm → dropout → linear.
struct Head {
    norm: LayerNorm,
    out: Linear,
    p: f64,
}

impl Component for Head {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "mtcae_dfer.head")?.mean(1)?;
        let x = dropout(&self.norm.apply(&x)?, self.p, false, mode, rng)?;
        Ok(vec![self.out.apply(&x)?])
    }
}

fn build_head(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let out = ctx.usize("out")?;
    let (p, eps) = (ctx.float("dropout")?, ctx.float("eps")?);
    Ok(Box::new(Head {
        norm: LayerNorm::new(ctx, "norm.", d, eps)?,
        out: Linear::new(ctx, "out.", d, out, true)?,
        p,
    }))
}

fn head_shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 3, "tokens [B, N, D]")?;
    Ok(vec![TensorType::features(vec![
        t.dims[0].clone(),
        Dim::Size(c.usize("out").unwrap_or(1)),
    ])])
}

/// Registers this plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {
    r.kind(
        KindBuilder::new("mtcae_dfer.videomae", Role::Component)
            .doc("VideoMAE ViT encoder: tubelet embedding, fixed sinusoidal positions, pre-norm blocks; loads a Hugging Face VideoMAE safetensors checkpoint when `weights` is given.")
            .input("video", "clips [B, C, T, H, W]")
            .output("tokens", "encoder tokens [B, N, dim], N = T/tubelet · (H/patch) · (W/patch)")
            .int("dim", Some(1024), Some(1), "Token width (ViT-L: 1024, ViT-B: 768).")
            .int("depth", Some(24), Some(0), "Number of blocks.")
            .int("heads", Some(16), Some(1), "Attention heads (must divide `dim`).")
            .float("mlp_ratio", Some(4.0), Some(0.0), None, "MLP width relative to `dim`.")
            .int("patch", Some(16), Some(1), "Spatial patch size.")
            .int("tubelet", Some(2), Some(1), "Frames per tubelet.")
            .bool("qkv_bias", true, "Query and value biases (VideoMAE has no key bias).")
            .bool("positions", true, "Add the sinusoidal position table. The authors' rebuilt Keras encoder drops it (`Sequential(layers[:-3])`); `false` reproduces that.")
            .bool("final_norm", false, "Apply a final LayerNorm (VideoMAE without mean pooling has one).")
            .float("eps", Some(1e-12), Some(0.0), None, "LayerNorm epsilon (Hugging Face VideoMAE: 1e-12).")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Dropout in attention and MLP.")
            .string("weights", Some(""), "Hugging Face VideoMAE safetensors: a `.safetensors` file, or a folder holding `model.safetensors` or a sharded `model.safetensors.index.json`. Empty: seeded initialisation.")
            .shapes(videomae::shapes)
            .factory(videomae::build)
            .example(
                &[
                    ("dim", Value::Int(8)),
                    ("depth", Value::Int(1)),
                    ("heads", Value::Int(2)),
                    ("patch", Value::Int(2)),
                    ("mlp_ratio", Value::Float(2.0)),
                ],
                &[&[1, 2, 2, 4, 4]],
            )
            .build(),
    );
    r.kind(
        KindBuilder::new("mtcae_dfer.decoder", Role::Component)
            .doc("Cascaded ViT decoder (the notebook's MTDecoder): blocks of cross-attention from `query` to the normalised encoder tokens, then an MLP; no self-attention.")
            .input("query", "query tokens [B, N, D]: the shared projection for the first task, the previous decoder's output after it")
            .input("memory", "encoder tokens [B, M, D_enc]")
            .output("out", "decoded tokens [B, N, D]")
            .int("depth", Some(3), Some(1), "Number of blocks.")
            .int("heads", Some(3), Some(1), "Attention heads.")
            .int("key_dim", Some(256), Some(1), "Width of each head (Keras `key_dim`); heads·key_dim need not equal D.")
            .int("mlp", Some(512), Some(1), "MLP hidden width.")
            .float("dropout", Some(0.3), Some(0.0), Some(1.0), "Dropout in attention and MLP.")
            .float("eps", Some(1e-6), Some(0.0), None, "LayerNorm epsilon.")
            .shapes(decoder_shapes)
            .factory(build_decoder)
            .example(
                &[
                    ("depth", Value::Int(1)),
                    ("key_dim", Value::Int(3)),
                    ("mlp", Value::Int(5)),
                    ("heads", Value::Int(2)),
                ],
                &[&[2, 3, 4], &[2, 5, 6]],
            )
            .build(),
    );
    r.kind(
        KindBuilder::new("mtcae_dfer.head", Role::Component)
            .doc("Task head: mean over tokens → LayerNorm → dropout → linear (box: 16×4, landmarks: 16×5×2, expression: classes).")
            .input("tokens", "decoded tokens [B, N, D]")
            .output("out", "predictions [B, out]")
            .int("out", None, Some(1), "Output width.")
            .float("dropout", Some(0.1), Some(0.0), Some(1.0), "Dropout before the linear map.")
            .float("eps", Some(1e-6), Some(0.0), None, "LayerNorm epsilon.")
            .shapes(head_shapes)
            .factory(build_head)
            .example(&[("out", Value::Int(3))], &[&[2, 4, 5]])
            .build(),
    );
}

export_plugin!("mtcae_dfer", register);

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::Registry;

    fn registry() -> Registry {
        let mut reg = Registry::new();
        reg.add_static_plugin("mtcae_dfer", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        reg
    }

    #[test]
    fn every_component_passes_gradcheck() {
        let reg = registry();
        for name in [
            "mtcae_dfer.videomae",
            "mtcae_dfer.decoder",
            "mtcae_dfer.head",
        ] {
            let k = reg.get(name).unwrap();
            let ex = k.example.as_ref().unwrap();
            let params = k.example_params().unwrap();
            // Dropout off: finite differences need a deterministic function.
            let mut params = params;
            if params.contains_key("dropout") {
                params.insert("dropout".into(), Value::Float(0.0));
            }
            let report = mer_registry::gradcheck::gradcheck(k, &params, &ex.inputs, 3).unwrap();
            assert!(report.ok(), "{name}: {report:?}");
            assert!(report.checked.len() > 1, "{name}: nothing checked");
        }
    }
}
