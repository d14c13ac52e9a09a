//! The one clip sampler: which `frames` of a clip a clip dataset reads.
//!
//! `synth.me`, `synth.dfer`, the `me.*` loaders and the `dfer.*` loaders
//! all call [`pick`], so the same clip length, `frames` and `sampling`
//! read the same frame indices whichever kind reads them (issue 17: three
//! copies had disagreed about what `uniform` means).
//!
//! # What `uniform` means
//!
//! `frames` K indices evenly spaced from the first to the last frame of
//! the span, both ends included (`linspace(lo, hi, K)`, rounded to the
//! nearest frame), not the centres of K equal slots.
//!
//! Why the ends: a micro-expression clip as the corpora distribute it is
//! cut from onset to offset, and its onset frame is the neutral face every
//! later frame is compared with (the onset→apex flow, frame differences,
//! TIM's interpolation, which keeps both end frames). Slot centres skip it
//! (K = 6 over a 40-frame clip starts at frame 3). MEB, the benchmark the
//! ME protocols here follow, samples `np.linspace(0, t - 1, K)`, and
//! `me.*` already did, so real micro-expression runs read the frames they
//! read before. DFER practice (VideoMAE/MAE-DFER's 16 frames on DFEW)
//! takes segment centres instead; over a 60–100-frame DFER clip the two
//! differ by under half a slot, while for a 10–40-frame ME clip the
//! missing onset frame matters, so the ME convention wins and DFER
//! follows it.
//!
//! One frame (K = 1) is the middle of the clip for the uniform modes, so
//! that they depend on the clip length alone, and the apex (the frame
//! that carries the expression) for the onset modes.
//!
//! # The modes
//!
//! - `uniform`: over the whole clip as the corpus cuts it (onset..offset
//!   for ME corpora, the whole video for DFER corpora).
//! - `noisy_uniform`: `uniform`, each position jittered by up to ±½ of
//!   span / K, drawn from the training RNG (one draw per frame, in order);
//!   without an RNG (evaluation) it is `uniform`.
//! - `onset_apex`: uniform from the onset to the apex frame.
//! - `onset_apex_offset`: uniform from the onset to the offset frame.
//!
//! The onset modes need an annotated apex: loaders whose clips have none
//! (the DFER corpora) refuse them at build; here a missing apex falls back
//! to the middle of onset..offset (MEB's convention for SMIC).

use mer_registry::{BuildError, SeededRng, Value};
use std::collections::BTreeMap;

/// The `sampling` parameter of clip datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `uniform`: evenly spaced over the whole clip, both ends included.
    Uniform,
    /// `noisy_uniform`: `uniform` jittered by the training RNG; plain `uniform`
    /// without one.
    NoisyUniform,
    /// `onset_apex`: evenly spaced from the onset to the apex frame.
    OnsetApex,
    /// `onset_apex_offset`: evenly spaced from the onset to the offset frame.
    OnsetApexOffset,
}

impl Sampling {
    /// Every mode, in the schema's order.
    pub const ALL: [Sampling; 4] = [
        Sampling::Uniform,
        Sampling::NoisyUniform,
        Sampling::OnsetApex,
        Sampling::OnsetApexOffset,
    ];

    /// The name recipes write.
    pub fn name(self) -> &'static str {
        match self {
            Sampling::Uniform => "uniform",
            Sampling::NoisyUniform => "noisy_uniform",
            Sampling::OnsetApex => "onset_apex",
            Sampling::OnsetApexOffset => "onset_apex_offset",
        }
    }

    /// The mode called `s`, if any.
    pub fn parse(s: &str) -> Option<Sampling> {
        Sampling::ALL.into_iter().find(|m| m.name() == s)
    }

    /// `sampling` from a dataset's parameters (after the schema's
    /// defaults); a value the schema does not list is refused, never read
    /// as `uniform`.
    pub fn from_params(p: &BTreeMap<String, Value>, kind: &str) -> Result<Sampling, BuildError> {
        match p.get("sampling") {
            None => Err(BuildError(format!(
                "`{kind}`: missing parameter `sampling`"
            ))),
            Some(Value::Str(s)) => Sampling::parse(s).ok_or_else(|| {
                let names: Vec<&str> = Sampling::ALL.iter().map(|m| m.name()).collect();
                BuildError(format!(
                    "`{kind}`: sampling = \"{s}\" is not one of {}",
                    names.join(", ")
                ))
            }),
            Some(v) => Err(BuildError(format!(
                "`{kind}`: sampling must be a string, not {v:?}"
            ))),
        }
    }

    /// Whether the mode reads the expression's timing (onset, apex).
    pub fn needs_apex(self) -> bool {
        matches!(self, Sampling::OnsetApex | Sampling::OnsetApexOffset)
    }
}

