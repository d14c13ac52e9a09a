//! mer plugin `face_llava`: Face-LLaVA (arXiv 2504.07198), the landmark
//! path between the projected visual tokens and the LLM.
//!
//! Recipes enable it with `use face_llava`. Everything else Face-LLaVA is
//! made of is a builtin: the frozen LanguageBind tower (`clip.vision`), the
//! `mlp2x_gelu` projector (`nn.mlp`), the instruction data with its
//! per-frame landmarks (`instruct.faceinstruct { landmarks = true }`), the
//! LLM with its chat template, the next-token loss and answers read as
//! labels (`llm.instruct`, `loss.lm`). This plugin adds:
//! - `face_llava.frlp`: the face-region landmark projector: one linear map
//!   per landmark region of the 68-point iBUG layout into the LLM's width,
//!   plus a global landmark token *added* to each region token.
//! - `face_llava.frgca`: face-region guided cross-attention from the visual
//!   tokens to the region tokens, per frame, in the released scripts' form
//!   (`simple`) or the paper's (`masked`, with the region-patch proximity
//!   mask m_RPP).
//!
//! Both follow the released code (`ihp-lab/Face-LLaVA`), whose details are
//! pinned by the tests here; where the code and the paper disagree, each
//! kind's documentation says which one a parameter follows
//! (`shared/research/face-llava.md`).

mod frgca;
mod frlp;

use mer_registry::plugin::Registrar;
use mer_registry::{export_plugin, ShapeCtx, ShapeError};

/// Registers this plugin's kinds (also the entry point for static linking).
pub fn register(r: &mut dyn Registrar) {
    r.kind(frlp::kind());
    r.kind(frgca::kind());
}

export_plugin!("face_llava", register);

/// The nine landmark regions of the 68-point iBUG layout, as Face-LLaVA's
/// `LandmarkRegionProjector` slices them: name, first index, end index
/// (0-based, half-open).
pub const REGIONS: [(&str, usize, usize); 9] = [
    ("face", 0, 17),
    ("eyebrow1", 17, 22),
    ("eyebrow2", 22, 27),
    ("nose", 27, 31),
    ("nostril", 31, 36),
    ("eye1", 36, 42),
    ("eye2", 42, 48),
    ("lips", 48, 60),
    ("teeth", 60, 68),
];

/// Values per frame of landmarks: 68 points, interleaved x, y.
pub const LANDMARK_VALUES: usize = 136;

/// A shape error that names the kind.
fn fail(c: &ShapeCtx, message: String) -> ShapeError {
    ShapeError::new(format!("`{}`: {message}", c.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_registry::{Registry, Value};

    pub(crate) fn registry() -> Registry {
        let mut reg = Registry::new();
        reg.add_static_plugin("face_llava", env!("CARGO_PKG_VERSION"), register)
            .unwrap();
        reg
    }

    #[test]
    fn every_kind_passes_gradcheck_in_every_variant() {
        let reg = registry();
        for (name, overrides) in [
            ("face_llava.frlp", vec![]),
            ("face_llava.frlp", vec![("global", Value::Bool(false))]),
            ("face_llava.frgca", vec![]),
            (
                "face_llava.frgca",
                vec![("variant", Value::Str("masked".into()))],
            ),
        ] {
            let k = reg.get(name).unwrap();
            let ex = k.example.as_ref().unwrap();
            let mut params = k.example_params().unwrap();
            for (p, v) in &overrides {
                params.insert(p.to_string(), v.clone());
            }
            let report = mer_registry::gradcheck::gradcheck(k, &params, &ex.inputs, 3).unwrap();
            assert!(report.ok(), "{name} {overrides:?}: {report:?}");
            assert!(!report.checked.is_empty(), "{name}: nothing checked");
        }
    }

    #[test]
    fn the_regions_cover_the_68_points_once_in_order() {
        let mut next = 0;
        for (_, a, b) in REGIONS {
            assert_eq!(a, next);
            assert!(b > a);
            next = b;
        }
        assert_eq!(next, 68);
        let sizes: Vec<usize> = REGIONS.iter().map(|(_, a, b)| b - a).collect();
        assert_eq!(sizes, vec![17, 5, 5, 4, 5, 6, 6, 12, 8]);
    }
}
