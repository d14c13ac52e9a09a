//! `face_llava.frgca`: face-region guided cross-attention. The projected
//! visual tokens of each frame attend to that frame's 9 landmark region
//! tokens (never across frames), and the branch is added back at a fixed
//! scale: `out = s · Linear(LN(h_v + attn(h_v, h_l))) + h_v`, s = 0.1.
//!
//! Two forms, as `variant`:
//! - `simple`, what both released training scripts run
//!   (`LandmarkGuidedCrossAttention`): PyTorch's `nn.MultiheadAttention`
//!   (query, key, value and output projections, all with bias), no mask.
//! - `masked`, the paper's (`LandmarkGuidedCrossAttentionWMask`): separate
//!   query, key and value projections, no output projection, and the
//!   region-patch proximity mask m_RPP added to the logits before the
//!   softmax. m_RPP[n, r] = softmax over regions of −‖p_n − c_r‖, p_n the
//!   centre of patch n on the token grid and c_r the centroid of region r;
//!   a CLS row is uniform (1/9). Two defects of the released class are
//!   fixed here and said so: its patch centres are (row, col) against
//!   landmarks in (x, y), so its axes are swapped (here p_n = (x, y)); and
//!   it has no image path (here `cls = false` drops the CLS row).

use crate::{fail, LANDMARK_VALUES, REGIONS};
use mer_registry::candle::{Result as CResult, Tensor, D};
use mer_registry::component::input;
use mer_registry::layers::{softmax, Attention, LayerNorm, Linear};
use mer_registry::{
    BuildCtx, BuildError, Component, ExampleInput, Kind, KindBuilder, Mode, Role, SeededRng,
    ShapeCtx, ShapeError, TensorType, Value,
};

const KIND: &str = "face_llava.frgca";

pub(crate) fn kind() -> Kind {
    KindBuilder::new(KIND, Role::Component)
        .doc("Face-region guided cross-attention (Face-LLaVA's FRGCA), per frame: visual tokens attend to the frame's 9 landmark region tokens (`face_llava.frlp`), then `branch_scale · Linear(LayerNorm(h_v + attention)) + h_v`. `simple` is the released scripts' multi-head attention without a mask; `masked` is the paper's, with the region-patch proximity mask m_RPP from the landmarks (the released class's x/y swap fixed; `cls = false` for image tokens, which it could not take). Tokens [B, N, D] with regions [B, 9, D] (images) or [B, T, N, D] with [B, T, 9, D] (clips); out has the tokens' shape.")
        .input("query", "projected visual tokens [B, N, D] or [B, T, N, D] (after the `mlp2x_gelu` projector, in the LLM's width)")
        .input("regions", "landmark region tokens [B, 9, D] or [B, T, 9, D] (`face_llava.frlp`)")
        .optional_input("landmarks", "the landmarks the regions came from, [B, 136] or [B, T, 136]: the mask's region centroids (variant = \"masked\")")
        .output("out", "visual tokens with the landmark branch added, the query's shape")
        .choice("variant", &["simple", "masked"], Some("simple"), "`simple`: the released scripts' cross-attention (no mask); `masked`: the paper's, with m_RPP (needs `landmarks`).")
        .int("heads", Some(8), Some(1), "Attention heads (Face-LLaVA: 8 of 512 at width 4096).")
        .float("branch_scale", Some(0.1), None, None, "The fixed weight of the branch in the residual (0.1 in the released code since commit f4a88dc; not learned).")
        .bool("cls", true, "The visual tokens start with a CLS token (LanguageBind's video frames: 257 = 1 + 16², CLS kept); false for image tokens (256, CLS dropped). The mask gives a CLS row uniform weights; the rest must form a square patch grid.")
        .float("eps", Some(1e-5), Some(0.0), None, "LayerNorm epsilon (PyTorch's default).")
        .shapes(shapes)
        .factory(build)
        .example_inputs(
            &[("heads", Value::Int(2))],
            vec![
                ExampleInput::Features(vec![2, 2, 5, 4]),
                ExampleInput::Features(vec![2, 2, 9, 4]),
                ExampleInput::Fixed(vec![2, 2, LANDMARK_VALUES]),
            ],
        )
        .build()
}

enum Branch {
    Simple(Attention),
    Masked {
        q: Linear,
        k: Linear,
        v: Linear,
        heads: usize,
    },
}

struct Frgca {
    branch: Branch,
    norm: LayerNorm,
    proj: Linear,
    scale: f64,
    cls: bool,
}

