//! `synth.me` and `synth.dfer`: generated clips, deterministic from a seed.
//!
//! Subjects differ in face shape, skin tone, texture and lighting; each clip
//! animates FACS action units on the landmarks with onset–apex–offset
//! timing, adds small head motion and sensor noise, and is labelled with an
//! emotion whose AUs follow CASME II-style rules. Rules overlap between
//! classes (a lone AU4 is disgust in some clips and "others" in others) and
//! amplitudes vary, so a model can beat chance but nothing reaches 100%.

use super::face::{self, Identity, Landmarks};
use super::sampler::{self, ClipFrames, Sampling};
use super::{count, flag, float, int, ints, text};
use crate::ports::{clip, dfer_data, me_data, with_five_points, ME5};
use mer_registry::candle::{Device, Tensor};
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use mer_registry::{Kind, LayoutRequest};
use std::collections::BTreeMap;

/// One emotion class: its name, relative frequency and AU patterns (one
/// pattern is drawn per clip).
#[derive(Clone)]
struct Class {
    name: &'static str,
    weight: f32,
    patterns: &'static [&'static [i64]],
}

const HAPPY: &[&[i64]] = &[&[12], &[6, 12], &[12, 25]];
const DISGUST: &[&[i64]] = &[&[4, 7], &[9], &[10], &[4, 9], &[4]];
const REPRESSION: &[&[i64]] = &[&[14], &[15], &[17], &[24], &[15, 17]];
const SURPRISE: &[&[i64]] = &[&[1, 2], &[1, 2, 25], &[1], &[2], &[5, 26]];
const OTHERS: &[&[i64]] = &[
    &[4],
    &[7],
    &[14],
    &[17],
    &[20],
    &[23],
    &[24],
    &[25],
    &[10],
    &[1],
    &[4, 7],
    &[2],
];
const ANGER: &[&[i64]] = &[&[4, 7], &[23], &[4, 23], &[24]];
const FEAR: &[&[i64]] = &[&[1, 2, 4], &[20], &[4, 20]];
const SAD: &[&[i64]] = &[&[1, 4], &[15], &[1, 15], &[15, 17]];
const NEGATIVE: &[&[i64]] = &[
    &[4, 7],
    &[9],
    &[10],
    &[4, 9],
    &[14],
    &[15],
    &[17],
    &[24],
    &[15, 17],
];

/// Class tables with the imbalance of the real sets: CASME II's 5 classes
/// (99 others, 63 disgust, 32 happiness, 27 repression, 25 surprise), the
/// MEGC composite's 3 (88 negative, 32 positive, 25 surprise), and a
/// 7-class set shaped like CAS(ME)^3 (approximate counts).
fn me_classes(set: &str) -> Vec<Class> {
    let c = |name, weight, patterns| Class {
        name,
        weight,
        patterns,
    };
    match set {
        "3class_megc" => vec![
            c("negative", 88.0, NEGATIVE),
            c("positive", 32.0, HAPPY),
            c("surprise", 25.0, SURPRISE),
        ],
        "7class" => vec![
            c("anger", 64.0, ANGER),
            c("disgust", 250.0, DISGUST),
            c("fear", 86.0, FEAR),
            c("happiness", 64.0, HAPPY),
            c("others", 201.0, OTHERS),
            c("sadness", 57.0, SAD),
            c("surprise", 187.0, SURPRISE),
        ],
        _ => vec![
            c("disgust", 63.0, DISGUST),
            c("happiness", 32.0, HAPPY),
            c("others", 99.0, OTHERS),
            c("repression", 27.0, REPRESSION),
            c("surprise", 25.0, SURPRISE),
        ],
    }
}

/// DFEW's seven classes in its label order, with its rough imbalance, as
/// macro-expressions (several AUs at once).
fn dfer_classes(n: usize) -> Vec<Class> {
    let c = |name, weight, patterns| Class {
        name,
        weight,
        patterns,
    };
    const P_HAPPY: &[&[i64]] = &[&[6, 12], &[6, 12, 25]];
    const P_SAD: &[&[i64]] = &[&[1, 4, 15], &[1, 4, 15, 17]];
    const P_NEUTRAL: &[&[i64]] = &[&[]];
    const P_ANGRY: &[&[i64]] = &[&[4, 5, 7, 23], &[4, 7, 24]];
    const P_SURPRISE: &[&[i64]] = &[&[1, 2, 5, 26], &[1, 2, 5, 25]];
    const P_DISGUST: &[&[i64]] = &[&[9, 15], &[9, 10, 15]];
    const P_FEAR: &[&[i64]] = &[&[1, 2, 4, 5, 20, 26], &[1, 2, 4, 20, 25]];
    let base = vec![
        c("happy", 3.0, P_HAPPY),
        c("sad", 2.0, P_SAD),
        c("neutral", 3.0, P_NEUTRAL),
        c("angry", 3.0, P_ANGRY),
        c("surprise", 2.0, P_SURPRISE),
        c("disgust", 0.5, P_DISGUST),
        c("fear", 1.5, P_FEAR),
    ];
    base.into_iter().take(n.clamp(2, 7)).collect()
}

