//! The VideoMAE encoder, with Hugging Face checkpoint loading.
//!
//! Parameter names inside mer follow the checkpoint's structure
//! (`<node>.layer.3.attention.query.weight`), so a loaded run's saved
//! checkpoint maps back onto the Hugging Face names by prefix.

use mer_registry::candle::{Device, Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::layers::{
    dropout, sinusoid_positions, Attention, AttentionWeights, LayerNorm, Linear,
};
use mer_registry::{
    BuildCtx, BuildError, Component, Dim, Mode, SeededRng, Semantic, ShapeCtx, ShapeError,
    TensorType,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

struct Layer {
    norm_before: LayerNorm,
    attn: Attention,
    norm_after: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub(crate) struct VideoMae {
    /// `[C·t·p·p, dim]`: the tubelet convolution as one matrix (kernel =
    /// stride, so each tubelet is an independent dot product).
    embed: Linear,
    positions: Option<Tensor>,
    layers: Vec<Layer>,
    final_norm: Option<LayerNorm>,
    tubelet: usize,
    patch: usize,
    p: f64,
}

impl VideoMae {
    /// `[B, C, T, H, W]` → `[B, N, C·t·p·p]` in the token order of a
    /// flattened Conv3d output (time, then rows, then columns).
    fn tubelets(&self, x: &Tensor) -> CResult<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let (tt, p) = (self.tubelet, self.patch);
        let (nt, nh, nw) = (t / tt, h / p, w / p);
        x.narrow(2, 0, nt * tt)?
            .narrow(3, 0, nh * p)?
            .narrow(4, 0, nw * p)?
            .reshape(vec![b, c, nt, tt, nh, p, nw, p])?
            .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?
            .contiguous()?
            .reshape((b, nt * nh * nw, c * tt * p * p))
    }
}

impl Component for VideoMae {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, "mtcae_dfer.videomae")?;
        let mut h = self.embed.apply(&self.tubelets(x)?)?;
        if let Some(pos) = &self.positions {
            h = h.broadcast_add(pos)?;
        }
        for l in &self.layers {
            let n = l.norm_before.apply(&h)?;
            let a = l.attn.apply(&n, &n, None, mode, rng)?;
            h = (&h + dropout(&a, self.p, false, mode, rng)?)?;
            let m = l.fc1.apply(&l.norm_after.apply(&h)?)?.gelu_erf()?;
            let m = dropout(
                &l.fc2.apply(&dropout(&m, self.p, false, mode, rng)?)?,
                self.p,
                false,
                mode,
                rng,
            )?;
            h = (&h + m)?;
        }
        Ok(vec![match &self.final_norm {
            Some(n) => n.apply(&h)?,
            None => h,
        }])
    }
}

/// Sizes the recipe asks for.
struct Config {
    c: usize,
    dim: usize,
    depth: usize,
    heads: usize,
    hidden: usize,
    patch: usize,
    tubelet: usize,
    qkv_bias: bool,
    eps: f64,
}

