//! `clip.vision`: CLIP's image tower (OpenAI CLIP, LanguageBind's image
//! tower, any `CLIPModel` or `CLIPVisionModel` folder), frozen, with deep
//! visual prompts (VPT-deep, as MPA-FER uses them) as its trainable part.
//! The tower itself ([`VisionTower`]) also carries SigLIP's layout, which
//! `siglip.vision` builds.

use super::siglip_vision::MapHead;
use super::*;
use mer_registry::component::input;
use mer_registry::{
    BuildCtx, Component, Dim, Init, KindBuilder, Mode, ParamType, Role, SeededRng, Semantic,
    ShapeCtx, ShapeError, TensorType, Value,
};

/// OpenAI CLIP's preprocessing constants (`CLIPImageProcessor`).
pub(crate) const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`CLIP_MEAN`].
pub(crate) const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

pub(super) fn kind() -> Kind {
    KindBuilder::new("clip.vision", Role::Component)
        .doc("CLIP's image tower from a Hugging Face folder (CLIPModel or CLIPVisionModel: OpenAI CLIP, LanguageBind's image tower; LanguageBind's video tower, whose layers add a temporal embedding and attention over its `num_frames` frames, reads clips of exactly that many frames), frozen. Images [B, C, H, W] at the checkpoint's size (C = 1 is repeated to RGB), or clips [B, C, T, H, W] frame by frame (outputs gain a T axis). Deep visual prompts (`prompts` tokens in each of the first `prompt_layers` layers, dropped after each layer) are its trainable parameters.")
        .input("images", "images [B, C, H, W] in [0, 1] (or already normalised: `normalize = \"none\"`), or clips [B, C, T, H, W]")
        .output("embeds", "projected image embedding [B, P] (transformers' get_image_features)")
        .output("pooled", "post-layernorm CLS state [B, D] (pooler_output)")
        .output("tokens", "hidden states of layer `layer` [B, N, D]: CLS first unless `cls = false`")
        .output("patches", "the last layer's patch tokens through the post-layernorm and the projection [B, N, P]: dense features in the joint space (MaskCLIP's reading; MPA-FER's local features)")
        .path("weights", None, "Hugging Face folder (config.json + model.safetensors).")
        .int("layer", Some(-1), None, "Which hidden state `tokens` returns: 0 = the embeddings, k = after layer k, negative counts from the end (-1 = the last layer, -2 = LLaVA's penultimate).")
        .bool("cls", true, "Keep the CLS token in `tokens` (LLaVA-style image features drop it).")
        .choice("normalize", &["clip", "none"], Some("clip"), "Pixel preprocessing: `clip` applies CLIP's mean and std to [0, 1] inputs; `none` takes inputs already normalised.")
        .int("prompts", Some(0), Some(0), "Deep visual prompt tokens per layer (VPT-deep; MPA-FER uses 8); 0 = none.")
        .param("prompt_layers", ParamType::Optional(Box::new(ParamType::Int { min: Some(1), max: None })), Some(Value::None), "How many of the first layers get prompts; none = every layer.")
        .shapes(shapes)
        .factory(build)
        .pretrained()
        .build()
}

/// Which tower layout a folder holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Family {
    Clip,
    Siglip,
}

/// What a forward pass returns.
pub struct VisionOut {
    /// Embeddings (after CLIP's pre-layernorm), then each layer's output.
    pub hidden_states: Vec<Tensor>,
    /// transformers' `last_hidden_state` (SigLIP's has the post-layernorm).
    pub last: Tensor,
    /// transformers' `pooler_output`.
    pub pooled: Tensor,
    /// The projected embedding (CLIP); SigLIP's is `pooled`.
    pub embeds: Tensor,
}

/// An image tower: CLIP's or SigLIP's.
pub struct VisionTower {
    family: Family,
    /// `[C·p·p, D]`, with SigLIP's bias.
    patch: Frozen,
    class: Option<Tensor>,
    positions: Tensor,
    pre: Option<LayerNorm>,
    enc: Encoder,
    post: LayerNorm,
    head: Option<MapHead>,
    projection: Option<Frozen>,
    patch_size: usize,
    /// The input side the position table was trained for.
    pub image_size: usize,
    /// The hidden width D.
    pub hidden: usize,
    /// The projected width P (D for SigLIP).
    pub projection_dim: usize,
    norm: Option<([f32; 3], [f32; 3])>,
    /// `[K, N, D]` prompt tokens for the first K layers.
    prompts: Option<Tensor>,
}