/// The generator's classes picked by name, in the given (label-file)
/// order. Beyond the seven basic ones it knows `calm` (RAVDESS: a faint
/// smile, deliberately close to neutral, as the real class is) and
/// `contempt` (MEAD: a one-sided AU14).
fn dfer_classes_named(names: &[&str]) -> Option<Vec<Class>> {
    const P_CALM: &[&[i64]] = &[&[12], &[6]];
    const P_CONTEMPT: &[&[i64]] = &[&[14], &[14, 12]];
    let mut all = dfer_classes(7);
    all.push(Class {
        name: "calm",
        weight: 2.0,
        patterns: P_CALM,
    });
    all.push(Class {
        name: "contempt",
        weight: 1.5,
        patterns: P_CONTEMPT,
    });
    names
        .iter()
        .map(|n| all.iter().find(|c| c.name == *n).cloned())
        .collect()
}

/// One generated clip, as the index knows it.
#[derive(Debug, Clone)]
struct Clip {
    subject: usize,
    id: String,
    class: usize,
    /// `(au, amplitude)` pairs; amplitude 1 is a macro-expression.
    aus: Vec<(i64, f32)>,
    /// Onset, apex, offset as fractions of the clip.
    timing: [f32; 3],
    /// Head motion: `(amplitude x, y, rotation, phase)`.
    head: [f32; 4],
}

/// A generated clip as a label file records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInfo {
    /// 1-based subject number.
    pub subject: usize,
    /// Sample id in the corpus style: `subNN/EPNN_01` for `synth.me`,
    /// `actorNN/clipNNN` for `synth.dfer`.
    pub id: String,
    /// The clip's class name.
    pub emotion: &'static str,
    /// Coded AUs, ascending.
    pub aus: Vec<i64>,
    /// Onset, apex, offset as fractions of the clip.
    pub timing: [f32; 3],
}

/// Frames in one generated clip: its onset..offset for `synth.me` (a
/// 0.53 s micro-expression at CASME II's 200 fps), the whole clip for
/// `synth.dfer` (3.5 s at 30 fps, about a RAVDESS clip). Frame `j` is clip
/// time `j / 105` of that stretch, as `mer data synth` writes the layouts,
/// so the generator and a layout written from it hold the same frames and
/// [`sampler::pick`] chooses among them as it does among real frames.
/// 105 = lcm(1, 3, 5, 7, 15): 2, 4, 6, 8 and 16 frames land on evenly
/// spaced frames with no rounding.
pub const CLIP_FRAMES: usize = 106;

/// The apex's frame in a clip of `n` frames (`n` ≥ 2) cut from onset to
/// offset, for a clip with `timing` (onset, apex, offset as fractions of
/// the whole clip). `synth.me` and the ME layouts it writes use this one
/// rounding, so their onset modes read the same frames.
pub(crate) fn me_apex_frame(timing: [f32; 3], n: usize) -> usize {
    let [o, a, f] = timing;
    (((a - o) / (f - o)) * (n - 1) as f32).round() as usize
}

/// Which generator: micro-expressions with AU targets, or DFER clips.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavor {
    /// `synth.me`: micro-expressions cut from onset to offset, with AU targets.
    Me,
    /// `synth.dfer`: whole dynamic-expression clips with an emotion class only.
    Dfer,
}

/// A generated dataset. Identities and clip parameters are drawn once;
/// pixels are rendered on load.
pub struct Synth {
    flavor: Flavor,
    seed: u64,
    frames: usize,
    size: [usize; 2],
    color: bool,
    sampling: Sampling,
    /// Frames per clip the sampler chooses among ([`CLIP_FRAMES`]).
    clip_frames: usize,
    noise: f32,
    targets: Vec<i64>,
    class_names: Vec<&'static str>,
    identities: Vec<Identity>,
    /// `face = "astronaut"`: a photographed face animated instead of the drawn one.
    photo: Option<&'static face::Photo>,
    clips: Vec<Clip>,
    device: Device,
}

