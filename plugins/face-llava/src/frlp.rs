//! `face_llava.frlp`: the face-region landmark projector. Each of the nine
//! iBUG regions ([`crate::REGIONS`]) gets its own single linear layer from
//! its points, interleaved x, y, to the LLM's width (the paper's figure
//! says "MLP"; the released `LandmarkRegionProjector` is one `nn.Linear`
//! per region), and a global linear map of all 136 values gives one token
//! per frame that is *added* to each region token (the code's
//! concatenation is commented out), so a frame is 9 tokens.

use crate::{fail, LANDMARK_VALUES, REGIONS};
use mer_registry::candle::{Result as CResult, Tensor, D};
use mer_registry::component::input;
use mer_registry::layers::Linear;
use mer_registry::{
    BuildCtx, BuildError, Component, Dim, ExampleInput, Kind, KindBuilder, Mode, Role, SeededRng,
    Semantic, ShapeCtx, ShapeError, TensorType, Value,
};

const KIND: &str = "face_llava.frlp";

pub(crate) fn kind() -> Kind {
    KindBuilder::new(KIND, Role::Component)
        .doc("Face-region landmark projector (Face-LLaVA's FRLP): 68 iBUG landmarks per frame (interleaved x, y, divided by the face crop's side: `instruct.faceinstruct { landmarks = true }`) become 9 region tokens in the LLM's width, one linear layer per region (jaw 0–16, each brow, nose bridge, nostrils, each eye, outer lips, inner lips), plus a global landmark token from all 136 values added to each of them. Images [B, 136] give [B, 9, D]; clips [B, T, 136] give [B, T, 9, D].")
        .input("landmarks", "landmarks [B, 136] or [B, T, 136], interleaved x, y in [0, 1]")
        .output("tokens", "region tokens [B, 9, D] or [B, T, 9, D]")
        .int("dim", None, Some(1), "Token width: the LLM's hidden size (Vicuna-7B: 4096).")
        .bool("global", true, "Add the global landmark token (`global_landmarks_projector`, linear) to each region token, as both released scripts do.")
        .shapes(shapes)
        .factory(build)
        .example_inputs(
            &[("dim", Value::Int(6))],
            vec![ExampleInput::Features(vec![2, 2, LANDMARK_VALUES])],
        )
        .build()
}

struct Frlp {
    regions: Vec<Linear>,
    global: Option<Linear>,
}