/// The numbers the checker needs, from `config.json` alone.
pub(crate) struct Dims {
    pub hidden: usize,
    pub projection: usize,
    pub image: usize,
    pub patch: usize,
    pub layers: usize,
    /// Frames per clip of a LanguageBind video tower.
    pub frames: Option<usize>,
}

pub(crate) fn dims(path: &Path, family: Family) -> Result<Dims, BuildError> {
    let (top, v, file) = config(path, "vision_config")?;
    let s = Shape::from_json(&v, &file)?;
    let int =
        |j: &serde_json::Value, k: &str| j.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
    let need = |k: &str| {
        int(&v, k).ok_or_else(|| BuildError(format!("`{}` has no `{k}`", file.display())))
    };
    Ok(Dims {
        hidden: s.hidden,
        projection: match family {
            Family::Clip => int(&top, "projection_dim")
                .or_else(|| int(&v, "projection_dim"))
                .unwrap_or(s.hidden),
            Family::Siglip => s.hidden,
        },
        image: need("image_size")?,
        patch: need("patch_size")?,
        layers: s.layers,
        frames: s.frames,
    })
}

impl VisionTower {
    /// The image tower of a CLIP or SigLIP folder (told apart by its
    /// config's `model_type`), as released: CLIP's or SigLIP's pixel
    /// normalisation, no prompts.
    pub fn open(path: &Path, device: &Device) -> Result<VisionTower, BuildError> {
        let (top, _, file) = config(path, "vision_config")?;
        let family = match top.get("model_type").and_then(|m| m.as_str()).unwrap_or("") {
            "clip" | "clip_vision_model" => Family::Clip,
            "siglip" | "siglip_vision_model" => Family::Siglip,
            other => {
                return Err(BuildError(format!(
                    "`{}`: model_type `{other}` is neither CLIP (clip, clip_vision_model) nor SigLIP (siglip, siglip_vision_model)",
                    file.display()
                )))
            }
        };
        VisionTower::load(path, family, device, true, None)
    }