/// A checkpoint's tensors by name, with the name prefix it uses.
struct Checkpoint {
    file: PathBuf,
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Checkpoint {
    fn open(path: &Path, dev: &Device) -> Result<Self, BuildError> {
        let tensors = mer_registry::weights::load_safetensors(path, dev)?;
        // VideoMAEForVideoClassification prefixes the encoder; VideoMAEModel
        // does not.
        let key = "embeddings.patch_embeddings.projection.weight";
        let prefix = if tensors.contains_key(&format!("videomae.{key}")) {
            "videomae."
        } else if tensors.contains_key(key) {
            ""
        } else {
            return Err(BuildError(format!(
                "`{}` is not a VideoMAE checkpoint: it has no `{key}` (nor `videomae.{key}`)",
                path.display()
            )));
        };
        Ok(Checkpoint {
            file: path.to_path_buf(),
            tensors,
            prefix,
        })
    }

    /// Tensor `name` (without prefix), which must have `dims`.
    fn get(&self, name: &str, dims: &[usize]) -> Result<Tensor, BuildError> {
        let full = format!("{}{name}", self.prefix);
        let t = self.tensors.get(&full).ok_or_else(|| {
            BuildError(format!(
                "`{}` has no tensor `{full}` (the recipe's sizes ask for it)",
                self.file.display()
            ))
        })?;
        if t.dims() != dims {
            return Err(BuildError(format!(
                "`{}`: `{full}` is {:?}, the recipe's sizes need {dims:?} (check dim, depth, patch and tubelet)",
                self.file.display(),
                t.dims()
            )));
        }
        Ok(t.clone())
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }

    fn linear(
        &self,
        ctx: &mut BuildCtx,
        ours: &str,
        theirs: &str,
        d_in: usize,
        d_out: usize,
        bias: Option<&str>,
    ) -> Result<Linear, BuildError> {
        let w = self.get(&format!("{theirs}.weight"), &[d_out, d_in])?;
        let b = match bias {
            Some(name) => Some(self.get(name, &[d_out])?),
            None => None,
        };
        Linear::from_torch(ctx, ours, &w, b.as_ref())
    }

    fn norm(
        &self,
        ctx: &mut BuildCtx,
        ours: &str,
        theirs: &str,
        d: usize,
        eps: f64,
    ) -> Result<LayerNorm, BuildError> {
        let g = ctx.param_from(
            &format!("{ours}weight"),
            &self.get(&format!("{theirs}.weight"), &[d])?,
        )?;
        let b = ctx.param_from(
            &format!("{ours}bias"),
            &self.get(&format!("{theirs}.bias"), &[d])?,
        )?;
        Ok(LayerNorm {
            eps,
            affine: Some((g, b)),
            rms: false,
        })
    }
}

fn config(ctx: &BuildCtx) -> Result<Config, BuildError> {
    let c = ctx
        .inputs
        .first()
        .and_then(|t| t.dims.get(1))
        .and_then(Dim::size)
        .ok_or_else(|| BuildError("`mtcae_dfer.videomae` needs a known channel count".into()))?;
    let dim = ctx.usize("dim")?;
    let heads = ctx.usize("heads")?;
    Attention::split_width(ctx.kind, dim, heads)?;
    Ok(Config {
        c,
        dim,
        depth: ctx.usize("depth")?,
        heads,
        hidden: ((dim as f64) * ctx.float("mlp_ratio")?).round().max(1.0) as usize,
        patch: ctx.usize("patch")?,
        tubelet: ctx.usize("tubelet")?,
        qkv_bias: ctx.bool("qkv_bias")?,
        eps: ctx.float("eps")?,
    })
}

fn tokens(ctx: &BuildCtx, cfg: &Config) -> Result<usize, BuildError> {
    let dims: Vec<usize> = ctx
        .inputs
        .first()
        .map(|t| t.dims.iter().skip(2).filter_map(Dim::size).collect())
        .unwrap_or_default();
    match dims[..] {
        [t, h, w] => Ok((t / cfg.tubelet) * (h / cfg.patch) * (w / cfg.patch)),
        _ => Err(BuildError(
            "`mtcae_dfer.videomae` needs known [T, H, W] sizes".into(),
        )),
    }
}

pub(crate) fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let cfg = config(ctx)?;
    let n = tokens(ctx, &cfg)?;
    let patch_in = cfg.c * cfg.tubelet * cfg.patch * cfg.patch;
    let weights = ctx.str("weights")?.to_string();
    let final_norm = ctx.bool("final_norm")?;
    let head_dim = cfg.dim / cfg.heads;
    let device = ctx.device();
    let mut layers = Vec::new();
    let (embed, final_norm) = if weights.is_empty() {
        let embed = Linear::new(ctx, "embed.", patch_in, cfg.dim, true)?;
        for l in 0..cfg.depth {
            let pre = format!("layer.{l}.");
            let a = format!("{pre}attention.");
            let w = AttentionWeights {
                q: Linear::new(ctx, &format!("{a}query."), cfg.dim, cfg.dim, cfg.qkv_bias)?,
                k: Linear::new(ctx, &format!("{a}key."), cfg.dim, cfg.dim, false)?,
                v: Linear::new(ctx, &format!("{a}value."), cfg.dim, cfg.dim, cfg.qkv_bias)?,
                out: Linear::new(ctx, &format!("{a}output."), cfg.dim, cfg.dim, true)?,
            };
            layers.push(Layer {
                norm_before: LayerNorm::new(ctx, &format!("{pre}norm_before."), cfg.dim, cfg.eps)?,
                attn: attention(w, &cfg, head_dim),
                norm_after: LayerNorm::new(ctx, &format!("{pre}norm_after."), cfg.dim, cfg.eps)?,
                fc1: Linear::new(ctx, &format!("{pre}fc1."), cfg.dim, cfg.hidden, true)?,
                fc2: Linear::new(ctx, &format!("{pre}fc2."), cfg.hidden, cfg.dim, true)?,
            });
        }
        let fnorm = if final_norm {
            Some(LayerNorm::new(ctx, "norm.", cfg.dim, cfg.eps)?)
        } else {
            None
        };
        (embed, fnorm)
    } else {
        let ck = Checkpoint::open(Path::new(&weights), &device)?;
        let conv = ck.get(
            "embeddings.patch_embeddings.projection.weight",
            &[cfg.dim, cfg.c, cfg.tubelet, cfg.patch, cfg.patch],
        )?;
        let conv_b = ck.get("embeddings.patch_embeddings.projection.bias", &[cfg.dim])?;
        let embed = Linear::from_torch(
            ctx,
            "embed.",
            &conv.reshape((cfg.dim, patch_in))?,
            Some(&conv_b),
        )?;
        for l in 0..cfg.depth {
            let pre = format!("layer.{l}.");
            let (t, a) = (
                format!("encoder.layer.{l}."),
                format!("encoder.layer.{l}.attention."),
            );
            let (qb, vb) = if cfg.qkv_bias {
                (
                    Some(format!("{a}attention.q_bias")),
                    Some(format!("{a}attention.v_bias")),
                )
            } else {
                (None, None)
            };
            let d = cfg.dim;
            let w = AttentionWeights {
                q: ck.linear(
                    ctx,
                    &format!("{pre}attention.query."),
                    &format!("{a}attention.query"),
                    d,
                    d,
                    qb.as_deref(),
                )?,
                k: ck.linear(
                    ctx,
                    &format!("{pre}attention.key."),
                    &format!("{a}attention.key"),
                    d,
                    d,
                    None,
                )?,
                v: ck.linear(
                    ctx,
                    &format!("{pre}attention.value."),
                    &format!("{a}attention.value"),
                    d,
                    d,
                    vb.as_deref(),
                )?,
                out: ck.linear(
                    ctx,
                    &format!("{pre}attention.output."),
                    &format!("{a}output.dense"),
                    d,
                    d,
                    Some(&format!("{a}output.dense.bias")),
                )?,
            };
            layers.push(Layer {
                norm_before: ck.norm(
                    ctx,
                    &format!("{pre}norm_before."),
                    &format!("{t}layernorm_before"),
                    d,
                    cfg.eps,
                )?,
                attn: attention(w, &cfg, head_dim),
                norm_after: ck.norm(
                    ctx,
                    &format!("{pre}norm_after."),
                    &format!("{t}layernorm_after"),
                    d,
                    cfg.eps,
                )?,
                fc1: ck.linear(
                    ctx,
                    &format!("{pre}fc1."),
                    &format!("{t}intermediate.dense"),
                    d,
                    cfg.hidden,
                    Some(&format!("{t}intermediate.dense.bias")),
                )?,
                fc2: ck.linear(
                    ctx,
                    &format!("{pre}fc2."),
                    &format!("{t}output.dense"),
                    cfg.hidden,
                    d,
                    Some(&format!("{t}output.dense.bias")),
                )?,
            });
        }
        let fnorm = if final_norm {
            if !ck.has("layernorm.weight") {
                return Err(BuildError(format!(
                    "`final_norm = true`, but `{weights}` has no final `layernorm` (a mean-pooling checkpoint): set final_norm = false"
                )));
            }
            Some(ck.norm(ctx, "norm.", "layernorm", cfg.dim, cfg.eps)?)
        } else {
            None
        };
        (embed, fnorm)
    };
    let positions = if ctx.bool("positions")? {
        Some(sinusoid_positions(n, cfg.dim, &device)?.unsqueeze(0)?)
    } else {
        None
    };
    Ok(Box::new(VideoMae {
        embed,
        positions,
        layers,
        final_norm,
        tubelet: cfg.tubelet,
        patch: cfg.patch,
        p: ctx.float("dropout")?,
    }))
}