fn identity(rng: &mut SeededRng) -> Identity {
    // Skin tones from light to dark (RGB), jittered per subject.
    const TONES: [[f32; 3]; 5] = [
        [0.98, 0.84, 0.74],
        [0.92, 0.74, 0.60],
        [0.80, 0.60, 0.46],
        [0.62, 0.44, 0.32],
        [0.45, 0.31, 0.22],
    ];
    let tone = TONES[rng.below(TONES.len())];
    let j = rng.uniform_range(0.95, 1.05);
    let mut shape = [[0f32; 2]; 68];
    for p in shape.iter_mut() {
        *p = [rng.normal() * 0.004, rng.normal() * 0.004];
    }
    Identity {
        scale: [rng.uniform_range(0.88, 1.08), rng.uniform_range(0.9, 1.1)],
        shape,
        skin: tone.map(|t| (t * j).min(1.0)),
        ink: rng.uniform_range(0.8, 1.2),
        texture: (0..3)
            .map(|_| {
                [
                    rng.uniform_range(0.01, 0.04),
                    rng.uniform_range(-4.0, 4.0),
                    rng.uniform_range(-4.0, 4.0),
                    rng.uniform_range(0.0, std::f32::consts::TAU),
                ]
            })
            .collect(),
        light: [rng.uniform_range(-0.3, 0.3), rng.uniform_range(-0.2, 0.2)],
    }
}