/// A clip's frames as a sampler sees them: `len` frames numbered from 0,
/// and where the expression starts, peaks and ends among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipFrames {
    /// Number of frames in the clip; indices run `0..len`.
    pub len: usize,
    /// Index of the expression's onset frame (0 for DFER videos and ME clips
    /// cut at onset).
    pub onset: usize,
    /// `None` where the corpus annotates no apex.
    pub apex: Option<usize>,
    /// Index of the expression's offset frame, inclusive (normally `len - 1`).
    pub offset: usize,
}

impl ClipFrames {
    /// A clip with no expression timing (a DFER video): onset and offset
    /// are its ends.
    pub fn whole(len: usize) -> ClipFrames {
        ClipFrames {
            len,
            onset: 0,
            apex: None,
            offset: len.saturating_sub(1),
        }
    }

    /// A clip cut from onset to offset (the ME corpora), apex at `apex`
    /// frames after the onset (kept inside the clip).
    pub fn onset_to_offset(len: usize, apex: usize) -> ClipFrames {
        let last = len.saturating_sub(1);
        ClipFrames {
            len,
            onset: 0,
            apex: Some(apex.min(last)),
            offset: last,
        }
    }

    /// The apex, or the middle of onset..offset where none is annotated.
    fn apex_or_middle(&self) -> usize {
        self.apex.unwrap_or_else(|| middle(self.onset, self.offset))
    }
}

/// Frame indices (into the clip's `len` frames) for one read of `clip`:
/// `k` of them, in time order, repeating frames of clips shorter than
/// `k`. `aug` is the training RNG; only `noisy_uniform` draws from it.
/// Empty only for an empty clip.
pub fn pick(
    clip: &ClipFrames,
    k: usize,
    sampling: Sampling,
    aug: Option<&mut SeededRng>,
) -> Vec<usize> {
    if clip.len == 0 || k == 0 {
        return Vec::new();
    }
    let last = clip.len - 1;
    let (lo, hi) = match sampling {
        Sampling::Uniform | Sampling::NoisyUniform => (0, last),
        Sampling::OnsetApex => (clip.onset, clip.apex_or_middle()),
        Sampling::OnsetApexOffset => (clip.onset, clip.offset),
    };
    // Annotations outside the clip (or apex before onset) are the loaders'
    // to report; here they are clamped so that no index leaves the clip.
    let hi = hi.min(last);
    let lo = lo.min(hi);
    let span = (hi - lo) as f32;
    let mut aug = aug.filter(|_| sampling == Sampling::NoisyUniform);
    (0..k)
        .map(|i| {
            let mut x = match (k, sampling) {
                (1, Sampling::OnsetApex | Sampling::OnsetApexOffset) => {
                    clip.apex_or_middle() as f32
                }
                (1, _) => middle(lo, hi) as f32,
                _ => lo as f32 + span * i as f32 / (k - 1) as f32,
            };
            // One draw per frame, in order, whatever `k`: the training
            // RNG's stream does not depend on which mode or length is read.
            if let Some(r) = aug.as_deref_mut() {
                x += r.uniform_range(-0.5, 0.5) * span / k as f32;
            }
            (x.round().max(lo as f32) as usize).min(hi)
        })
        .collect()
}