fn attention(w: AttentionWeights, cfg: &Config, head_dim: usize) -> Attention {
    Attention {
        w,
        heads: cfg.heads,
        head_dim,
        dropout: 0.0,
        causal: false,
    }
}

pub(crate) fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let t = c.expect_rank(0, 5, "clips [B, C, T, H, W]")?;
    let mut n = Dim::Size(1);
    for (d, k, axis) in [
        (&t.dims[2], c.usize("tubelet").unwrap_or(2), "frames"),
        (&t.dims[3], c.usize("patch").unwrap_or(16), "height"),
        (&t.dims[4], c.usize("patch").unwrap_or(16), "width"),
    ] {
        n = match d {
            Dim::Size(s) if *s < k || k == 0 => {
                return Err(ShapeError::new(format!(
                    "`{}`: the {axis} of `{}` ({s}) is smaller than its tubelet/patch size {k}",
                    c.kind,
                    c.source(0)
                ))
                .at_input(0))
            }
            Dim::Size(s) => n.mul(&Dim::Size(s / k)),
            other => n.mul(&Dim::Sym(format!("{other}/{k}"))),
        };
    }
    if let (Some(d), Some(h)) = (c.usize("dim"), c.usize("heads")) {
        if h == 0 || d % h != 0 {
            return Err(ShapeError::new(format!(
                "`{}`: dim {d} does not split into {h} heads",
                c.kind
            ))
            .help("choose heads that divide dim (ViT-L: 1024 / 16)"));
        }
    }
    Ok(vec![TensorType::f32(
        vec![t.dims[0].clone(), n, Dim::Size(c.usize("dim").unwrap_or(1))],
        Semantic::Tokens,
    )])
}