/// The side of the square grid `patches` tokens form, if they form one.
fn grid_side(patches: usize) -> Option<usize> {
    let side = (patches as f64).sqrt().round() as usize;
    (patches > 0 && side * side == patches).then_some(side)
}

/// m_RPP for `frames` frames of landmarks `[F, 136]` and `n` visual tokens
/// per frame (a CLS row first when `cls`): `[F, n, 9]`, each row a softmax
/// over regions of the negative distance from the patch centre to the
/// region centroid. Built from tensor ops, so it is differentiable in the
/// landmarks like every other input.
pub(crate) fn rpp_mask(landmarks: &Tensor, n: usize, cls: bool) -> CResult<Tensor> {
    let dev = landmarks.device();
    let f = landmarks.dim(0)?;
    let patches = n.saturating_sub(usize::from(cls));
    let Some(side) = grid_side(patches) else {
        mer_registry::candle::bail!(
            "{KIND}: {patches} patch tokens per frame do not form a square grid"
        );
    };
    // Region centroids: [F, 68·2] → [F, 68, 2] → means over each region's points.
    let mut avg = vec![0f32; 68 * REGIONS.len()];
    for (r, (_, a, b)) in REGIONS.iter().enumerate() {
        for p in *a..*b {
            avg[p * REGIONS.len() + r] = 1.0 / (b - a) as f32;
        }
    }
    let avg = Tensor::from_vec(avg, (68, REGIONS.len()), dev)?.to_dtype(landmarks.dtype())?;
    let xy = landmarks
        .reshape((f, 68, 2))?
        .transpose(1, 2)?
        .contiguous()?;
    // [F, 2, 9] → [F, 9, 2]
    let centroids = xy.broadcast_matmul(&avg)?.transpose(1, 2)?;
    // Patch centres, row-major over the grid, as (x, y) = (col, row).
    let mut centres = Vec::with_capacity(patches * 2);
    for row in 0..side {
        for col in 0..side {
            centres.push((col as f32 + 0.5) / side as f32);
            centres.push((row as f32 + 0.5) / side as f32);
        }
    }
    let centres =
        Tensor::from_vec(centres, (1, patches, 1, 2), dev)?.to_dtype(landmarks.dtype())?;
    // ε keeps the root differentiable where a centroid sits on a centre.
    let dist = (centres
        .broadcast_sub(&centroids.unsqueeze(1)?)?
        .sqr()?
        .sum(D::Minus1)?
        + 1e-12)?
        .sqrt()?;
    let dist = if cls {
        // Distance 0 to every region: a uniform row after the softmax.
        Tensor::cat(&[&dist.zeros_like()?.narrow(1, 0, 1)?, &dist], 1)?
    } else {
        dist
    };
    softmax(&dist.neg()?)
}

impl Frgca {
    fn attend(
        &self,
        hv: &Tensor,
        hl: &Tensor,
        landmarks: Option<&Tensor>,
        mode: Mode,
        rng: &mut SeededRng,
    ) -> CResult<Tensor> {
        match &self.branch {
            Branch::Simple(attn) => attn.apply(hv, hl, None, mode, rng),
            Branch::Masked { q, k, v, heads } => {
                let lm = landmarks.ok_or_else(|| {
                    mer_registry::candle::Error::Msg(format!(
                        "{KIND}: variant = \"masked\" needs the `landmarks` input"
                    ))
                })?;
                let (f, n, d) = hv.dims3()?;
                let hd = d / heads;
                let split = |x: Tensor| -> CResult<Tensor> {
                    let m = x.dim(1)?;
                    x.reshape((f, m, *heads, hd))?.transpose(1, 2)?.contiguous()
                };
                let (q, k, v) = (
                    split(q.apply(hv)?)?,
                    split(k.apply(hl)?)?,
                    split(v.apply(hl)?)?,
                );
                let mask = rpp_mask(lm, n, self.cls)?.unsqueeze(1)?;
                let logits = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(&mask)?;
                softmax(&logits)?
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .reshape((f, n, d))
            }
        }
    }
}