    /// Loads the tower at `path`; `prompts` are `[K, N, D]` trainable tokens.
    pub(crate) fn load(
        path: &Path,
        family: Family,
        device: &Device,
        normalize: bool,
        prompts: Option<Tensor>,
    ) -> Result<VisionTower, BuildError> {
        let (_, v, file) = config(path, "vision_config")?;
        let s = Shape::from_json(&v, &file)?;
        let d = dims(path, family)?;
        if d.patch == 0 || d.image % d.patch != 0 {
            return Err(BuildError(format!(
                "`{}`: image_size {} is not a multiple of patch_size {}",
                file.display(),
                d.image,
                d.patch
            )));
        }
        let channels = v.get("num_channels").and_then(|x| x.as_u64()).unwrap_or(3) as usize;
        let mut ck = Checkpoint::open(path, device)?;
        // Full models (CLIPModel, SiglipModel) prefix the tower with
        // `vision_model.`; transformers 5 saves a bare SiglipVisionModel
        // without it.
        let root = if ck.tensors.contains_key("embeddings.patch_embedding.weight") {
            ""
        } else {
            "vision_model."
        };
        let e = &format!("{root}embeddings");
        let (h, p) = (s.hidden, d.patch);
        let conv = ck.take(&format!("{e}.patch_embedding.weight"), &[h, channels, p, p])?;
        let bias = match family {
            Family::Siglip => Some(ck.take(&format!("{e}.patch_embedding.bias"), &[h])?),
            Family::Clip => None,
        };
        let patch = Frozen {
            w: conv.reshape((h, channels * p * p))?.t()?.contiguous()?,
            b: bias,
        };
        let n = (d.image / p) * (d.image / p);
        let class = match family {
            Family::Clip => Some(ck.take(&format!("{e}.class_embedding"), &[h])?),
            Family::Siglip => None,
        };
        let positions = ck.take(
            &format!("{e}.position_embedding.weight"),
            &[n + usize::from(class.is_some()), h],
        )?;
        let pre = match family {
            // transformers spells it `pre_layrnorm`.
            Family::Clip => Some(ck.norm(&format!("{root}pre_layrnorm"), h, s.eps)?),
            Family::Siglip => None,
        };
        let enc = Encoder::load(&mut ck, &format!("{root}encoder"), &s)?;
        let post = ck.norm(&format!("{root}post_layernorm"), h, s.eps)?;
        let head = match family {
            Family::Siglip if v.get("vision_use_head").and_then(|x| x.as_bool()) != Some(false) => {
                Some(MapHead::load(&mut ck, &format!("{root}head"), &s)?)
            }
            _ => None,
        };
        let projection = match family {
            Family::Clip if ck.tensors.contains_key("visual_projection.weight") => {
                Some(ck.linear("visual_projection", h, d.projection, false)?)
            }
            _ => None,
        };
        for part in [
            "embeddings.",
            "encoder.",
            "head.",
            "pre_layrnorm.",
            "post_layernorm.",
        ] {
            ck.no_leftovers(&format!("{root}{part}"))?;
        }
        if let Some(pr) = &prompts {
            let k = pr.dim(0)?;
            if k > s.layers {
                return Err(BuildError(format!(
                    "prompts for {k} layers; this tower has {}",
                    s.layers
                )));
            }
        }
        Ok(VisionTower {
            family,
            patch,
            class,
            positions,
            pre,
            enc,
            post,
            head,
            projection_dim: if projection.is_some() {
                d.projection
            } else {
                h
            },
            projection,
            patch_size: p,
            image_size: d.image,
            hidden: h,
            norm: normalize.then_some(match family {
                Family::Clip => (CLIP_MEAN, CLIP_STD),
                Family::Siglip => ([0.5; 3], [0.5; 3]),
            }),
            prompts,
        })
    }

    /// The tower on images `[B, C, H, W]`.
    pub fn forward(&self, images: &Tensor) -> CResult<VisionOut> {
        let (b, c, hh, ww) = images.dims4()?;
        if hh != self.image_size || ww != self.image_size {
            mer_registry::candle::bail!(
                "images are {hh}×{ww}; this tower takes {0}×{0}",
                self.image_size
            );
        }
        let x = if c == 1 {
            images.repeat((1, 3, 1, 1))?
        } else {
            images.clone()
        };
        let x = match &self.norm {
            Some((m, s)) => normalize(&x, *m, *s)?,
            None => x,
        };
        let mut h = self.patch.apply(&patches(&x, self.patch_size)?)?;
        if let Some(cls) = &self.class {
            let cls = cls.reshape((1, 1, self.hidden))?.repeat((b, 1, 1))?;
            h = Tensor::cat(&[&cls, &h], 1)?;
        }
        h = h.broadcast_add(&self.positions)?;
        if let Some(pre) = &self.pre {
            h = pre.apply(&h)?;
        }
        let lead = usize::from(self.class.is_some());
        let mut hidden_states = vec![h.clone()];
        for i in 0..self.enc.layers.len() {
            let prompt = match &self.prompts {
                Some(p) if i < p.dim(0)? => Some(p.get(i)?),
                _ => None,
            };
            h = match prompt {
                // VPT-deep: this layer's prompts sit after the CLS token and
                // are dropped from its output.
                Some(p) => {
                    let n = p.dim(0)?;
                    let p = p.unsqueeze(0)?.repeat((b, 1, 1))?;
                    let rest = h.dim(1)? - lead;
                    let mut parts = vec![];
                    if lead > 0 {
                        parts.push(h.narrow(1, 0, lead)?);
                    }
                    parts.push(p);
                    parts.push(h.narrow(1, lead, rest)?);
                    let y = self.enc.layer(i, &Tensor::cat(&parts, 1)?, None)?;
                    let mut keep = vec![];
                    if lead > 0 {
                        keep.push(y.narrow(1, 0, lead)?);
                    }
                    keep.push(y.narrow(1, lead + n, rest)?);
                    Tensor::cat(&keep, 1)?
                }
                None => self.enc.layer(i, &h, None)?,
            };
            hidden_states.push(h.clone());
        }
        let (last, pooled) = match self.family {
            Family::Clip => (h.clone(), self.post.apply(&h.narrow(1, 0, 1)?.squeeze(1)?)?),
            Family::Siglip => {
                let last = self.post.apply(&h)?;
                let pooled = match &self.head {
                    Some(head) => head.apply(&last)?,
                    None => last.mean(1)?,
                };
                (last, pooled)
            }
        };
        let embeds = match &self.projection {
            Some(p) => p.apply(&pooled)?,
            None => pooled.clone(),
        };
        Ok(VisionOut {
            hidden_states,
            last,
            pooled,
            embeds,
        })
    }