#[cfg(test)]
mod tests {
    use crate::register;
    use mer_registry::candle::{Device, Tensor};
    use mer_registry::{Dim, Mode, ParamStore, Registry, SeededRng, TensorType, Value};
    use std::collections::{BTreeMap, HashMap};

    fn params(extra: &[(&str, Value)]) -> BTreeMap<String, Value> {
        let mut reg = Registry::new();
        reg.add_static_plugin("mtcae_dfer", "0", register).unwrap();
        let k = reg.get("mtcae_dfer.videomae").unwrap();
        let mut p: BTreeMap<String, Value> = k
            .schema
            .params
            .iter()
            .filter_map(|s| s.default.clone().map(|d| (s.name.clone(), d)))
            .collect();
        for (n, v) in [
            ("dim", Value::Int(4)),
            ("depth", Value::Int(2)),
            ("heads", Value::Int(2)),
            ("patch", Value::Int(2)),
            ("mlp_ratio", Value::Float(2.0)),
        ] {
            p.insert(n.into(), v);
        }
        for (n, v) in extra {
            p.insert((*n).into(), v.clone());
        }
        p
    }

    fn build(
        p: &BTreeMap<String, Value>,
        store: &mut ParamStore,
    ) -> Result<Box<dyn mer_registry::Component>, String> {
        let mut reg = Registry::new();
        reg.add_static_plugin("mtcae_dfer", "0", register).unwrap();
        let k = reg.get("mtcae_dfer.videomae").unwrap();
        let ty = TensorType::features([1, 2, 4, 4, 4].map(Dim::Size).to_vec());
        k.build("enc", p, &[ty], store).map_err(|e| e.to_string())
    }

    fn video() -> Tensor {
        SeededRng::new(7)
            .normal_tensor(&[1, 2, 4, 4, 4], &Device::Cpu)
            .unwrap()
    }

    #[test]
    fn tubelet_embedding_is_the_conv3d_it_replaces() {
        let p = params(&[("depth", Value::Int(0)), ("positions", Value::Bool(false))]);
        let mut store = ParamStore::new(1, Device::Cpu);
        let enc = build(&p, &mut store).unwrap();
        let x = video();
        let y = enc
            .forward(std::slice::from_ref(&x), Mode::Eval, &mut SeededRng::new(0))
            .unwrap()[0]
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!((y[0].len(), y[0][0].len()), (2 * 2 * 2, 4));
        let vars: BTreeMap<_, _> = store
            .vars()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        // mer's [C·t·p·p, D] back to the Conv3d kernel [D, C, t, p, p].
        let w: Vec<f32> = vars["enc.embed.weight"]
            .t()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = vars["enc.embed.bias"].to_vec1().unwrap();
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let xi = |c: usize, t: usize, h: usize, w: usize| xv[((c * 4 + t) * 4 + h) * 4 + w];
        for (tok, row) in y[0].iter().enumerate() {
            let (it, ih, iw) = (tok / 4, (tok / 2) % 2, tok % 2);
            for (d, got) in row.iter().enumerate() {
                let mut s = b[d];
                for c in 0..2 {
                    for dt in 0..2 {
                        for dy in 0..2 {
                            for dx in 0..2 {
                                let k = (((d * 2 + c) * 2 + dt) * 2 + dy) * 2 + dx;
                                s += w[k] * xi(c, it * 2 + dt, ih * 2 + dy, iw * 2 + dx);
                            }
                        }
                    }
                }
                assert!((s - got).abs() < 1e-5, "token {tok} dim {d}: {s} vs {got}");
            }
        }
    }