/// The middle frame of `lo..=hi`, rounded as [`pick`] rounds.
fn middle(lo: usize, hi: usize) -> usize {
    ((lo + hi) as f32 / 2.0).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_includes_both_ends_and_spaces_evenly() {
        let c = ClipFrames::onset_to_offset(40, 15);
        assert_eq!(
            pick(&c, 6, Sampling::Uniform, None),
            vec![0, 8, 16, 23, 31, 39]
        );
        assert_eq!(pick(&c, 2, Sampling::OnsetApex, None), vec![0, 15]);
        assert_eq!(
            pick(&c, 3, Sampling::OnsetApexOffset, None),
            vec![0, 20, 39]
        );
        // One frame: the middle for the uniform modes, the apex for the
        // onset modes.
        assert_eq!(pick(&c, 1, Sampling::Uniform, None), vec![20]);
        assert_eq!(pick(&c, 1, Sampling::NoisyUniform, None), vec![20]);
        assert_eq!(pick(&c, 1, Sampling::OnsetApex, None), vec![15]);
        assert_eq!(pick(&c, 1, Sampling::OnsetApexOffset, None), vec![15]);
        // A short clip repeats frames rather than reading past its end.
        assert_eq!(
            pick(&ClipFrames::whole(3), 5, Sampling::Uniform, None),
            vec![0, 1, 1, 2, 2]
        );
        assert_eq!(
            pick(&ClipFrames::whole(7), 1, Sampling::Uniform, None),
            vec![3]
        );
        assert!(pick(&ClipFrames::whole(0), 4, Sampling::Uniform, None).is_empty());
    }

    #[test]
    fn noisy_uniform_jitters_within_the_clip_and_only_with_an_rng() {
        let c = ClipFrames::whole(50);
        let plain = pick(&c, 8, Sampling::NoisyUniform, None);
        assert_eq!(plain, pick(&c, 8, Sampling::Uniform, None));
        let mut a = SeededRng::derive(3, "t");
        let mut b = SeededRng::derive(3, "t");
        let x = pick(&c, 8, Sampling::NoisyUniform, Some(&mut a));
        assert_eq!(x, pick(&c, 8, Sampling::NoisyUniform, Some(&mut b)));
        assert_ne!(x, plain);
        assert!(x.windows(2).all(|w| w[0] <= w[1]), "{x:?}");
        assert!(x.iter().all(|&i| i < 50));
        // Other modes never draw from the RNG.
        let mut r = SeededRng::derive(3, "t");
        pick(&c, 8, Sampling::Uniform, Some(&mut r));
        assert_eq!(r.uniform(), SeededRng::derive(3, "t").uniform());
    }

    fn map(pairs: Vec<(&str, Value)>) -> BTreeMap<String, Value> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Issue 17's check: for the same clip length, `frames` and
    /// `sampling`, `synth.me`, `me.casme2` (reading a layout written from
    /// the generator) and a `dfer.*` loader read the same frame indices,
    /// with and without the training RNG. `synth.dfer` agrees on the modes
    /// that span the whole clip; the DFER corpora refuse the onset modes.
    #[test]
    fn synth_me_casme2_and_dfer_pick_the_same_frames() {
        use super::super::dfer_layout::{self, Corpus, DferDataset};
        use super::super::me_layout::{self, MeDataset, CASME2};
        use super::super::synth::{Flavor, Synth};
        use mer_registry::Dataset;

        let gen = map(vec![
            ("subjects", Value::Int(2)),
            ("clips_per_subject", Value::Int(3)),
            ("size", Value::List(vec![Value::Int(8), Value::Int(8)])),
            ("seed", Value::Int(5)),
        ]);
        let tmp = |name: &str| {
            let d = std::env::temp_dir().join(format!("mer-sampler-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            d
        };
        let rng = || Some(SeededRng::derive(11, "sampler-test"));
        let mut compared = 0;
        for n in [3usize, 5, 12, 40] {
            let me_root = tmp(&format!("casme2-{n}"));
            let source = Synth::new(Flavor::Me, &gen).unwrap();
            me_layout::write_layout(&CASME2, &source, &me_root, n, 1).unwrap();
            let dfer_root = tmp(&format!("dfew-{n}"));
            dfer_layout::write_layout(Corpus::Dfew, &gen, &dfer_root, n).unwrap();
            for k in [1usize, 2, 3, 6, 16] {
                for sampling in Sampling::ALL {
                    let what = format!("clip length {n}, frames {k}, {}", sampling.name());
                    let common = |root: Option<&std::path::Path>| {
                        let mut p = gen.clone();
                        p.insert("frames".into(), Value::Int(k as i64));
                        p.insert("sampling".into(), Value::Str(sampling.name().into()));
                        if let Some(r) = root {
                            p.insert("root".into(), Value::Str(r.display().to_string()));
                        }
                        p
                    };
                    let synth_me = Synth::new(Flavor::Me, &common(None))
                        .unwrap()
                        .with_clip_frames(n);
                    let mut casme2_p = common(Some(&me_root));
                    casme2_p.insert("classes".into(), Value::Str("7class".into()));
                    casme2_p.insert("flow".into(), Value::Bool(false));
                    let casme2 = MeDataset::new(&CASME2, &casme2_p).unwrap();
                    let synth_ids: Vec<String> = synth_me
                        .index()
                        .unwrap()
                        .into_iter()
                        .map(|m| m.id)
                        .collect();
                    let casme2_index = casme2.index().unwrap();
                    assert!(!casme2_index.is_empty(), "{what}");
                    for (pos, meta) in casme2_index.iter().enumerate() {
                        let at = synth_ids.iter().position(|i| *i == meta.id).unwrap();
                        let want = synth_me.picks(at, None).unwrap();
                        assert_eq!(want.len(), k, "{what}");
                        assert_eq!(
                            casme2.picks(pos, None).unwrap(),
                            want,
                            "{what}, {}",
                            meta.id
                        );
                        assert_eq!(
                            casme2.picks(pos, rng().as_mut()).unwrap(),
                            synth_me.picks(at, rng().as_mut()).unwrap(),
                            "{what} (training), {}",
                            meta.id
                        );
                        compared += 1;
                    }
                    let mut dfew_p = common(Some(&dfer_root));
                    dfew_p.insert("landmarks".into(), Value::Str("none".into()));
                    let dfew = DferDataset::new(Corpus::Dfew, &dfew_p);
                    if sampling.needs_apex() {
                        let e = dfew.err().expect("DFEW has no apex to sample to");
                        assert!(e.0.contains(sampling.name()), "{}", e.0);
                        continue;
                    }
                    let dfew = dfew.unwrap();
                    let synth_dfer = Synth::new(Flavor::Dfer, &common(None))
                        .unwrap()
                        .with_clip_frames(n);
                    let want = synth_me.picks(0, None).unwrap();
                    for pos in 0..dfew.index().unwrap().len() {
                        assert_eq!(dfew.picks(pos, None).unwrap(), want, "{what}");
                        assert_eq!(
                            dfew.picks(pos, rng().as_mut()).unwrap(),
                            synth_me.picks(0, rng().as_mut()).unwrap(),
                            "{what} (training)"
                        );
                        compared += 1;
                    }
                    assert_eq!(synth_dfer.picks(0, None).unwrap(), want, "{what}");
                }
            }
            // A worked case, so that the agreement is on the documented meaning.
            if n == 12 {
                let clip = ClipFrames::whole(n);
                assert_eq!(
                    pick(&clip, 6, Sampling::Uniform, None),
                    vec![0, 2, 4, 7, 9, 11]
                );
            }
            let _ = std::fs::remove_dir_all(&me_root);
            let _ = std::fs::remove_dir_all(&dfer_root);
        }
        assert!(compared > 100, "{compared} comparisons");
    }

    #[test]
    fn unknown_modes_are_refused() {
        let p = BTreeMap::from([("sampling".to_string(), Value::Str("random".into()))]);
        let e = Sampling::from_params(&p, "me.casme2").unwrap_err();
        assert!(e.0.contains("noisy_uniform"), "{}", e.0);
        // The schema's default is filled before; absent is an error here.
        let e = Sampling::from_params(&BTreeMap::new(), "x").unwrap_err();
        assert!(e.0.contains("missing parameter `sampling`"), "{}", e.0);
    }
}