    /// The last layer's patch tokens (CLS left out) mapped as CLS is:
    /// post-layernorm, then the projection, so each patch lands in the
    /// space the text embeddings live in.
    pub fn patch_embeds(&self, out: &VisionOut) -> CResult<Tensor> {
        let lead = usize::from(self.class.is_some());
        let n = out.last.dim(1)? - lead;
        let p = self.post.apply(&out.last.narrow(1, lead, n)?)?;
        match &self.projection {
            Some(proj) => proj.apply(&p),
            None => Ok(p),
        }
    }

    /// Frames per clip of a video tower (LanguageBind's temporal
    /// attention); `None` for an image tower.
    pub fn frames(&self) -> Option<usize> {
        self.enc.frames
    }

    /// The hidden state `layer` (negative from the end) with or without CLS.
    pub(crate) fn tokens(&self, out: &VisionOut, layer: i64, cls: bool) -> CResult<Tensor> {
        let n = out.hidden_states.len() as i64;
        let i = if layer < 0 { n + layer } else { layer };
        let t = out
            .hidden_states
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .ok_or_else(|| {
                mer_registry::candle::Error::Msg(format!(
                    "layer {layer}: the tower has hidden states 0..{}",
                    n - 1
                ))
            })?;
        if !cls && self.class.is_some() {
            t.narrow(1, 1, t.dim(1)? - 1)
        } else {
            Ok(t.clone())
        }
    }
}

/// A built image tower with its port settings.
pub(crate) struct VisionKind {
    pub tower: VisionTower,
    pub layer: i64,
    pub cls: bool,
    pub kind: &'static str,
}

impl Component for VisionKind {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, self.kind)?;
        if let Some(want) = self.tower.frames() {
            let got = if x.rank() == 5 { x.dim(2)? } else { 1 };
            if got != want {
                mer_registry::candle::bail!(
                    "this video tower (temporal attention over {want} frames) got {got} frame(s) per sample"
                );
            }
        }
        // Clips: every frame through the same tower, outputs regain T.
        let (x, frames) = match x.rank() {
            5 => {
                let (b, c, t, h, w) = x.dims5()?;
                (
                    x.permute((0, 2, 1, 3, 4))?.reshape((b * t, c, h, w))?,
                    Some((b, t)),
                )
            }
            _ => (x.clone(), None),
        };
        let out = self.tower.forward(&x)?;
        let tokens = self.tower.tokens(&out, self.layer, self.cls)?;
        // The ports each kind declares: SigLIP has no projection.
        let mut outs = match self.tower.family {
            Family::Clip => {
                let patches = self.tower.patch_embeds(&out)?;
                vec![out.embeds, out.pooled, tokens, patches]
            }
            Family::Siglip => vec![out.pooled, tokens],
        };
        if let Some((b, t)) = frames {
            for o in outs.iter_mut() {
                let mut dims = vec![b, t];
                dims.extend_from_slice(&o.dims()[1..]);
                *o = o.reshape(dims)?;
            }
        }
        Ok(outs)
    }
}