    /// A seeded encoder exported under Hugging Face names (PyTorch layouts)
    /// and loaded back through `weights` computes the same function.
    #[test]
    fn hugging_face_checkpoint_round_trips() {
        let mut store = ParamStore::new(3, Device::Cpu);
        let seeded = build(&params(&[("final_norm", Value::Bool(true))]), &mut store).unwrap();
        let vars: BTreeMap<_, _> = store
            .vars()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let torch = |n: &str| vars[n].t().unwrap().contiguous().unwrap();
        let mut hf: HashMap<String, Tensor> = HashMap::new();
        let pre = "videomae.";
        hf.insert(
            format!("{pre}embeddings.patch_embeddings.projection.weight"),
            torch("enc.embed.weight").reshape((4, 2, 2, 2, 2)).unwrap(),
        );
        hf.insert(
            format!("{pre}embeddings.patch_embeddings.projection.bias"),
            vars["enc.embed.bias"].clone(),
        );
        for l in 0..2 {
            let (o, t) = (
                format!("enc.layer.{l}."),
                format!("{pre}encoder.layer.{l}."),
            );
            for (ours, theirs) in [("query", "query"), ("key", "key"), ("value", "value")] {
                hf.insert(
                    format!("{t}attention.attention.{theirs}.weight"),
                    torch(&format!("{o}attention.{ours}.weight")),
                );
            }
            hf.insert(
                format!("{t}attention.attention.q_bias"),
                vars[&format!("{o}attention.query.bias")].clone(),
            );
            hf.insert(
                format!("{t}attention.attention.v_bias"),
                vars[&format!("{o}attention.value.bias")].clone(),
            );
            for (ours, theirs) in [
                ("attention.output", "attention.output.dense"),
                ("fc1", "intermediate.dense"),
                ("fc2", "output.dense"),
            ] {
                hf.insert(
                    format!("{t}{theirs}.weight"),
                    torch(&format!("{o}{ours}.weight")),
                );
                hf.insert(
                    format!("{t}{theirs}.bias"),
                    vars[&format!("{o}{ours}.bias")].clone(),
                );
            }
            for (ours, theirs) in [
                ("norm_before", "layernorm_before"),
                ("norm_after", "layernorm_after"),
            ] {
                for w in ["weight", "bias"] {
                    hf.insert(
                        format!("{t}{theirs}.{w}"),
                        vars[&format!("{o}{ours}.{w}")].clone(),
                    );
                }
            }
        }
        for w in ["weight", "bias"] {
            hf.insert(
                format!("{pre}layernorm.{w}"),
                vars[&format!("enc.norm.{w}")].clone(),
            );
        }
        let dir = std::env::temp_dir().join(format!("mer-videomae-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        mer_registry::candle::safetensors::save(&hf, dir.join("model.safetensors")).unwrap();

        let p = params(&[
            ("final_norm", Value::Bool(true)),
            ("weights", Value::Str(dir.display().to_string())),
        ]);
        let mut other = ParamStore::new(99, Device::Cpu);
        let loaded = build(&p, &mut other).unwrap();
        let run = |c: &dyn mer_registry::Component| -> Vec<f32> {
            c.forward(&[video()], Mode::Eval, &mut SeededRng::new(0))
                .unwrap()[0]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (a, b) = (run(seeded.as_ref()), run(loaded.as_ref()));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }

        // A size the checkpoint does not have is named, not mis-loaded.
        let wrong = params(&[
            ("dim", Value::Int(6)),
            ("heads", Value::Int(3)),
            ("weights", Value::Str(dir.display().to_string())),
        ]);
        let err = build(&wrong, &mut ParamStore::new(1, Device::Cpu))
            .err()
            .unwrap();
        assert!(
            err.contains("projection.weight") && err.contains("[4, 2, 2, 2, 2]"),
            "{err}"
        );
        let missing = params(&[("weights", Value::Str("/nonexistent/videomae".into()))]);
        let err = build(&missing, &mut ParamStore::new(1, Device::Cpu))
            .err()
            .unwrap();
        assert!(err.contains("do not exist"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