impl Synth {
    /// Builds the generator from a `synth.me` / `synth.dfer` parameter map
    /// (defaults already filled by the schema).
    pub fn new(flavor: Flavor, p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        let kind = match flavor {
            Flavor::Me => "synth.me",
            Flavor::Dfer => "synth.dfer",
        };
        // Tests and the layout writers build the generator without a recipe: the
        // schema's defaults fill what they leave out (the runner's maps
        // are complete already).
        let p = &super::with_defaults(kind, p);
        let seed = int(p, "seed")?.max(0) as u64;
        let subjects = count(p, "subjects")?;
        let per = count(p, "clips_per_subject")?;
        let size = super::size(p)?;
        if size[0] * size[1] > 1 << 20 {
            return Err(BuildError(format!(
                "`size` {size:?} is larger than the generator renders (at most 2^20 pixels)"
            )));
        }
        let classes = match flavor {
            Flavor::Me => me_classes(text(p, "classes")?),
            Flavor::Dfer => match p.get("class_names") {
                Some(Value::List(l)) => {
                    let names: Vec<&str> = l
                        .iter()
                        .filter_map(|v| match v {
                            Value::Str(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect();
                    dfer_classes_named(&names).ok_or_else(|| {
                        BuildError(format!("the generator has no class among {names:?}"))
                    })?
                }
                _ => dfer_classes(int(p, "classes")?.max(2) as usize),
            },
        };
        let intensity = float(p, "intensity")? as f32;
        let total_w: f32 = classes.iter().map(|c| c.weight).sum();
        let mut rng = SeededRng::derive(seed, "synth/identities");
        let photo = (text(p, "face")? == "astronaut").then(face::astronaut);
        let identities: Vec<Identity> = (0..subjects)
            .map(|_| {
                let mut id = identity(&mut rng);
                if photo.is_some() {
                    // The photo is the face's shape: subjects differ in
                    // lighting, head motion and expressions only.
                    id.shape = [[0.0; 2]; 68];
                    id.scale = [1.0, 1.0];
                }
                id
            })
            .collect();
        let mut clips = Vec::with_capacity(subjects * per);
        for s in 0..subjects {
            for k in 0..per {
                let id = match flavor {
                    Flavor::Me => format!("sub{:02}/EP{:02}_{:02}", s + 1, k + 1, 1),
                    Flavor::Dfer => format!("actor{:02}/clip{:03}", s + 1, k + 1),
                };
                let mut r = SeededRng::derive(seed, &format!("synth/clip/{id}"));
                let mut pick = r.uniform() * total_w;
                let mut class = classes.len() - 1;
                for (i, c) in classes.iter().enumerate() {
                    if pick < c.weight {
                        class = i;
                        break;
                    }
                    pick -= c.weight;
                }
                let pats = classes[class].patterns;
                let pattern = pats[r.below(pats.len())];
                let mut aus: Vec<(i64, f32)> = pattern
                    .iter()
                    .map(|a| (*a, intensity * r.uniform_range(0.6, 1.4)))
                    .collect();
                // An occasional extra AU, as real coders annotate.
                if r.uniform() < 0.1 {
                    let extra = face::ANIMATED_AUS[r.below(face::ANIMATED_AUS.len())];
                    if !aus.iter().any(|(a, _)| *a == extra) {
                        aus.push((extra, intensity * r.uniform_range(0.5, 1.0)));
                    }
                }
                aus.sort_by_key(|a| a.0);
                let onset = r.uniform_range(0.08, 0.3);
                let apex = onset + r.uniform_range(0.2, 0.35);
                let offset = (apex + r.uniform_range(0.2, 0.35)).min(0.97);
                clips.push(Clip {
                    subject: s,
                    id,
                    class,
                    aus,
                    timing: [onset, apex, offset],
                    head: [
                        r.uniform_range(0.002, 0.012),
                        r.uniform_range(0.002, 0.012),
                        r.uniform_range(0.0, 0.03),
                        r.uniform_range(0.0, std::f32::consts::TAU),
                    ],
                });
            }
        }
        Ok(Synth {
            flavor,
            seed,
            frames: count(p, "frames")?,
            size,
            color: flag(p, "color")?,
            sampling: Sampling::from_params(p, kind)?,
            clip_frames: CLIP_FRAMES,
            noise: float(p, "noise")? as f32,
            targets: match flavor {
                Flavor::Me => ints(p, "aus")?,
                // synth.dfer has no AU targets.
                Flavor::Dfer => Vec::new(),
            },
            class_names: classes.iter().map(|c| c.name).collect(),
            identities,
            photo,
            clips,
            device: Device::Cpu,
        })
    }

    /// The clip's expression envelope at time `t` (0 before onset, 1 at
    /// apex, smooth in between).
    fn envelope(c: &Clip, t: f32) -> f32 {
        let [o, a, f] = c.timing;
        let smooth = |x: f32| {
            let x = x.clamp(0.0, 1.0);
            x * x * (3.0 - 2.0 * x)
        };
        if t <= o || t >= f {
            0.0
        } else if t <= a {
            smooth((t - o) / (a - o))
        } else {
            1.0 - smooth((t - a) / (f - a))
        }
    }

    /// Landmarks of `c` at time `t`: identity shape, AU motion, head pose.
    fn landmarks(&self, c: &Clip, t: f32, expression: bool) -> Landmarks {
        let id = &self.identities[c.subject];
        let tpl = face::template();
        let e = if expression {
            Self::envelope(c, t)
        } else {
            0.0
        };
        let [ax, ay, rot, ph] = c.head;
        let w = 2.0 * std::f32::consts::PI * t;
        let (tx, ty, th) = (
            ax * (w + ph).sin(),
            ay * (1.3 * w + ph).cos(),
            rot * (0.7 * w + ph).sin(),
        );
        let (cs, sn) = (th.cos(), th.sin());
        let mut out = [[0f32; 2]; 68];
        for (i, q) in out.iter_mut().enumerate() {
            let mut p = [tpl[i][0] + id.shape[i][0], tpl[i][1] + id.shape[i][1]];
            for (au, amp) in &c.aus {
                let d = face::au_motion(*au, i);
                p[0] += d[0] * amp * e;
                p[1] += d[1] * amp * e;
            }
            let (dx, dy) = ((p[0] - 0.5) * id.scale[0], (p[1] - 0.5) * id.scale[1]);
            *q = [0.5 + cs * dx - sn * dy + tx, 0.5 + sn * dx + cs * dy + ty];
        }
        out
    }

    /// Clip `c`'s frames as the sampler sees them: [`Self::clip_frames`]
    /// frames over onset..offset (`synth.me`, cut as the ME corpora are)
    /// or over the whole clip (`synth.dfer`, as DFER videos are).
    fn frames_of(&self, c: &Clip) -> ClipFrames {
        let n = self.clip_frames;
        match self.flavor {
            Flavor::Me => ClipFrames::onset_to_offset(n, me_apex_frame(c.timing, n)),
            Flavor::Dfer => {
                let at = |t: f32| ((t * (n - 1) as f32).round() as usize).min(n - 1);
                ClipFrames {
                    len: n,
                    onset: at(c.timing[0]),
                    apex: Some(at(c.timing[1])),
                    offset: at(c.timing[2]),
                }
            }
        }
    }

    /// Clip time (0..1) of frame `j` of clip `c`: the same formulas the
    /// layout writers render with.
    fn time_of(&self, c: &Clip, j: usize) -> f32 {
        let n = self.clip_frames;
        match self.flavor {
            Flavor::Me => {
                let [o, _, f] = c.timing;
                o + (f - o) * j as f32 / (n - 1) as f32
            }
            Flavor::Dfer => j as f32 / (n - 1) as f32,
        }
    }

    /// Frame indices for one read of clip `p`, from the shared sampler;
    /// `None` past the end.
    #[cfg(test)]
    pub(crate) fn picks(&self, p: usize, aug: Option<&mut SeededRng>) -> Option<Vec<usize>> {
        let c = self.clips.get(p)?;
        Some(sampler::pick(
            &self.frames_of(c),
            self.frames,
            self.sampling,
            aug,
        ))
    }

    /// This generator with `n` frames per clip instead of [`CLIP_FRAMES`],
    /// so tests can compare it with a layout of any clip length.
    #[cfg(test)]
    pub(crate) fn with_clip_frames(mut self, n: usize) -> Self {
        self.clip_frames = n.max(2);
        self
    }

    /// Frame times for one clip.
    fn times(&self, c: &Clip, aug: Option<&mut SeededRng>) -> Vec<f32> {
        sampler::pick(&self.frames_of(c), self.frames, self.sampling, aug)
            .into_iter()
            .map(|j| self.time_of(c, j))
            .collect()
    }

    /// One frame of clip `c` at time `t`: pixel planes (noise included,
    /// clamped to [0, 1]) and the landmarks drawn.
    fn frame(&self, c: &Clip, t: f32, h: usize, w: usize) -> (Vec<Vec<f32>>, Landmarks) {
        // Sensor noise belongs to the recording, not to augmentation: it
        // depends on the clip and frame time only, so a frame loads the same
        // in training and evaluation.
        let mut noise =
            SeededRng::derive(self.seed, &format!("synth/noise/{}/{}", c.id, t.to_bits()));
        let lm = self.landmarks(c, t, true);
        let id = &self.identities[c.subject];
        let mut img = match self.photo {
            Some(photo) => face::render_photo(photo, id, &face::template(), &lm, h, w, self.color),
            None => face::render(id, &lm, h, w, self.color),
        };
        for plane in img.iter_mut() {
            for v in plane.iter_mut() {
                let n = if self.noise > 0.0 {
                    noise.normal() * self.noise
                } else {
                    0.0
                };
                *v = (*v + n).clamp(0.0, 1.0);
            }
        }
        (img, lm)
    }

    /// Rendered frame size `[H, W]`.
    pub fn size_hw(&self) -> [usize; 2] {
        self.size
    }

    /// Number of generated clips.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    /// Whether no clip was generated.
    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// What a label file records about clip `p`.
    pub fn clip_info(&self, p: usize) -> Option<ClipInfo> {
        let c = self.clips.get(p)?;
        Some(ClipInfo {
            subject: c.subject + 1,
            id: c.id.clone(),
            emotion: self.class_names[c.class],
            aus: c.aus.iter().map(|a| a.0).collect(),
            timing: c.timing,
        })
    }

    /// Renders clip `p` at clip time `t` (0..1) as `[channel][h * w]`.
    pub fn render_at(&self, p: usize, t: f32) -> Option<Vec<Vec<f32>>> {
        Some(self.render_with_landmarks(p, t)?.0)
    }

    /// [`Synth::render_at`] plus the 68 landmarks drawn, as `[x, y]`
    /// fractions of the frame width and height.
    pub fn render_with_landmarks(&self, p: usize, t: f32) -> Option<(Vec<Vec<f32>>, Landmarks)> {
        let c = self.clips.get(p)?;
        Some(self.frame(c, t, self.size[0], self.size[1]))
    }

    /// The emotion class names, in label order.
    pub fn class_names(&self) -> &[&'static str] {
        &self.class_names
    }
}

fn tensor_err(e: mer_registry::candle::Error) -> DataError {
    DataError {
        file: "<synth>".into(),
        row: None,
        message: e.to_string(),
    }
}

impl Dataset for Synth {
    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        match port {
            "aus" => Some(self.targets.iter().map(|a| format!("AU{a}")).collect()),
            "emotion" => Some(self.class_names.iter().map(|c| c.to_string()).collect()),
            _ => None,
        }
    }

    fn index(&self) -> Result<Vec<SampleMeta>, DataError> {
        Ok(self
            .clips
            .iter()
            .map(|c| {
                let mut labels = BTreeMap::new();
                labels.insert(
                    "emotion".to_string(),
                    Value::Str(self.class_names[c.class].to_string()),
                );
                labels.insert(
                    "aus".to_string(),
                    Value::List(c.aus.iter().map(|(a, _)| Value::Int(*a)).collect()),
                );
                SampleMeta {
                    id: c.id.clone(),
                    dataset: String::new(),
                    group: c.id.split('/').next().unwrap_or(&c.id).to_string(),
                    labels,
                }
            })
            .collect())
    }

    fn load(
        &self,
        positions: &[usize],
        mut aug: Option<&mut SeededRng>,
    ) -> Result<Batch, DataError> {
        let (h, w) = (self.size[0], self.size[1]);
        let t = self.frames;
        let ch = if self.color { 3 } else { 1 };
        let b = positions.len();
        let mut video = Vec::with_capacity(b * ch * t * h * w);
        let mut lms = Vec::with_capacity(b * t * 136);
        let mut lms5: Vec<f32> = Vec::with_capacity(b * t * 10);
        let mut boxes = Vec::with_capacity(b * t * 4);
        let mut emotion = Vec::with_capacity(b);
        let mut subject = Vec::with_capacity(b);
        let mut aus = Vec::with_capacity(b * self.targets.len());
        let mut flow = Vec::with_capacity(b * 2 * h * w);
        for &p in positions {
            let c = self.clips.get(p).ok_or_else(|| DataError {
                file: "<synth>".into(),
                row: Some(p),
                message: format!(
                    "position {p} is outside the {} generated clips",
                    self.clips.len()
                ),
            })?;
            let times = self.times(c, aug.as_deref_mut());
            let mut frames = vec![vec![0f32; t * h * w]; ch];
            for (k, &tt) in times.iter().enumerate() {
                let (img, lm) = self.frame(c, tt, h, w);
                for (cidx, plane) in img.into_iter().enumerate() {
                    frames[cidx][k * h * w..(k + 1) * h * w].copy_from_slice(&plane);
                }
                for q in &lm {
                    lms.extend_from_slice(q);
                }
                boxes.extend_from_slice(&face::bounding_box(&lm));
                lms5.extend(face::five_points(&lm).iter().flatten());
            }
            for plane in frames {
                video.extend(plane);
            }
            emotion.push(c.class as i64);
            subject.push(c.subject as i64);
            if self.flavor == Flavor::Me {
                for a in &self.targets {
                    aus.push(if c.aus.iter().any(|(x, _)| x == a) {
                        1f32
                    } else {
                        0.0
                    });
                }
                let onset = self.landmarks(c, c.timing[0], true);
                let apex = self.landmarks(c, c.timing[1], true);
                let [fx, fy] = face::flow_field(&onset, &apex, h, w);
                flow.extend(fx);
                flow.extend(fy);
            }
        }
        let d = &self.device;
        let mut ports = BTreeMap::new();
        ports.insert(
            "video".into(),
            Tensor::from_vec(video, (b, ch, t, h, w), d).map_err(tensor_err)?,
        );
        ports.insert(
            "emotion".into(),
            Tensor::from_vec(emotion, b, d).map_err(tensor_err)?,
        );
        ports.insert(
            "landmarks".into(),
            Tensor::from_vec(lms, (b, t, 68, 2), d).map_err(tensor_err)?,
        );
        ports.insert(
            "box".into(),
            Tensor::from_vec(boxes, (b, t, 4), d).map_err(tensor_err)?,
        );
        ports.insert(
            "landmarks5".into(),
            Tensor::from_vec(lms5, (b, t, 5, 2), d).map_err(tensor_err)?,
        );
        ports.insert(
            "subject".into(),
            Tensor::from_vec(subject, b, d).map_err(tensor_err)?,
        );
        if self.flavor == Flavor::Me {
            ports.insert(
                "aus".into(),
                Tensor::from_vec(aus, (b, self.targets.len()), d).map_err(tensor_err)?,
            );
            ports.insert(
                "flow".into(),
                Tensor::from_vec(flow, (b, 2, h, w), d).map_err(tensor_err)?,
            );
        }
        Ok(Batch {
            ids: positions
                .iter()
                .map(|p| self.clips[*p].id.clone())
                .collect(),
            ports,
        })
    }
}

/// `synth.me`'s factory.
pub fn synth_me(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(Synth::new(Flavor::Me, p)?))
}

/// `synth.dfer`'s factory.
pub fn synth_dfer(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(Synth::new(Flavor::Dfer, p)?))
}