/// Builds either image tower from its kind's parameters.
pub(crate) fn build_tower(
    ctx: &mut BuildCtx,
    family: Family,
    kind: &'static str,
) -> Result<Box<dyn Component>, BuildError> {
    let path = PathBuf::from(ctx.str("weights")?);
    let d = dims(&path, family)?;
    let n = ctx.usize("prompts")?;
    let prompts = if n > 0 {
        let k = match ctx.params.get("prompt_layers") {
            Some(Value::Int(k)) => (*k as usize).min(d.layers),
            _ => d.layers,
        };
        // VPT's initialisation: uniform ±√(6 / (3·p² + D)).
        let bound = (6.0 / (3 * d.patch * d.patch + d.hidden) as f32).sqrt();
        Some(ctx.param("prompts", &[k, n, d.hidden], Init::Uniform(bound))?)
    } else {
        None
    };
    let normalize = ctx.str("normalize")? != "none";
    let tower = VisionTower::load(&path, family, &ctx.device(), normalize, prompts)?;
    Ok(Box::new(VisionKind {
        tower,
        layer: ctx.int("layer")?,
        cls: match ctx.params.get("cls") {
            Some(Value::Bool(b)) => *b,
            _ => true,
        },
        kind,
    }))
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    build_tower(ctx, Family::Clip, "clip.vision")
}

/// Output types of either tower: exact when `config.json` is readable at
/// check time, symbolic widths otherwise.
pub(crate) fn tower_shapes(c: &ShapeCtx, family: Family) -> Result<Vec<TensorType>, ShapeError> {
    let x = c.input(0)?;
    if x.rank() != 4 && x.rank() != 5 {
        return Err(fail(
            c,
            format!(
                "images are [B, C, H, W] or clips [B, C, T, H, W]; got rank {}",
                x.rank()
            ),
        ));
    }
    let path = c.str("weights").map(PathBuf::from);
    let d = path.as_deref().and_then(|p| dims(p, family).ok());
    if let Some(want) = d.as_ref().and_then(|d| d.frames) {
        let got = if x.rank() == 5 {
            x.dims[2].size()
        } else {
            Some(1)
        };
        if got.is_some_and(|g| g != want) {
            return Err(fail(
                c,
                format!(
                    "this video tower (LanguageBind's temporal attention) takes clips of {want} frames; the input has {}",
                    got.unwrap_or(1)
                ),
            ));
        }
    }
    let lead: Vec<Dim> = if x.rank() == 5 {
        vec![x.dims[0].clone(), x.dims[2].clone()]
    } else {
        vec![x.dims[0].clone()]
    };
    let (hw, ch) = if x.rank() == 5 {
        (&x.dims[3..5], &x.dims[1])
    } else {
        (&x.dims[2..4], &x.dims[1])
    };
    if let Some(c_in) = ch.size() {
        if c_in != 1 && c_in != 3 {
            return Err(fail(
                c,
                format!("images have {c_in} channels; the tower takes 3 (or 1, repeated)"),
            ));
        }
    }
    let (hidden, proj, n, grid) = match &d {
        Some(d) => {
            for s in hw {
                if let Some(s) = s.size() {
                    if s != d.image {
                        return Err(fail(c, format!(
                            "images are {}×{}; this tower takes {2}×{2} (resize in the data, e.g. size = [{2}, {2}])",
                            hw[0].size().unwrap_or(s),
                            hw[1].size().unwrap_or(s),
                            d.image
                        )));
                    }
                }
            }
            let patches = (d.image / d.patch.max(1)).pow(2);
            let cls_kept =
                family == Family::Clip && c.params.get("cls") != Some(&Value::Bool(false));
            (
                Dim::Size(d.hidden),
                Dim::Size(d.projection),
                Dim::Size(patches + usize::from(cls_kept)),
                Dim::Size(patches),
            )
        }
        None => (
            Dim::sym("D_vision"),
            Dim::sym("P"),
            Dim::sym("N_tokens"),
            Dim::sym("N_patches"),
        ),
    };
    let with = |tail: Vec<Dim>, sem: Semantic| {
        let mut dims = lead.clone();
        dims.extend(tail);
        TensorType::f32(dims, sem)
    };
    let tokens = with(vec![n, hidden.clone()], Semantic::Tokens);
    Ok(match family {
        Family::Clip => vec![
            with(vec![proj.clone()], Semantic::Features),
            with(vec![hidden], Semantic::Features),
            tokens,
            with(vec![grid, proj], Semantic::Tokens),
        ],
        Family::Siglip => vec![with(vec![hidden], Semantic::Features), tokens],
    })
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    tower_shapes(c, Family::Clip)
}