impl Component for Frlp {
    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let x = input(inputs, 0, KIND)?;
        let axis = x.rank() - 1;
        let tokens = REGIONS
            .iter()
            .zip(&self.regions)
            .map(|((_, a, b), layer)| layer.apply(&x.narrow(axis, 2 * a, 2 * (b - a))?))
            .collect::<CResult<Vec<_>>>()?;
        // [.., 9, D]: the regions before the width.
        let local = Tensor::stack(&tokens, axis)?;
        Ok(vec![match &self.global {
            Some(g) => local.broadcast_add(&g.apply(x)?.unsqueeze(D::Minus2)?)?,
            None => local,
        }])
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let d = ctx.usize("dim")?;
    let regions = REGIONS
        .iter()
        .map(|(name, a, b)| Linear::new(ctx, &format!("region.{name}."), 2 * (b - a), d, true))
        .collect::<Result<Vec<_>, _>>()?;
    let global = if ctx.bool("global")? {
        Some(Linear::new(ctx, "global.", LANDMARK_VALUES, d, true)?)
    } else {
        None
    };
    Ok(Box::new(Frlp { regions, global }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let x = c.input(0)?;
    let width = x.last().and_then(|d| d.size());
    if !(x.rank() == 2 || x.rank() == 3) || width.is_some_and(|w| w != LANDMARK_VALUES) {
        return Err(fail(
            c,
            format!(
                "takes 68 landmarks per frame, [B, 136] or [B, T, 136] (interleaved x, y); `{}` is {x}",
                c.source(0)
            ),
        )
        .at_input(0)
        .help("connect `instruct.faceinstruct`'s `landmarks` port (landmarks = true)"));
    }
    let mut dims = x.dims[..x.rank() - 1].to_vec();
    dims.push(Dim::Size(REGIONS.len()));
    dims.push(Dim::Size(c.usize("dim").unwrap_or(1)));
    Ok(vec![TensorType::f32(dims, Semantic::Features)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::candle::Device;
    use mer_registry::component::ParamStore;
    use std::collections::BTreeMap;

    fn built(dim: usize, global: bool) -> (Box<dyn Component>, ParamStore) {
        let reg = crate::tests::registry();
        let k = reg.get(KIND).unwrap();
        let params = BTreeMap::from([
            ("dim".to_string(), Value::Int(dim as i64)),
            ("global".to_string(), Value::Bool(global)),
        ]);
        let mut store = ParamStore::new(1, Device::Cpu);
        let types = [TensorType::features(vec![
            Dim::sym("B"),
            Dim::Size(LANDMARK_VALUES),
        ])];
        let c = k.build("lmk", &params, &types, &mut store).unwrap();
        (c, store)
    }

    /// Face-LLaVA's parameter counts at Vicuna's width: 593,920 local and
    /// 561,152 global (`shared/research/face-llava.md` §1).
    #[test]
    fn parameter_counts_match_the_released_model() {
        let (_, store) = built(4096, true);
        let count = |prefix: &str| -> usize {
            store
                .vars()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(_, v)| v.as_tensor().elem_count())
                .sum()
        };
        assert_eq!(count("lmk.region."), 593_920);
        assert_eq!(count("lmk.global."), 561_152);
        let shapes: Vec<(String, Vec<usize>)> = store
            .vars()
            .filter(|(n, _)| n.ends_with(".weight"))
            .map(|(n, v)| (n.clone(), v.as_tensor().dims().to_vec()))
            .collect();
        assert!(shapes.contains(&("lmk.region.face.weight".into(), vec![34, 4096])));
        assert!(shapes.contains(&("lmk.region.teeth.weight".into(), vec![16, 4096])));
    }

    /// Region r reads exactly its own points, and the global token is added
    /// to every region token, not concatenated: moving a point of the left
    /// brow (17–21) changes the brow's token beyond the global shift that
    /// every token shares, and no other token beyond it.
    #[test]
    fn each_region_reads_its_points_and_the_global_token_is_added() {
        let dev = Device::Cpu;
        let (with, _) = built(3, true);
        let (local, _) = built(3, false);
        let mut rng = SeededRng::new(0);
        let x = rng.normal_tensor(&[1, LANDMARK_VALUES], &dev).unwrap();
        let mut moved: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        moved[2 * 19] += 0.5; // x of point 19: the first brow's middle.
        let moved = Tensor::from_vec(moved, (1, LANDMARK_VALUES), &dev).unwrap();
        let run = |c: &dyn Component, x: &Tensor| -> Vec<Vec<f32>> {
            c.forward(std::slice::from_ref(x), Mode::Eval, &mut SeededRng::new(0))
                .unwrap()[0]
                .squeeze(0)
                .unwrap()
                .to_vec2()
                .unwrap()
        };
        let (a, b) = (run(local.as_ref(), &x), run(local.as_ref(), &moved));
        assert_eq!(a.len(), 9, "9 tokens, not 10: nothing is concatenated");
        for r in 0..9 {
            let changed = a[r] != b[r];
            assert_eq!(changed, r == 1, "region {r} ({})", REGIONS[r].0);
        }
        // The same weights (seeded by name) plus the global token: every
        // token differs from the local one by the same vector.
        let g = run(with.as_ref(), &x);
        let shift: Vec<f32> = (0..3).map(|j| g[0][j] - a[0][j]).collect();
        for r in 0..9 {
            for j in 0..3 {
                assert!((g[r][j] - a[r][j] - shift[j]).abs() < 1e-5, "region {r}");
            }
        }
        assert!(shift.iter().any(|s| s.abs() > 1e-3));
    }

    #[test]
    fn clips_keep_their_frame_axis_and_a_wrong_width_is_a_checker_error() {
        let reg = crate::tests::registry();
        let k = reg.get(KIND).unwrap();
        let params = BTreeMap::from([
            ("dim".to_string(), Value::Int(8)),
            ("global".to_string(), Value::Bool(true)),
        ]);
        let check = |dims: Vec<usize>| {
            let inputs = [TensorType::features(
                dims.into_iter().map(Dim::Size).collect(),
            )];
            (k.shapes.unwrap())(&ShapeCtx {
                kind: KIND,
                params: &params,
                inputs: &inputs,
                sources: &["clips.landmarks".to_string()],
            })
        };
        let t = check(vec![2, 8, 136]).unwrap();
        assert_eq!(
            t[0].dims,
            vec![Dim::Size(2), Dim::Size(8), Dim::Size(9), Dim::Size(8)]
        );
        let e = check(vec![2, 68, 2]).unwrap_err();
        assert!(
            e.message.contains("68 landmarks per frame"),
            "{}",
            e.message
        );
    }
}