impl Component for Frgca {
    fn forward(&self, inputs: &[Tensor], mode: Mode, rng: &mut SeededRng) -> CResult<Vec<Tensor>> {
        let query = input(inputs, 0, KIND)?;
        let regions = input(inputs, 1, KIND)?;
        let shape = query.dims().to_vec();
        let (n, d) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        // Frames are independent: [B, T, N, D] → [B·T, N, D].
        let frames: usize = shape[..shape.len() - 2].iter().product();
        let hv = query.reshape((frames, n, d))?;
        let hl = regions.reshape((frames, REGIONS.len(), d))?;
        let lm = match inputs.get(2) {
            Some(l) => Some(l.reshape((frames, LANDMARK_VALUES))?),
            None => None,
        };
        let a = self.attend(&hv, &hl, lm.as_ref(), mode, rng)?;
        let x = self.proj.apply(&self.norm.apply(&(&hv + a)?)?)?;
        let out = ((x * self.scale)? + &hv)?;
        Ok(vec![out.reshape(shape)?])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.input_width(0)?;
    let heads = ctx.usize("heads")?;
    let hd = Attention::split_width(KIND, d, heads)?;
    let branch = match ctx.str("variant")? {
        "simple" => Branch::Simple(Attention::new(ctx, "attn.", d, d, heads, hd)?),
        _ => Branch::Masked {
            q: Linear::new(ctx, "q.", d, d, true)?,
            k: Linear::new(ctx, "k.", d, d, true)?,
            v: Linear::new(ctx, "v.", d, d, true)?,
            heads,
        },
    };
    Ok(Box::new(Frgca {
        branch,
        norm: LayerNorm::new(ctx, "norm.", d, ctx.float("eps")?)?,
        proj: Linear::new(ctx, "linear.", d, d, true)?,
        scale: ctx.float("branch_scale")?,
        cls: ctx.bool("cls")?,
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (q, r) = (c.input(0)?, c.input(1)?);
    if !(q.rank() == 3 || q.rank() == 4) || r.rank() != q.rank() {
        return Err(fail(
            c,
            format!(
                "takes tokens [B, N, D] with regions [B, 9, D], or [B, T, N, D] with [B, T, 9, D]; got `{}` {q} and `{}` {r}",
                c.source(0),
                c.source(1)
            ),
        ));
    }
    let k = q.rank();
    if let Some(m) = r.dims[k - 2].size().filter(|m| *m != REGIONS.len()) {
        return Err(fail(
            c,
            format!("`{}` holds {m} region tokens per frame, not 9", c.source(1)),
        )
        .at_input(1)
        .help("connect `face_llava.frlp`"));
    }
    for i in 0..k {
        if i == k - 2 {
            continue;
        }
        if !q.dims[i].compatible(&r.dims[i]) {
            let what = if i == k - 1 {
                "widths"
            } else {
                "batch and frame axes"
            };
            return Err(fail(
                c,
                format!(
                    "the {what} of `{}` {q} and `{}` {r} differ: both live in the LLM's width, frame for frame",
                    c.source(0),
                    c.source(1)
                ),
            )
            .at_input(1));
        }
    }
    if let (Some(d), Some(h)) = (q.dims[k - 1].size(), c.usize("heads")) {
        if h == 0 || d % h != 0 {
            return Err(fail(c, format!("width {d} does not split into {h} heads")));
        }
    }
    let masked = matches!(c.params.get("variant"), Some(Value::Str(v)) if v == "masked");
    let landmarks = c.inputs.get(2);
    if let Some(l) = landmarks {
        if l.rank() != k - 1 || l.last().and_then(|d| d.size()) != Some(LANDMARK_VALUES) {
            return Err(fail(
                c,
                format!(
                    "`landmarks` must be [B, 136] with image tokens or [B, T, 136] with clip tokens; `{}` is {l}",
                    c.source(2)
                ),
            )
            .at_input(2));
        }
    }
    if masked {
        if landmarks.is_none() {
            return Err(fail(
                c,
                "variant = \"masked\" builds its mask from the landmarks: connect `landmarks = …` (the instruction dataset's `landmarks` port)".into(),
            ));
        }
        if let Some(n) = q.dims[k - 2].size() {
            let cls = matches!(c.params.get("cls"), Some(Value::Bool(true)));
            let p = n.saturating_sub(usize::from(cls));
            if grid_side(p).is_none() {
                return Err(fail(
                    c,
                    format!(
                        "the mask needs a square patch grid; `{}` has {n} tokens per frame ({p} after {} CLS)",
                        c.source(0),
                        if cls { "the" } else { "no" }
                    ),
                )
                .help(if cls {
                    "image tokens carry no CLS: set `cls = false`"
                } else {
                    "tokens with a CLS first: set `cls = true`"
                }));
            }
        }
    }
    Ok(vec![q.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::component::ParamStore;
    use mer_registry::Dim;
    use std::collections::BTreeMap;

    fn uniform(rng: &mut SeededRng, dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    /// Landmarks whose every region sits at one point: region r at `at[r]`.
    fn regions_at(at: &[(f32, f32); 9]) -> Tensor {
        let mut v = vec![0f32; LANDMARK_VALUES];
        for (r, (_, a, b)) in REGIONS.iter().enumerate() {
            for p in *a..*b {
                v[2 * p] = at[r].0;
                v[2 * p + 1] = at[r].1;
            }
        }
        Tensor::from_vec(v, (1, LANDMARK_VALUES), &Device::Cpu).unwrap()
    }

    /// Rows sum to 1; the CLS row is uniform; values follow softmax(−d).
    #[test]
    fn the_mask_rows_are_softmaxes_and_the_cls_row_is_uniform() {
        let mut rng = SeededRng::new(2);
        let lm = uniform(&mut rng, &[3, LANDMARK_VALUES]);
        let m: Vec<Vec<Vec<f32>>> = rpp_mask(&lm, 17, true).unwrap().to_vec3().unwrap();
        assert_eq!((m.len(), m[0].len(), m[0][0].len()), (3, 17, 9));
        for frame in &m {
            for row in frame {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                assert!(row.iter().all(|v| *v > 0.0 && *v < 1.0));
            }
            assert!(frame[0].iter().all(|v| (v - 1.0 / 9.0).abs() < 1e-6));
        }
        let no_cls: Vec<Vec<Vec<f32>>> = rpp_mask(&lm, 16, false).unwrap().to_vec3().unwrap();
        assert_eq!(
            no_cls[1],
            m[1][1..].to_vec(),
            "the image grid is the video's without CLS"
        );
        // One value by hand: patch 0 of a 4×4 grid is centred at (0.125, 0.125).
        let at = [
            (0.125, 0.125),
            (1.125, 0.125),
            (0.125, 1.125),
            (1.125, 1.125),
            (0.125, 0.125),
            (0.125, 0.125),
            (0.125, 0.125),
            (0.125, 0.125),
            (0.125, 0.125),
        ];
        let one: Vec<Vec<Vec<f32>>> = rpp_mask(&regions_at(&at), 16, false)
            .unwrap()
            .to_vec3()
            .unwrap();
        let d = [0.0f32, 1.0, 1.0, 2f32.sqrt(), 0.0, 0.0, 0.0, 0.0, 0.0];
        let z: f32 = d.iter().map(|d| (-d).exp()).sum();
        for r in 0..9 {
            assert!(
                (one[0][0][r] - (-d[r]).exp() / z).abs() < 1e-5,
                "region {r}"
            );
        }
    }

    /// Patch centres are (x, y) = (column, row), as landmarks are: a region
    /// at the top right (x = 0.9, y = 0.1) is nearest to the patch in row 0,
    /// last column, not to the one in the last row, column 0 (where the
    /// released code's swapped axes would put it).
    #[test]
    fn the_mask_reads_landmarks_as_x_then_y() {
        let mut at = [(0.5f32, 0.5f32); 9];
        at[1] = (0.9, 0.1);
        let m: Vec<Vec<Vec<f32>>> = rpp_mask(&regions_at(&at), 1 + 16 * 16, true)
            .unwrap()
            .to_vec3()
            .unwrap();
        // The patch whose centre is nearest (0.9, 0.1): row 1, column 14;
        // its mirror across the diagonal is row 14, column 1.
        for ((r, c), (mr, mc)) in [((0, 15), (15, 0)), ((1, 14), (14, 1))] {
            let (a, b) = (1 + 16 * r + c, 1 + 16 * mr + mc);
            assert!(
                m[0][a][1] > 2.0 * m[0][b][1],
                "{} vs {}",
                m[0][a][1],
                m[0][b][1]
            );
        }
    }

    fn built(variant: &str, scale: f64) -> Box<dyn Component> {
        let reg = crate::tests::registry();
        let k = reg.get(KIND).unwrap();
        let mut params = k.example_params().unwrap();
        params.insert("variant".into(), Value::Str(variant.into()));
        params.insert("branch_scale".into(), Value::Float(scale));
        params.insert("cls".into(), Value::Bool(false));
        let f = |d: Vec<usize>| TensorType::features(d.into_iter().map(Dim::Size).collect());
        let types = [f(vec![1, 4, 8]), f(vec![1, 9, 8]), f(vec![1, 136])];
        let mut store = ParamStore::new(3, Device::Cpu);
        k.build("fuse", &params, &types, &mut store).unwrap()
    }

    /// `out − h_v` is exactly `branch_scale` times the branch: doubling the
    /// scale doubles the difference (the 0.1 is a constant, not learnt).
    #[test]
    fn the_branch_is_added_at_its_fixed_scale() {
        let mut rng = SeededRng::new(5);
        let dev = Device::Cpu;
        let hv = rng.normal_tensor(&[1, 4, 8], &dev).unwrap();
        let hl = rng.normal_tensor(&[1, 9, 8], &dev).unwrap();
        let lm = uniform(&mut rng, &[1, 136]);
        for variant in ["simple", "masked"] {
            let diff = |scale: f64| -> Vec<f32> {
                let out = built(variant, scale)
                    .forward(
                        &[hv.clone(), hl.clone(), lm.clone()],
                        Mode::Eval,
                        &mut SeededRng::new(0),
                    )
                    .unwrap()
                    .remove(0);
                (out - &hv)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let (a, b) = (diff(0.1), diff(0.2));
            assert!(a.iter().any(|x| x.abs() > 1e-4), "{variant}: no branch");
            for (x, y) in a.iter().zip(&b) {
                assert!((2.0 * x - y).abs() < 1e-5, "{variant}: {x} vs {y}");
            }
            assert_eq!(diff(0.0), vec![0.0; 32], "{variant}");
        }
    }

    /// The masked variant's parameters are q, k, v without an output
    /// projection; the simple one's are PyTorch MultiheadAttention's four.
    #[test]
    fn each_variant_has_the_released_classes_parameters() {
        let reg = crate::tests::registry();
        let k = reg.get(KIND).unwrap();
        for (variant, expect) in [
            (
                "simple",
                vec!["attn.k", "attn.out", "attn.q", "attn.v", "linear", "norm"],
            ),
            ("masked", vec!["k", "linear", "norm", "q", "v"]),
        ] {
            let mut params = k.example_params().unwrap();
            params.insert("variant".into(), Value::Str(variant.into()));
            let f = |d: Vec<usize>| TensorType::features(d.into_iter().map(Dim::Size).collect());
            let types = [f(vec![1, 2, 5, 8]), f(vec![1, 2, 9, 8]), f(vec![1, 2, 136])];
            let mut store = ParamStore::new(3, Device::Cpu);
            k.build("fuse", &params, &types, &mut store).unwrap();
            let mut names: Vec<String> = store
                .vars()
                .map(|(n, _)| {
                    let n = n.trim_start_matches("fuse.");
                    n[..n.rfind('.').unwrap()].to_string()
                })
                .collect();
            names.sort();
            names.dedup();
            assert_eq!(names, expect, "{variant}");
        }
    }

    #[test]
    fn masked_without_landmarks_or_a_square_grid_is_a_checker_error() {
        let reg = crate::tests::registry();
        let k = reg.get(KIND).unwrap();
        let mut params: BTreeMap<String, Value> = k.example_params().unwrap();
        params.insert("variant".into(), Value::Str("masked".into()));
        let f = |d: Vec<usize>| TensorType::features(d.into_iter().map(Dim::Size).collect());
        let sources = ["proj".to_string(), "lmk".into(), "clips.landmarks".into()];
        let check = |inputs: &[TensorType], params: &BTreeMap<String, Value>| {
            (k.shapes.unwrap())(&ShapeCtx {
                kind: KIND,
                params,
                inputs,
                sources: &sources,
            })
        };
        let e = check(&[f(vec![2, 8, 257, 16]), f(vec![2, 8, 9, 16])], &params).unwrap_err();
        assert!(
            e.message.contains("needs") || e.message.contains("landmarks"),
            "{}",
            e.message
        );
        // 256 image tokens read with a CLS: 255 patches.
        let e = check(
            &[f(vec![2, 256, 16]), f(vec![2, 9, 16]), f(vec![2, 136])],
            &params,
        )
        .unwrap_err();
        assert!(e.message.contains("square patch grid"), "{}", e.message);
        params.insert("cls".into(), Value::Bool(false));
        check(
            &[f(vec![2, 256, 16]), f(vec![2, 9, 16]), f(vec![2, 136])],
            &params,
        )
        .unwrap();
        let e = check(&[f(vec![2, 8, 257, 16]), f(vec![2, 4, 9, 16])], &params).unwrap_err();
        assert!(e.message.contains("batch and frame axes"), "{}", e.message);
    }
}