/// The generator's parameters for `mer data synth`: the layout writers
/// generate through [`Synth`] with these, so generated corpora look like
/// `synth.*` data (colour frames, the requested size and face).
pub fn layout_params(req: &LayoutRequest) -> BTreeMap<String, Value> {
    [
        ("face", Value::Str(req.face.clone())),
        ("subjects", Value::Int(req.subjects.max(1) as i64)),
        (
            "clips_per_subject",
            Value::Int(req.clips_per_subject.max(1) as i64),
        ),
        ("size", Value::List(vec![Value::Int(req.size as i64); 2])),
        ("color", Value::Bool(true)),
        ("intensity", Value::Float(req.intensity)),
        ("seed", Value::Int(req.seed as i64)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

// ---- the kinds ---------------------------------------------------------------

/// `synth.me` and `synth.dfer`: generated clips, in memory.
pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        clip("synth.me", "Generated micro-expression clips: subjects with distinct identities, FACS-region motions at micro intensity with onset–apex–offset timing, head motion and sensor noise. Deterministic from `seed`.", 8, 64, false)
            .output("aus", "multi-label AU targets [B, n_aus]")
            .output("flow", "onset→apex optical flow [B, 2, H, W]")
            .int("subjects", Some(12), Some(2), "Number of synthetic subjects.")
            .int("clips_per_subject", Some(10), Some(1), "Clips generated per subject.")
            .ints("aus", Some(&[1, 2, 4, 7, 12, 14, 15, 17]), Some(1), "AUs used as multi-label targets.")
            .choice("classes", ME5, Some("5class"), "Emotion label set (CASME II-style classes by AU rules).")
            .float("intensity", Some(0.15), Some(0.0), Some(1.0), "Peak motion amplitude relative to a macro-expression.")
            .float("noise", Some(0.02), Some(0.0), Some(1.0), "Sensor noise standard deviation.")
            .int("seed", Some(0), Some(0), "Generator seed (independent of the training seed).")
            .choice("face", &["drawn", "astronaut"], Some("drawn"), "`drawn`: a face drawn per subject; `astronaut`: the public-domain astronaut photo (scikit-image's) animated by the same landmark motions, subjects differing in lighting, head motion and expressions.")
            .shapes(me_data)
            .dataset(synth_me)
            .build(),
        with_five_points(clip("synth.dfer", "Generated dynamic facial-expression clips with per-frame face boxes and landmarks, for multi-task recipes.", 16, 64, true))
            .int("subjects", Some(10), Some(2), "Number of synthetic actors.")
            .int("clips_per_subject", Some(14), Some(1), "Clips generated per actor.")
            .int("classes", Some(7), Some(2), "Number of expression classes.")
            .float("intensity", Some(0.6), Some(0.0), Some(1.0), "Peak expression amplitude.")
            .float("noise", Some(0.02), Some(0.0), Some(1.0), "Sensor noise standard deviation.")
            .int("seed", Some(0), Some(0), "Generator seed.")
            .choice("face", &["drawn", "astronaut"], Some("drawn"), "`drawn`: a face drawn per subject; `astronaut`: the public-domain astronaut photo animated by the same landmark motions.")
            .shapes(dfer_data)
            .dataset(synth_dfer)
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(extra: &[(&str, Value)]) -> BTreeMap<String, Value> {
        let mut p: BTreeMap<String, Value> = [
            ("subjects", Value::Int(4)),
            ("clips_per_subject", Value::Int(6)),
            ("frames", Value::Int(4)),
            ("size", Value::List(vec![Value::Int(24), Value::Int(24)])),
            (
                "aus",
                Value::List(vec![Value::Int(1), Value::Int(4), Value::Int(12)]),
            ),
            ("seed", Value::Int(3)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            p.insert(k.to_string(), v.clone());
        }
        p
    }

    /// `face = "astronaut"`: the photo, decoded (not the fallback), moved
    /// by the expression where the AUs act and deterministic per seed.
    #[test]
    fn the_astronaut_photo_is_animated_where_the_aus_act() {
        let photo = face::astronaut();
        assert_eq!((photo.w, photo.h), (128, 128));
        let p = params(&[
            ("face", Value::Str("astronaut".into())),
            ("size", Value::List(vec![Value::Int(64), Value::Int(64)])),
            ("intensity", Value::Float(1.0)),
            ("noise", Value::Float(0.0)),
            ("color", Value::Bool(true)),
        ]);
        let a = Synth::new(Flavor::Me, &p).unwrap();
        let b = Synth::new(Flavor::Me, &p).unwrap();
        let info = a.clip_info(0).unwrap();
        let onset = a.render_at(0, info.timing[0]).unwrap();
        let apex = a.render_at(0, info.timing[1]).unwrap();
        assert_eq!(onset, b.render_at(0, info.timing[0]).unwrap());
        // The onset frame is the photo (correlation with a plain resample).
        let plain: Vec<f32> = (0..64 * 64)
            .map(|i| {
                let (x, y) = (i % 64, i / 64);
                photo.sample((x as f32 + 0.5) / 64.0, (y as f32 + 0.5) / 64.0)[0]
            })
            .collect();
        let corr = {
            let (ma, mb) = (mean(&onset[0]), mean(&plain));
            let cov: f32 = onset[0]
                .iter()
                .zip(&plain)
                .map(|(x, y)| (x - ma) * (y - mb))
                .sum();
            let va: f32 = onset[0].iter().map(|x| (x - ma).powi(2)).sum();
            let vb: f32 = plain.iter().map(|y| (y - mb).powi(2)).sum();
            cov / (va * vb).sqrt()
        };
        assert!(corr > 0.9, "onset frame vs the photo: r = {corr}");
        // The expression changes pixels inside the face, not in the corners.
        let diff = |x0: usize, y0: usize, n: usize| -> f32 {
            let mut d = 0.0;
            for y in y0..y0 + n {
                for x in x0..x0 + n {
                    d += (onset[0][y * 64 + x] - apex[0][y * 64 + x]).abs();
                }
            }
            d
        };
        assert!(
            diff(16, 16, 32) > 10.0 * diff(0, 0, 6).max(1e-3),
            "{} vs {}",
            diff(16, 16, 32),
            diff(0, 0, 6)
        );
    }

    fn mean(v: &[f32]) -> f32 {
        v.iter().sum::<f32>() / v.len() as f32
    }

    #[test]
    fn same_seed_same_pixels_other_seed_other_pixels() {
        let a = Synth::new(Flavor::Me, &params(&[])).unwrap();
        let b = Synth::new(Flavor::Me, &params(&[])).unwrap();
        let c = Synth::new(Flavor::Me, &params(&[("seed", Value::Int(4))])).unwrap();
        let va = a.load(&[0, 5], None).unwrap().ports["video"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let vb = b.load(&[0, 5], None).unwrap().ports["video"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let vc = c.load(&[0, 5], None).unwrap().ports["video"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(va.iter().zip(&vc).any(|(x, y)| x != y));
    }

    #[test]
    fn ports_have_the_declared_shapes_and_labels_follow_the_rules() {
        let s = Synth::new(Flavor::Me, &params(&[])).unwrap();
        let idx = s.index().unwrap();
        assert_eq!(idx.len(), 24);
        assert_eq!(idx[0].group, "sub01");
        let b = s.load(&[0, 1, 2], None).unwrap();
        assert_eq!(b.ports["video"].dims(), &[3, 1, 4, 24, 24]);
        assert_eq!(b.ports["landmarks"].dims(), &[3, 4, 68, 2]);
        assert_eq!(b.ports["aus"].dims(), &[3, 3]);
        assert_eq!(b.ports["flow"].dims(), &[3, 2, 24, 24]);
        // The AU targets are exactly the animated AUs among those asked for.
        let aus = b.ports["aus"].to_vec2::<f32>().unwrap();
        for (row, meta) in aus.iter().zip(&idx) {
            let Some(Value::List(l)) = meta.labels.get("aus") else {
                panic!()
            };
            for (j, au) in [1i64, 4, 12].iter().enumerate() {
                assert_eq!(row[j] == 1.0, l.contains(&Value::Int(*au)), "{}", meta.id);
            }
        }
        let v = b.ports["video"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn the_expression_moves_between_onset_and_apex_only() {
        let s = Synth::new(Flavor::Me, &params(&[("noise", Value::Float(0.0))])).unwrap();
        let c = &s.clips[0];
        assert_eq!(Synth::envelope(c, 0.0), 0.0);
        assert!((Synth::envelope(c, c.timing[1]) - 1.0).abs() < 1e-6);
        let before = s.landmarks(c, c.timing[0] * 0.5, false);
        let still = s.landmarks(c, c.timing[0] * 0.5, true);
        assert_eq!(before, still, "nothing moves before onset");
    }

    #[test]
    fn classes_are_imbalanced_like_casme2() {
        let s = Synth::new(
            Flavor::Me,
            &params(&[
                ("subjects", Value::Int(20)),
                ("clips_per_subject", Value::Int(20)),
            ]),
        )
        .unwrap();
        let mut counts = [0usize; 5];
        for c in &s.clips {
            counts[c.class] += 1;
        }
        // "others" (index 2) is the largest class, surprise among the rarest.
        assert!(counts[2] > counts[0] && counts[0] > counts[4], "{counts:?}");
    }

    #[test]
    fn noisy_uniform_jitters_only_when_training() {
        let s = Synth::new(
            Flavor::Me,
            &params(&[("sampling", Value::Str("noisy_uniform".into()))]),
        )
        .unwrap();
        let c = &s.clips[0];
        assert_eq!(s.times(c, None), s.times(c, None));
        let mut r = SeededRng::new(1);
        assert_ne!(s.times(c, Some(&mut r)), s.times(c, None));
    }

    #[test]
    fn dfer_clips_have_boxes_and_no_au_port() {
        let p = params(&[("classes", Value::Int(7)), ("color", Value::Bool(true))]);
        let s = Synth::new(Flavor::Dfer, &p).unwrap();
        let b = s.load(&[0], None).unwrap();
        assert_eq!(b.ports["video"].dims(), &[1, 3, 4, 24, 24]);
        assert!(!b.ports.contains_key("aus"));
        let bx = b.ports["box"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            bx[2] > 0.4 && bx[3] > 0.4,
            "the face fills the frame: {bx:?}"
        );
    }
}
