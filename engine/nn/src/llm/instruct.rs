//! `instruct.faceinstruct`: instruction data in LLaVA's and FaceInstruct's
//! JSON layout, formatted with the LLM's own chat template.
//!
//! A record is `{"video": "clips/x"}` or `{"image": "faces/y.jpg"}`, an
//! optional `subject` (the group a protocol splits on) and `split`
//! (`train`/`test`, for `protocol.official`), and a single-turn
//! `conversations` list `[{"from": "human", "value": "<video>\n…"},
//! {"from": "gpt", "value": "…"}]`, as Face-LLaVA's `LazySupervisedDataset`
//! reads it (`shared/research/face-llava.md` §4).
//!
//! Each conversation is rendered by the template the model was tuned with
//! ([`ChatTemplate`]), split where the placeholder stood (the visual tokens
//! go there, as LLaVA's `tokenizer_image_token` splits the prompt on
//! `<image>`), and every token gets a type: prompt tokens are never
//! targets (LLaVA masks the system and user turns), the answer is split into
//! its label span (the first mention of the gold class) and the rationale
//! around it, so `loss.lm` can weigh them (DEFT-LLM: label ×2.0, rationale
//! ×0.3), and the template's closing tokens are their own type.
//!
//! The gold class is read from the answer with the same parser that scores
//! generated answers ([`crate::answers::ClassParser`]), so a record whose
//! own answer names no class, or several, is refused with its index rather
//! than trained on a guessed label.

use super::chat::{ChatTemplate, Message};
use super::tokenizer::Tok;
use crate::answers::{ClassParser, Parsed};
use mer_registry::candle::{Device, Tensor};
use mer_registry::{
    Batch, BuildError, DataError, Dataset, Dim, Kind, KindBuilder, LayoutRequest, ParamType, Role,
    SampleMeta, SeededRng, Semantic, ShapeCtx, ShapeError, TensorType, Value,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Token type of a prompt token (system and user turns, the assistant's
/// opening): never a target.
pub const PROMPT: u32 = 0;
/// Token type of the answer's label span.
pub const LABEL: u32 = 1;
/// Token type of the answer outside its label span.
pub const RATIONALE: u32 = 2;
/// Token type of the template's closing tokens after the answer (the
/// end-of-turn token the model must learn to stop with).
pub const END: u32 = 3;
/// Token type of right padding.
pub const PAD: u32 = 4;

/// The placeholders a user turn may hold, one per record.
const PLACEHOLDERS: [&str; 2] = ["<image>", "<video>"];

/// Where the placeholder stood while the template renders: angle brackets
/// and no whitespace, so templates that trim or escape content keep it.
const MARK: &str = "<mer-visual-tokens>";

/// The default label set: DFEW's seven classes.
const CLASSES: &[&str] = &[
    "happy", "sad", "neutral", "angry", "surprise", "disgust", "fear",
];

/// The tasks answers are read for, on the dataset and on `llm.instruct`.
pub const TASKS: &[&str] = &["emotion", "aus", "age", "yes_no", "deepfake"];

/// The name `mer data verify` and the layout writer look for in a folder.
pub const FILE: &str = "instruct.json";

/// One record, checked and tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The record's `id`, else `record-N`.
    pub id: String,
    /// 1-based index of the record in the JSON list.
    pub record: usize,
    /// The image file or the video (a frame folder or a video file).
    pub media: PathBuf,
    /// `subject`, else the id.
    pub group: String,
    /// `split`, when the record has one.
    pub split: Option<String>,
    /// The conversation, tokenised, and its gold label.
    pub text: Formatted,
    /// The gold answer as written.
    pub answer: String,
    /// The record's `landmarks_2d` file (when the dataset reads landmarks).
    pub landmarks: Option<PathBuf>,
}

/// What an answer is read as: the task's label, with the parser that
/// reads gold answers and generated ones alike (`task` on the instruction
/// dataset and on `llm.instruct`).
#[derive(Debug, Clone)]
pub enum Reader {
    /// `emotion`: one class of the names, synonyms included.
    Class(ClassParser),
    /// `aus`: the set of AUs named (`AU\s?\d+`, "action unit 4"), of these.
    Aus(Vec<u32>),
    /// `age`: the first number.
    Number,
    /// `yes_no`: yes or no.
    YesNo,
    /// `deepfake`: real or fake (manipulated).
    Fake,
}

impl Reader {
    /// The reader for `task` (`emotion`, `aus`, `age`, `yes_no`, `deepfake`).
    pub fn new(task: &str, classes: &[String], aus: &[i64]) -> Result<Reader, BuildError> {
        Ok(match task {
            "emotion" => Reader::Class(
                ClassParser::with_default_synonyms(classes)
                    .map_err(|e| BuildError(format!("`classes`: {e}")))?,
            ),
            "aus" => Reader::Aus(aus.iter().map(|a| (*a).max(0) as u32).collect()),
            "age" => Reader::Number,
            "yes_no" => Reader::YesNo,
            "deepfake" => Reader::Fake,
            other => return Err(BuildError(format!("unknown task `{other}`"))),
        })
    }

    /// The reader a kind's `task`, `classes` and `aus` parameters ask for.
    pub fn from_params(p: &BTreeMap<String, Value>) -> Result<Reader, BuildError> {
        let task = params(p).str("task")?;
        let classes = p
            .get("classes")
            .and_then(Value::as_strings)
            .ok_or_else(|| BuildError("missing list parameter `classes`".into()))?;
        let aus: Vec<i64> = match p.get("aus") {
            Some(Value::List(l)) => l
                .iter()
                .filter_map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        Reader::new(task, &classes, &aus)
    }

    /// Reads one answer.
    pub fn read(&self, text: &str) -> Parsed {
        match self {
            Reader::Class(p) => p.parse(text),
            Reader::Aus(known) => crate::answers::parse_aus(text, known),
            Reader::Number => crate::answers::parse_number(text),
            Reader::YesNo => crate::answers::parse_yes_no(text),
            Reader::Fake => crate::answers::parse_real_fake(text),
        }
    }

    /// Label names of the reading's columns.
    pub fn names(&self) -> Vec<String> {
        match self {
            Reader::Class(p) => p.names().to_vec(),
            Reader::Aus(aus) => aus.iter().map(|a| format!("AU{a}")).collect(),
            Reader::Number => vec!["value".into()],
            Reader::YesNo => vec!["no".into(), "yes".into()],
            Reader::Fake => vec!["real".into(), "fake".into()],
        }
    }

    /// Width of the `answer` row: classes, AUs, 1, or 2.
    pub fn width(&self) -> usize {
        self.names().len()
    }

    /// The `answer` row of a reading, for the metrics: one-hot classes
    /// (and no/yes), AU logits ±10 (the F1 metrics threshold a sigmoid),
    /// the number; `None` when the answer gave no reading of this kind.
    pub fn row(&self, parsed: &Parsed) -> Option<Vec<f32>> {
        let k = self.width();
        match (self, parsed) {
            (Reader::Class(_), Parsed::Class(c)) if *c < k => {
                let mut r = vec![0.0; k];
                r[*c] = 1.0;
                Some(r)
            }
            (Reader::Aus(_), Parsed::Set(on)) => {
                let mut r = vec![-10.0; k];
                for &j in on.iter().filter(|j| **j < k) {
                    r[j] = 10.0;
                }
                Some(r)
            }
            (Reader::Number, Parsed::Number(x)) => Some(vec![*x as f32]),
            (Reader::YesNo | Reader::Fake, Parsed::Bool(b)) => {
                Some(if *b { vec![0.0, 1.0] } else { vec![1.0, 0.0] })
            }
            _ => None,
        }
    }

    /// A reading in words for the run store: a class, `AU4, AU12`, `none`,
    /// a number, yes/no, or `unparseable: <why>`.
    pub fn words(&self, parsed: &Parsed) -> String {
        let names = self.names();
        match parsed {
            Parsed::Class(c) => names.get(*c).cloned().unwrap_or_else(|| c.to_string()),
            Parsed::Set(on) if on.is_empty() => "none".into(),
            Parsed::Set(on) => on
                .iter()
                .map(|j| names.get(*j).cloned().unwrap_or_else(|| j.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            Parsed::Number(x) => format!("{x}"),
            Parsed::Bool(b) => names
                .get(usize::from(*b))
                .cloned()
                .unwrap_or_else(|| b.to_string()),
            Parsed::Unparseable(r) => format!("unparseable: {}", r.detail),
        }
    }

    /// Byte ranges of `answer` that state the label: the gold class's first
    /// mention, every AU named, the number, the yes or no. Empty when none
    /// is found verbatim (the whole answer then counts as label).
    fn spans(&self, answer: &str, parsed: &Parsed) -> Vec<std::ops::Range<usize>> {
        let lower = answer.to_ascii_lowercase();
        let first = |needle: &str| -> Vec<std::ops::Range<usize>> {
            lower
                .find(&needle.to_ascii_lowercase())
                .map(|i| std::iter::once(i..i + needle.len()).collect())
                .unwrap_or_default()
        };
        match (self, parsed) {
            (Reader::Class(p), Parsed::Class(c)) => first(&p.names()[*c]),
            (Reader::Aus(_), _) => {
                let b = lower.as_bytes();
                let mut out = vec![];
                let mut i = 0;
                while let Some(j) = lower[i..].find("au") {
                    let start = i + j;
                    let mut end = start + 2;
                    if b.get(end) == Some(&b' ') {
                        end += 1;
                    }
                    let digits = b[end..].iter().take_while(|c| c.is_ascii_digit()).count();
                    if digits > 0 {
                        out.push(start..end + digits);
                    }
                    i = start + 2;
                }
                out
            }
            (Reader::Number, Parsed::Number(_)) => {
                let b = lower.as_bytes();
                match b.iter().position(|c| c.is_ascii_digit()) {
                    Some(s) => {
                        let n = b[s..].iter().take_while(|c| c.is_ascii_digit()).count();
                        std::iter::once(s..s + n).collect()
                    }
                    None => vec![],
                }
            }
            (Reader::YesNo, Parsed::Bool(b)) => first(if *b { "yes" } else { "no" }),
            (Reader::Fake, Parsed::Bool(b)) => {
                let words = if *b {
                    crate::answers::FAKE_WORDS
                } else {
                    crate::answers::REAL_WORDS
                };
                words
                    .iter()
                    .filter_map(|w| lower.find(w).map(|i| i..i + w.len()))
                    .min_by_key(|r| r.start)
                    .into_iter()
                    .collect()
            }
            _ => vec![],
        }
    }
}

/// What formats conversations: the chat template, the tokenizer, the
/// label parser and the limits.
pub struct Formatter {
    template: ChatTemplate,
    tok: Tok,
    reader: Reader,
    system: Option<String>,
    max_tokens: usize,
}

impl Formatter {
    /// A formatter for the LLM at `weights` (its template and tokenizer).
    pub fn new(
        weights: &Path,
        tokenizer: Option<&str>,
        reader: Reader,
        system: Option<String>,
        max_tokens: usize,
    ) -> Result<Formatter, BuildError> {
        let template = ChatTemplate::of(weights)?;
        let gguf = if weights.is_dir() {
            None
        } else {
            Some(super::gguf::metadata(weights)?)
        };
        let tok = super::tokenizer_for(weights, tokenizer, gguf.as_ref())?;
        Ok(Formatter {
            template,
            tok,
            reader,
            system,
            max_tokens,
        })
    }

    /// What answers are read as.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// The turns of a conversation, the system turn first when one is set.
    fn turns(&self, user: &str, answer: Option<&str>) -> Vec<Message> {
        let mut m = Vec::new();
        if let Some(s) = &self.system {
            m.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        m.push(Message::user(user));
        if let Some(a) = answer {
            m.push(Message {
                role: "assistant".into(),
                content: a.into(),
            });
        }
        m
    }

    /// Tokenises one conversation: `question` holds exactly one
    /// placeholder. Errors are in words; the caller adds file and record.
    pub fn format(&self, question: &str, answer: &str) -> Result<Formatted, String> {
        let found = placeholders(question);
        let known: Vec<&(usize, String)> = found
            .iter()
            .filter(|(_, p)| PLACEHOLDERS.contains(&p.as_str()))
            .collect();
        if let Some((_, bad)) = found
            .iter()
            .find(|(_, p)| !PLACEHOLDERS.contains(&p.as_str()))
        {
            return Err(format!(
                "unknown placeholder `{bad}` in the human turn; mer knows {}",
                PLACEHOLDERS.join(" and ")
            ));
        }
        let (at, ph) = match known.as_slice() {
            [one] => (one.0, one.1.clone()),
            [] => {
                return Err(format!(
                    "the human turn has no placeholder; write {} where the visual tokens go",
                    PLACEHOLDERS.join(" or ")
                ))
            }
            _ => return Err("the human turn has more than one placeholder; mer takes one image or video per record".into()),
        };
        let user = format!("{}{MARK}{}", &question[..at], &question[at + ph.len()..]);
        let prompt = self
            .template
            .render(&self.turns(&user, None), true)
            .map_err(|e| e.0)?;
        let full = self
            .template
            .render(&self.turns(&user, Some(answer)), false)
            .map_err(|e| e.0)?;
        let tail = full.strip_prefix(prompt.as_str()).ok_or(
            "the chat template renders the prompt differently with and without the answer, so the answer cannot be split off",
        )?;
        let (before, after) = prompt
            .split_once(MARK)
            .ok_or("the chat template dropped the placeholder")?;
        let a0 = tail
            .find(answer)
            .ok_or("the chat template changed the answer's text")?;
        let parsed = self.reader.read(answer);
        let gold = self.reader.row(&parsed).ok_or_else(|| match &parsed {
            Parsed::Unparseable(r) => format!(
                "the answer gives no reading for this task ({}): \"{}\"",
                r.detail,
                short(answer)
            ),
            other => format!("the answer reads as {other:?}, not this task's label"),
        })?;
        let class = match parsed {
            Parsed::Class(c) => c,
            Parsed::Bool(b) => usize::from(b),
            _ => 0,
        };
        let spans = self.reader.spans(answer, &parsed);
        let label = |at: usize| spans.is_empty() || spans.iter().any(|r| r.contains(&at));
        let mut ids = self.tok.encode(before).map_err(|e| e.0)?;
        let visual_at = ids.len();
        ids.extend(self.tok.encode(after).map_err(|e| e.0)?);
        let prompt_len = ids.len();
        let mut types = vec![PROMPT; prompt_len];
        for (id, (s, _)) in self.tok.encode_offsets(tail).map_err(|e| e.0)? {
            ids.push(id);
            types.push(if s < a0 || s >= a0 + answer.len() {
                END
            } else if label(s - a0) {
                LABEL
            } else {
                RATIONALE
            });
        }
        if ids.len() > self.max_tokens {
            return Err(format!(
                "{} tokens, more than max_tokens = {}; raise it (a conversation is never cut)",
                ids.len(),
                self.max_tokens
            ));
        }
        Ok(Formatted {
            ids,
            types,
            visual_at,
            prompt_len,
            class,
            gold,
            reading: self.reader.words(&parsed),
        })
    }

    /// The text of generated ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String, BuildError> {
        self.tok.decode(ids)
    }
}

/// A tokenised conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Formatted {
    /// Token ids of the whole conversation, the placeholder left out.
    pub ids: Vec<u32>,
    /// One type per id ([`PROMPT`], [`LABEL`], [`RATIONALE`], [`END`]).
    pub types: Vec<u32>,
    /// Index into `ids` where the visual tokens go.
    pub visual_at: usize,
    /// Ids of the prompt, up to the assistant's opening: what generation
    /// starts from.
    pub prompt_len: usize,
    /// The gold class (emotion), or 1 for yes; 0 otherwise.
    pub class: usize,
    /// The gold answer's row as [`Reader::row`] writes it.
    pub gold: Vec<f32>,
    /// The gold answer's reading in words.
    pub reading: String,
}

/// `<word>` tags in `text`, with their byte offsets.
fn placeholders(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(i) = text[rest..].find('<') {
        let start = rest + i;
        let body = &text[start + 1..];
        let len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(body.len());
        if len > 0 && body[len..].starts_with('>') {
            out.push((start, text[start..start + len + 2].to_string()));
            rest = start + len + 2;
        } else {
            rest = start + 1;
        }
    }
    out
}

fn short(s: &str) -> String {
    let mut t: String = s.chars().take(80).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

/// The records of an instruction file: examples that formatted, and a
/// problem for every record that did not, each naming file and record.
pub fn read(
    json: &Path,
    media_root: &Path,
    fmt: &Formatter,
    media: &str,
    landmarks: bool,
) -> Result<(Vec<Example>, Vec<DataError>), DataError> {
    let at = |row: Option<usize>, message: String| DataError {
        file: json.display().to_string(),
        row,
        message,
    };
    let text = std::fs::read_to_string(json).map_err(|e| at(None, format!("cannot read: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        at(
            Some(e.line()),
            format!("not JSON (column {}): {e}", e.column()),
        )
    })?;
    let list = value
        .as_array()
        .ok_or_else(|| at(None, "the file is not a JSON list of records".into()))?;
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (i, rec) in list.iter().enumerate() {
        match example(rec, i + 1, media_root, fmt, media, landmarks) {
            Ok(e) => good.push(e),
            Err(why) => bad.push(at(None, format!("record {} {why}", i + 1))),
        }
    }
    Ok((good, bad))
}

fn example(
    rec: &serde_json::Value,
    index: usize,
    root: &Path,
    fmt: &Formatter,
    media: &str,
    landmarks: bool,
) -> Result<Example, String> {
    let s = |k: &str| rec.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let id = s("id").unwrap_or_else(|| format!("record-{index}"));
    let named = |m: String| format!("(id \"{id}\") {m}");
    let other = if media == "video" { "image" } else { "video" };
    let rel = match (s(media), rec.get(other)) {
        (Some(r), _) => r,
        (None, Some(_)) => {
            return Err(named(format!(
                "has `{other}`, but this dataset reads `{media}` records (media = \"{media}\"); one kind of media per dataset"
            )))
        }
        (None, None) => return Err(named(format!("missing field `{media}`"))),
    };
    let path = root.join(&rel);
    if !path.exists() {
        return Err(named(format!("{media} `{}` not found", path.display())));
    }
    let turns = rec
        .get("conversations")
        .and_then(|c| c.as_array())
        .ok_or_else(|| named("missing field `conversations` (a list of turns)".into()))?;
    let turn = |i: usize, from: &str| -> Result<String, String> {
        let t = turns.get(i).ok_or_else(|| {
            named(format!(
                "`conversations` has {} turns; mer reads single-turn records (human, then gpt)",
                turns.len()
            ))
        })?;
        let who = t.get("from").and_then(|v| v.as_str()).unwrap_or("");
        if who != from {
            return Err(named(format!(
                "turn {} is from \"{who}\", expected \"{from}\"",
                i + 1
            )));
        }
        t.get("value")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| named(format!("turn {} has no string `value`", i + 1)))
    };
    let (q, a) = (turn(0, "human")?, turn(1, "gpt")?);
    if turns.len() > 2 {
        return Err(named(format!(
            "`conversations` has {} turns; mer reads single-turn records",
            turns.len()
        )));
    }
    let f = fmt.format(&q, &a).map_err(named)?;
    let landmarks = if landmarks {
        let rel = s("landmarks_2d").ok_or_else(|| {
            named("has no `landmarks_2d` (the .npy of its 68 landmarks), and this dataset reads landmarks (landmarks = true)".into())
        })?;
        let path = root.join(rel);
        if !path.is_file() {
            return Err(named(format!("landmarks `{}` not found", path.display())));
        }
        Some(path)
    } else {
        None
    };
    Ok(Example {
        landmarks,
        group: s("subject").unwrap_or_else(|| id.clone()),
        split: s("split"),
        id,
        record: index,
        media: path,
        text: f,
        answer: a,
    })
}

/// The image files of a frame folder, in name order.
fn frame_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("`{}`: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "bmp"
                )
            })
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(format!("`{}` holds no frames", dir.display()));
    }
    Ok(v)
}

/// The dataset.
struct Instruct {
    examples: Vec<Example>,
    reader: Reader,
    task: String,
    media: String,
    frames: usize,
    size: usize,
    max_tokens: usize,
    notes: Vec<String>,
    json: PathBuf,
    /// Read `landmarks_2d`, divided by this (the face crop's side).
    landmark_scale: Option<f32>,
}

impl Instruct {
    fn fail(&self, e: &Example, m: String) -> DataError {
        DataError {
            file: self.json.display().to_string(),
            row: None,
            message: format!("record {} (id \"{}\"): {m}", e.record, e.id),
        }
    }

    /// `[3, T, S, S]` (video) or `[3, S, S]` (image) pixels in [0, 1], and
    /// for a video its frame count and the frames picked.
    fn pixels(&self, e: &Example) -> Result<(Vec<f32>, usize, Vec<usize>), DataError> {
        let fail = |m: String| self.fail(e, m);
        if self.media == "image" {
            let px = mer_data::tower_pixels(&e.media, self.size).map_err(fail)?;
            return Ok((px, 1, vec![0]));
        }
        let folder = if e.media.is_dir() {
            e.media.clone()
        } else {
            let ffmpeg = mer_data::video::decoder().ok_or_else(|| {
                fail(format!(
                    "`{}` is a video file and no ffmpeg was found (set MER_FFMPEG), or extract it to a frame folder",
                    e.media.display()
                ))
            })?;
            mer_data::video::frames(&e.media, &ffmpeg)?.0
        };
        let files = frame_files(&folder).map_err(fail)?;
        let picks = mer_data::sampler::pick(
            &mer_data::sampler::ClipFrames::whole(files.len()),
            self.frames,
            mer_data::sampler::Sampling::Uniform,
            None,
        );
        let plane = self.size * self.size;
        let mut out = vec![0f32; 3 * self.frames * plane];
        for (t, &i) in picks.iter().enumerate() {
            let px = mer_data::tower_pixels(&files[i], self.size).map_err(fail)?;
            for c in 0..3 {
                out[(c * self.frames + t) * plane..][..plane]
                    .copy_from_slice(&px[c * plane..][..plane]);
            }
        }
        Ok((out, files.len(), picks))
    }

    /// The record's landmarks at the frames picked, `[x0, y0, x1, y1, …]`
    /// per frame divided by the crop side (Face-LLaVA's layout): a video's
    /// file holds one (68, 2) row per frame of the video, as Face-LLaVA
    /// asserts; an image's holds (68, 2).
    fn landmarks(
        &self,
        e: &Example,
        scale: f32,
        frames: usize,
        picks: &[usize],
    ) -> Result<Vec<f32>, DataError> {
        let path = e
            .landmarks
            .as_deref()
            .ok_or_else(|| self.fail(e, "has no landmarks (`landmarks_2d`)".into()))?;
        let at = |m: String| self.fail(e, format!("landmarks `{}`: {m}", path.display()));
        let a = mer_data::npy::read(path).map_err(|m| self.fail(e, m))?;
        let per_frame = match a.shape.as_slice() {
            [68, 2] if self.media == "image" => 1,
            [1, 68, 2] if self.media == "image" => 1,
            [n, 68, 2] if self.media == "video" => *n,
            s => {
                return Err(at(format!(
                    "shape {s:?}; a {} needs {}",
                    self.media,
                    if self.media == "image" {
                        "(68, 2)"
                    } else {
                        "(frames, 68, 2)"
                    }
                )))
            }
        };
        if per_frame != frames {
            return Err(at(format!(
                "{per_frame} frames of landmarks for a video of {frames} frames; they must match frame for frame"
            )));
        }
        if a.data.iter().any(|v| !v.is_finite()) {
            return Err(at("holds a NaN or infinite coordinate".into()));
        }
        let mut out = Vec::with_capacity(picks.len() * 136);
        for &i in picks {
            out.extend(a.data[i * 136..][..136].iter().map(|v| v / scale));
        }
        Ok(out)
    }
}

impl Dataset for Instruct {
    fn index(&self) -> Result<Vec<SampleMeta>, DataError> {
        Ok(self
            .examples
            .iter()
            .map(|e| {
                let mut labels = BTreeMap::from([
                    (self.task.clone(), Value::Str(e.text.reading.clone())),
                    ("record".to_string(), Value::Int(e.record as i64)),
                ]);
                if let Some(s) = &e.split {
                    labels.insert("split".into(), Value::Str(s.clone()));
                }
                SampleMeta {
                    id: e.id.clone(),
                    dataset: String::new(),
                    group: e.group.clone(),
                    labels,
                }
            })
            .collect())
    }

    fn load(&self, positions: &[usize], _aug: Option<&mut SeededRng>) -> Result<Batch, DataError> {
        let (b, l) = (positions.len(), self.max_tokens);
        let mut pixels = Vec::new();
        let (mut ids, mut types) = (vec![0i64; b * l], vec![PAD as i64; b * l]);
        let (mut at, mut plen, mut class, mut names) = (vec![], vec![], vec![], vec![]);
        let (mut gold, mut marks) = (Vec::new(), Vec::new());
        for (row, &p) in positions.iter().enumerate() {
            let e = self.examples.get(p).ok_or_else(|| DataError {
                file: self.json.display().to_string(),
                row: None,
                message: format!(
                    "position {p} is outside the {} records",
                    self.examples.len()
                ),
            })?;
            let (px, frames, picks) = self.pixels(e)?;
            pixels.extend(px);
            if let Some(scale) = self.landmark_scale {
                marks.extend(self.landmarks(e, scale, frames, &picks)?);
            }
            let x = &e.text;
            for (j, (id, ty)) in x.ids.iter().zip(&x.types).enumerate() {
                ids[row * l + j] = *id as i64;
                types[row * l + j] = *ty as i64;
            }
            at.push(x.visual_at as i64);
            plen.push(x.prompt_len as i64);
            class.push(x.class as i64);
            gold.extend_from_slice(&x.gold);
            names.push(e.id.clone());
        }
        let dev = Device::Cpu;
        let t = |e: mer_registry::candle::Error| DataError {
            file: self.json.display().to_string(),
            row: None,
            message: e.to_string(),
        };
        let s = self.size;
        let visual = if self.media == "image" {
            Tensor::from_vec(pixels, (b, 3, s, s), &dev)
        } else {
            Tensor::from_vec(pixels, (b, 3, self.frames, s, s), &dev)
        }
        .map_err(t)?;
        let label = match self.reader {
            Reader::Class(_) | Reader::YesNo | Reader::Fake => Tensor::from_vec(class, b, &dev),
            _ => Tensor::from_vec(gold, (b, self.reader.width()), &dev),
        }
        .map_err(t)?;
        let mut ports = BTreeMap::from([
            (self.media.clone(), visual),
            (
                "ids".into(),
                Tensor::from_vec(ids, (b, l), &dev).map_err(t)?,
            ),
            (
                "types".into(),
                Tensor::from_vec(types, (b, l), &dev).map_err(t)?,
            ),
            (
                "visual_at".into(),
                Tensor::from_vec(at, b, &dev).map_err(t)?,
            ),
            (
                "prompt_len".into(),
                Tensor::from_vec(plen, b, &dev).map_err(t)?,
            ),
            (port_of(&self.task).into(), label),
        ]);
        if self.landmark_scale.is_some() {
            let lm = if self.media == "image" {
                Tensor::from_vec(marks, (b, 136), &dev)
            } else {
                Tensor::from_vec(marks, (b, self.frames, 136), &dev)
            };
            ports.insert("landmarks".into(), lm.map_err(t)?);
        }
        Ok(Batch { ids: names, ports })
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        (port == port_of(&self.task)).then(|| self.reader.names())
    }
}

/// The port that holds a task's gold labels.
fn port_of(task: &str) -> &'static str {
    match task {
        "aus" => "aus",
        "age" => "age",
        "yes_no" => "yes",
        "deepfake" => "fake",
        _ => "emotion",
    }
}

/// The kind's parameters, read strictly (the schema holds the defaults).
fn params(p: &BTreeMap<String, Value>) -> mer_registry::Params<'_> {
    mer_registry::Params::new("instruct.faceinstruct", p)
}

/// The formatter and media folder a parameter map asks for.
fn setup(p: &BTreeMap<String, Value>, json: &Path) -> Result<(Formatter, PathBuf), BuildError> {
    let system = match p.get("system") {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let tokenizer = match p.get("tokenizer") {
        Some(Value::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    let fmt = Formatter::new(
        Path::new(params(p).str("weights")?),
        tokenizer,
        Reader::from_params(p)?,
        system,
        params(p).usize("max_tokens")?,
    )?;
    let root = match p.get("media_root") {
        Some(Value::Str(s)) => PathBuf::from(s),
        _ => json.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    Ok((fmt, root))
}

fn build(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    let json = PathBuf::from(params(p).str("json")?);
    let (fmt, root) = setup(p, &json)?;
    let media = params(p).str("media")?.to_string();
    let landmarks = params(p).bool("landmarks")?;
    let (examples, bad) =
        read(&json, &root, &fmt, &media, landmarks).map_err(|e| BuildError(e.to_string()))?;
    let skip = params(p).str("bad_records")? == "skip";
    if let (Some(first), false) = (bad.first(), skip) {
        return Err(BuildError(format!(
            "{first}{}",
            match bad.len() - 1 {
                0 => String::new(),
                n => format!(
                    " (and {n} more: `mer data verify {} --dataset instruct.faceinstruct` lists them; `bad_records = \"skip\"` trains on the {} good records and lists the rest in the report)",
                    json.display(),
                    examples.len()
                ),
            }
        )));
    }
    if examples.is_empty() {
        return Err(BuildError(format!(
            "`{}` holds no usable record",
            json.display()
        )));
    }
    let notes = bad
        .iter()
        .map(|e| format!("left out (bad_records = \"skip\"): {e}"))
        .collect();
    Ok(Box::new(Instruct {
        examples,
        reader: fmt.reader().clone(),
        task: params(p).str("task")?.to_string(),
        media,
        frames: params(p).usize("frames")?,
        size: params(p).usize("size")?,
        max_tokens: params(p).usize("max_tokens")?,
        notes,
        json,
        landmark_scale: landmarks
            .then(|| params(p).float("landmark_scale"))
            .transpose()?
            .map(|s| s as f32),
    }))
}

/// `mer data verify FILE|DIR --dataset instruct.faceinstruct`: every
/// record formatted as training would, each problem with its record.
fn verify(_kind: &str, root: &Path, p: &BTreeMap<String, Value>) -> (String, bool) {
    use std::fmt::Write;
    let json = if root.is_dir() {
        root.join(FILE)
    } else {
        root.to_path_buf()
    };
    let mut o = format!("instruction data: {}\n", json.display());
    let mut p = p.clone();
    p.insert("json".into(), Value::Str(json.display().to_string()));
    let (fmt, media_root) = match setup(&p, &json) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(o, "problems: 1\n  {e}");
            return (o, false);
        }
    };
    let media = params(&p).str("media").unwrap_or("video").to_string();
    let landmarks = params(&p).bool("landmarks").unwrap_or(false);
    match read(&json, &media_root, &fmt, &media, landmarks) {
        Err(e) => {
            let _ = writeln!(o, "problems: 1\n  {e}");
            (o, false)
        }
        Ok((good, bad)) => {
            let mut per: BTreeMap<&str, usize> = BTreeMap::new();
            for e in &good {
                *per.entry(e.text.reading.as_str()).or_default() += 1;
            }
            let _ = writeln!(
                o,
                "records: {} good, {} with problems",
                good.len(),
                bad.len()
            );
            for (c, n) in per {
                let _ = writeln!(o, "  {c}: {n}");
            }
            let longest = good.iter().map(|e| e.text.ids.len()).max().unwrap_or(0);
            let _ = writeln!(o, "longest conversation: {longest} tokens");
            let _ = writeln!(o, "problems: {}", bad.len());
            for b in &bad {
                let _ = writeln!(o, "  {b}");
            }
            (o, bad.is_empty())
        }
    }
}

// ---- generated instruction data ----------------------------------------------

/// What a generated clip's AUs look like, in words.
fn au_phrase(au: i64) -> &'static str {
    match au {
        1 => "the inner brows rise",
        2 => "the outer brows rise",
        4 => "the brows are drawn down",
        5 => "the upper lids rise",
        6 => "the cheeks rise",
        7 => "the lids tighten",
        9 => "the nose wrinkles",
        10 => "the upper lip rises",
        12 => "the lip corners pull up",
        14 => "the cheeks dimple",
        15 => "the lip corners pull down",
        17 => "the chin rises",
        20 => "the lips stretch",
        23 => "the lips tighten",
        25 => "the lips part",
        26 => "the jaw drops",
        _ => "a facial action shows",
    }
}

const QUESTIONS: [&str; 3] = [
    "<video>\nWhat emotion is conveyed in the video?",
    "<video>\nDescribe the facial expression of the person in this video.",
    "<video>\nWhich emotion does the face show? Explain briefly.",
];

/// A templated answer for a generated clip: the class, then why.
pub fn answer(class: &str, aus: &[i64]) -> String {
    if aus.is_empty() {
        return format!("The expression is {class}. No facial action stands out.");
    }
    let cues: Vec<&str> = aus.iter().map(|a| au_phrase(*a)).collect();
    let codes: Vec<String> = aus.iter().map(|a| format!("AU{a}")).collect();
    format!(
        "The expression is {class}. Cues: {} ({}).",
        cues.join(", "),
        codes.join(", ")
    )
}

/// `mer data synth --layout instruct.faceinstruct`: generated DFER clips as
/// frame folders, the 68 landmarks drawn in each frame as Face-LLaVA's
/// `landmarks_2d` (`landmarks/<id>.npy`, (frames, 68, 2) in pixels of the
/// frame, so `landmark_scale` is the frame's side), and an `instruct.json`
/// of templated conversations, the first 80% of subjects `train`, the rest
/// `test`.
fn write(_kind: &str, out: &Path, req: &LayoutRequest) -> Result<usize, String> {
    let generator = mer_data::synth::layout_params(req);
    let synth =
        mer_data::synth::Synth::new(mer_data::synth::Flavor::Dfer, &generator).map_err(|e| e.0)?;
    let [h, w] = synth.size_hw();
    let n = req.frames_per_clip.max(2);
    let train_subjects = (req.subjects * 4 / 5).max(1);
    let mut records = Vec::new();
    for i in 0..synth.len() {
        let info = synth.clip_info(i).ok_or("clip vanished")?;
        let rel = format!("videos/{}", info.id);
        let dir = out.join(&rel);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut marks = Vec::with_capacity(n * 136);
        for j in 0..n {
            let (planes, lm) = synth
                .render_with_landmarks(i, j as f32 / (n - 1) as f32)
                .ok_or("clip vanished")?;
            marks.extend(lm.iter().flat_map(|[x, y]| [x * w as f32, y * h as f32]));
            let path = dir.join(format!("{:05}.jpg", j + 1));
            mer_data::to_image(&planes, [h, w])
                .save(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let lm_rel = format!("landmarks/{}.npy", info.id);
        let lm_path = out.join(&lm_rel);
        if let Some(parent) = lm_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        mer_data::npy::write(&lm_path, &[n, 68, 2], &marks)?;
        records.push(serde_json::json!({
            "id": info.id,
            "video": rel,
            "landmarks_2d": lm_rel,
            "subject": format!("s{:02}", info.subject),
            "split": if info.subject <= train_subjects { "train" } else { "test" },
            "conversations": [
                {"from": "human", "value": QUESTIONS[i % QUESTIONS.len()]},
                {"from": "gpt", "value": answer(info.emotion, &info.aus)},
            ],
        }));
    }
    let file = out.join(FILE);
    let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(records.len())
}

// ---- the kind ----------------------------------------------------------------

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let b = || Dim::sym("B");
    let s = Dim::Size(c.usize("size").unwrap_or(224));
    let l = Dim::Size(c.usize("max_tokens").unwrap_or(256));
    let ints = |dims: Vec<Dim>, semantic: Semantic| TensorType {
        dims,
        dtype: mer_registry::DType::I64,
        semantic,
    };
    let classes = match c.params.get("classes") {
        Some(Value::List(l)) => Some(l.len()),
        _ => None,
    };
    Ok(vec![
        TensorType::f32(
            vec![
                b(),
                Dim::Size(3),
                Dim::Size(c.usize("frames").unwrap_or(8)),
                s.clone(),
                s.clone(),
            ],
            Semantic::Video,
        ),
        TensorType::f32(vec![b(), Dim::Size(3), s.clone(), s], Semantic::Image),
        ints(vec![b(), l.clone()], Semantic::Features),
        ints(vec![b(), l], Semantic::Features),
        ints(vec![b()], Semantic::Features),
        ints(vec![b()], Semantic::Features),
        ints(vec![b()], Semantic::ClassIndex { classes }),
        TensorType::f32(
            vec![b(), Dim::Size(c.ints("aus").len())],
            Semantic::MultiLabel,
        ),
        TensorType::f32(vec![b(), Dim::Size(1)], Semantic::Features),
        ints(vec![b()], Semantic::ClassIndex { classes: Some(2) }),
        ints(vec![b()], Semantic::ClassIndex { classes: Some(2) }),
        TensorType::f32(
            match c.params.get("media") {
                Some(Value::Str(m)) if m == "image" => vec![b(), Dim::Size(136)],
                _ => vec![
                    b(),
                    Dim::Size(c.usize("frames").unwrap_or(8)),
                    Dim::Size(136),
                ],
            },
            Semantic::Features,
        ),
    ])
}

pub(crate) fn kind() -> Kind {
    KindBuilder::new("instruct.faceinstruct", Role::Data)
        .doc("Instruction data in LLaVA's / FaceInstruct's JSON layout (a list of records with `video` or `image`, optional `subject` and `split`, and a single-turn `conversations` with a `<video>` or `<image>` placeholder), formatted with the LLM's own chat template. Token types mark prompt (never a target), label, rationale and end-of-turn tokens for `loss.lm`; the gold class is parsed from the answer with the parser that scores generated answers. A bad record is an error naming the file and record.")
        .output("video", "clip frames [B, C, T, H, W] in [0, 1] (media = \"video\")")
        .output("image", "image [B, C, H, W] in [0, 1] (media = \"image\")")
        .output("ids", "token ids of the rendered conversation without the placeholder [B, L], right-padded")
        .output("types", "token types [B, L]: 0 prompt, 1 label, 2 rationale, 3 end of turn, 4 padding")
        .output("visual_at", "index into `ids` where the visual tokens go [B]")
        .output("prompt_len", "number of prompt ids, up to the assistant's opening [B]")
        .output("emotion", "gold class index [B], read from the answer (task = \"emotion\")")
        .output("aus", "gold AUs [B, K] in {0, 1}, read from the answer (task = \"aus\")")
        .output("age", "gold number [B, 1], read from the answer (task = \"age\")")
        .output("yes", "gold yes (1) or no (0) [B], read from the answer (task = \"yes_no\")")
        .output("fake", "gold fake (1) or real (0) [B], read from the answer (task = \"deepfake\")")
        .output("landmarks", "68 iBUG landmarks at the frames the video port holds [B, T, 136] (an image's [B, 136]), interleaved x, y, divided by `landmark_scale` (landmarks = true)")
        .port_when("video", "media", Value::Str("video".into()))
        .port_when("image", "media", Value::Str("image".into()))
        .port_when("emotion", "task", Value::Str("emotion".into()))
        .port_when("aus", "task", Value::Str("aus".into()))
        .port_when("age", "task", Value::Str("age".into()))
        .port_when("yes", "task", Value::Str("yes_no".into()))
        .port_when("fake", "task", Value::Str("deepfake".into()))
        .port_when("landmarks", "landmarks", Value::Bool(true))
        .path("json", None, "The instruction file: a JSON list of records.")
        .param("media_root", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "Folder the records' `video`/`image` paths are relative to; none = the JSON file's folder.")
        .path("weights", None, "The LLM (HF folder or .gguf) whose chat template and tokenizer format the conversations: the `llm.instruct` node's weights.")
        .param("tokenizer", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "tokenizer.json; none uses the folder's or the GGUF metadata.")
        .choice("media", &["video", "image"], Some("video"), "What the records hold; one kind of media per dataset (LLaVA batches are all-image or all-video).")
        .int("frames", Some(8), Some(1), "Frames sampled uniformly per video, both ends included (Face-LLaVA: 8).")
        .int("size", Some(224), Some(8), "Side of the square the tower reads: shorter side resized (bicubic), centre crop.")
        .int("max_tokens", Some(256), Some(8), "Token length of the padded conversation; a longer one is an error naming its record, never cut.")
        .choice("task", TASKS, Some("emotion"), "What the answers state, read by the parser that reads generated answers: `emotion` (one of `classes`, synonyms included), `aus` (the AUs named, of `aus`), `age` (the first number), `yes_no`, `deepfake` (real or fake: manipulated, forged, swapped, …). A gold answer without that reading is a bad record.")
        .strings("classes", Some(CLASSES), "Class names in label order; answers are parsed against them (with synonyms such as happiness → happy).")
        .ints("aus", Some(&[1, 2, 4, 6, 9, 12, 25, 26]), Some(1), "AUs read from answers (task = \"aus\"), in order; DISFA's eight by default.")
        .param("system", ParamType::Optional(Box::new(ParamType::Str { choices: vec![] })), Some(Value::None), "A system turn before each conversation; none leaves the template's own default.")
        .bool("landmarks", false, "Read each record's `landmarks_2d` (a .npy of 68 iBUG (x, y) points in pixels of the face crop: (68, 2) for an image, (frames, 68, 2) for a video, one row per frame of the video, as Face-LLaVA's loader asserts) into the `landmarks` port, at the same frames as the video port. A record without one is a bad record.")
        .float("landmark_scale", Some(256.0), Some(1.0), None, "What landmark pixels are divided by: the side of the square face crop they were found on (Face-LLaVA: 256, its crops' side).")
        .choice("bad_records", &["error", "skip"], Some("error"), "A record that cannot be used: `error` refuses to build (naming file and record), `skip` trains on the good records and lists each skipped one in the run log and report.")
        .shapes(shapes)
        .dataset(build)
        .verify(verify)
        .write_layout(write)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mer-instruct-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tiny_llm(dir: &Path) -> PathBuf {
        super::super::tiny::tiny_checkpoint("llama", dir).unwrap().0
    }

    fn classes() -> Vec<String> {
        CLASSES.iter().map(|s| s.to_string()).collect()
    }

    fn fmt(llm: &Path) -> Formatter {
        Formatter::new(
            llm,
            None,
            Reader::new("emotion", &classes(), &[]).unwrap(),
            None,
            400,
        )
        .unwrap()
    }

    #[test]
    fn a_conversation_splits_at_its_placeholder_and_types_the_answer() {
        let d = folder("split");
        let f = fmt(&tiny_llm(&d));
        let answer = "The expression is happy. Cues: the cheeks rise (AU6).";
        let x = f.format("<video>\nWhat emotion?", answer).unwrap();
        assert_eq!(x.class, 0);
        let text = |ids: &[u32]| f.decode(ids).unwrap();
        // ChatML: the user turn opens, the placeholder is the first thing in it.
        assert!(
            text(&x.ids[..x.visual_at]).ends_with("<|im_start|>user\n"),
            "{}",
            text(&x.ids[..x.visual_at])
        );
        assert_eq!(
            text(&x.ids[x.visual_at..x.prompt_len]),
            "\nWhat emotion?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(x.types[..x.prompt_len].iter().all(|t| *t == PROMPT));
        let of = |ty: u32| -> String {
            let ids: Vec<u32> = x
                .ids
                .iter()
                .zip(&x.types)
                .filter(|(_, t)| **t == ty)
                .map(|(i, _)| *i)
                .collect();
            text(&ids)
        };
        // Byte-level BPE may carry the space before a word into its token.
        assert_eq!(of(LABEL).trim(), "happy");
        let why = of(RATIONALE);
        assert!(
            why.starts_with("The expression is") && why.ends_with("Cues: the cheeks rise (AU6)."),
            "{why}"
        );
        assert!(!why.contains("happy"), "{why}");
        assert_eq!(of(END), "<|im_end|>\n");
        assert_eq!(
            text(&x.ids[x.prompt_len..]),
            format!("{answer}<|im_end|>\n")
        );
    }

    #[test]
    fn bad_records_name_file_and_index_and_good_ones_still_load() {
        let d = folder("bad");
        let llm = tiny_llm(&d);
        std::fs::create_dir_all(d.join("v/a")).unwrap();
        let good = |id: &str| {
            serde_json::json!({"id": id, "video": "v/a", "conversations": [
            {"from": "human", "value": "<video>\nEmotion?"}, {"from": "gpt", "value": "It is sad."}]})
        };
        let records = serde_json::json!([
            good("one"),
            {"id": "two", "conversations": [{"from": "human", "value": "<video>\nx"}, {"from": "gpt", "value": "sad"}]},
            {"id": "three", "video": "v/a", "conversations": [{"from": "human", "value": "<img>\nx"}, {"from": "gpt", "value": "sad"}]},
            {"id": "four", "video": "v/missing", "conversations": [{"from": "human", "value": "<video>\nx"}, {"from": "gpt", "value": "sad"}]},
            {"id": "five", "video": "v/a", "conversations": [{"from": "human", "value": "<video>\nx"}, {"from": "gpt", "value": "happy or sad"}]},
            good("six"),
        ]);
        let json = d.join(FILE);
        std::fs::write(&json, records.to_string()).unwrap();
        let (ok, bad) = read(&json, &d, &fmt(&llm), "video", false).unwrap();
        assert_eq!(
            ok.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["one", "six"]
        );
        assert_eq!(ok[1].record, 6);
        let msgs: Vec<String> = bad.iter().map(|e| e.to_string()).collect();
        let file = json.display().to_string();
        assert!(msgs.iter().all(|m| m.starts_with(&file)), "{msgs:?}");
        assert!(
            msgs[0].contains("record 2 (id \"two\") missing field `video`"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("record 3 (id \"three\") unknown placeholder `<img>`"),
            "{}",
            msgs[1]
        );
        assert!(
            msgs[2].contains("record 4 (id \"four\") video") && msgs[2].contains("not found"),
            "{}",
            msgs[2]
        );
        assert!(
            msgs[3].contains("record 5 (id \"five\") the answer gives no reading for this task"),
            "{}",
            msgs[3]
        );
        // The loader refuses by default, naming the first and counting the rest.
        let p = mer_registry::Kind::with_defaults(
            &kind(),
            &BTreeMap::from([
                ("json".to_string(), Value::Str(file.clone())),
                ("weights".to_string(), Value::Str(llm.display().to_string())),
            ]),
        );
        let e = build(&p).err().unwrap().0;
        assert!(e.contains("record 2") && e.contains("and 3 more"), "{e}");
        let mut p = p;
        p.insert("bad_records".into(), Value::Str("skip".into()));
        let ds = build(&p).unwrap();
        assert_eq!(ds.index().unwrap().len(), 2);
        assert_eq!(ds.notes().len(), 4);
    }

    #[test]
    fn too_long_is_an_error_never_a_cut() {
        let d = folder("long");
        let reader = Reader::new("emotion", &classes(), &[]).unwrap();
        let f = Formatter::new(&tiny_llm(&d), None, reader, None, 20).unwrap();
        let e = f.format("<image>\nEmotion?", "It is sad.").unwrap_err();
        assert!(e.contains("more than max_tokens = 20"), "{e}");
    }

    #[test]
    fn generated_instruction_data_loads_with_its_ports() {
        let d = folder("synth");
        let llm = tiny_llm(&d);
        let out = d.join("data");
        let req = LayoutRequest {
            subjects: 2,
            clips_per_subject: 3,
            frames_per_clip: 4,
            size: 32,
            intensity: 1.0,
            seed: 3,
            face: "drawn".into(),
        };
        assert_eq!(write("instruct.faceinstruct", &out, &req).unwrap(), 6);
        let p = mer_registry::Kind::with_defaults(
            &kind(),
            &BTreeMap::from([
                (
                    "json".to_string(),
                    Value::Str(out.join(FILE).display().to_string()),
                ),
                ("weights".to_string(), Value::Str(llm.display().to_string())),
                ("frames".to_string(), Value::Int(2)),
                ("size".to_string(), Value::Int(16)),
            ]),
        );
        let (report, clean) = verify("instruct.faceinstruct", &out, &p);
        assert!(clean, "{report}");
        assert!(
            report.contains("records: 6 good, 0 with problems"),
            "{report}"
        );
        let ds = build(&p).unwrap();
        let index = ds.index().unwrap();
        assert_eq!(index.len(), 6);
        assert_eq!(index[0].labels["split"], Value::Str("train".into()));
        let b = ds.load(&[0, 5], None).unwrap();
        assert_eq!(b.ports["video"].dims(), &[2, 3, 2, 16, 16]);
        assert_eq!(b.ports["ids"].dims(), &[2, 256]);
        let types: Vec<Vec<i64>> = b.ports["types"].to_vec2().unwrap();
        assert!(types[0].contains(&(LABEL as i64)) && types[0].ends_with(&[PAD as i64]));
        let gold: Vec<i64> = b.ports["emotion"].to_vec1().unwrap();
        let names = ds.label_names("emotion").unwrap();
        assert_eq!(
            index[0].labels["emotion"],
            Value::Str(names[gold[0] as usize].clone())
        );
    }

    /// Landmarks come at the frames the video port holds, divided by the
    /// crop side; a file whose frames do not match, or a record without
    /// one, is an error naming the record.
    #[test]
    fn landmarks_follow_the_picked_frames_and_bad_ones_name_their_record() {
        let d = folder("landmarks");
        let llm = tiny_llm(&d);
        let out = d.join("data");
        let req = LayoutRequest {
            subjects: 1,
            clips_per_subject: 2,
            frames_per_clip: 5,
            size: 32,
            intensity: 1.0,
            seed: 4,
            face: "drawn".into(),
        };
        write("instruct.faceinstruct", &out, &req).unwrap();
        let p = |extra: &[(&str, Value)]| {
            let mut m = BTreeMap::from([
                (
                    "json".to_string(),
                    Value::Str(out.join(FILE).display().to_string()),
                ),
                ("weights".to_string(), Value::Str(llm.display().to_string())),
                ("frames".to_string(), Value::Int(3)),
                ("size".to_string(), Value::Int(16)),
                ("landmarks".to_string(), Value::Bool(true)),
                ("landmark_scale".to_string(), Value::Float(32.0)),
            ]);
            m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
            mer_registry::Kind::with_defaults(&kind(), &m)
        };
        let ds = build(&p(&[])).unwrap();
        let b = ds.load(&[0, 1], None).unwrap();
        assert_eq!(b.ports["landmarks"].dims(), &[2, 3, 136]);
        // Frames 0, 2 and 4 of 5: the file's rows 0, 2 and 4, over 32.
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(FILE)).unwrap()).unwrap();
        let file = out.join(rec[0]["landmarks_2d"].as_str().unwrap());
        let a = mer_data::npy::read(&file).unwrap();
        assert_eq!(a.shape, vec![5, 68, 2]);
        let got: Vec<Vec<Vec<f32>>> = b.ports["landmarks"].to_vec3().unwrap();
        for (t, row) in [0, 2, 4].iter().enumerate() {
            for (j, v) in got[0][t].iter().enumerate() {
                assert_eq!(*v, a.data[row * 136 + j] / 32.0);
            }
        }
        // Every point inside the frame; the brows (17–26) above the mouth (48–67).
        let y = |k: usize| got[0][0][2 * k + 1];
        assert!(got[0][0].iter().all(|v| (0.0..=1.0).contains(v)));
        assert!((17..27).all(|k| (48..68).all(|m| y(k) < y(m))));

        // Three rows of landmarks for a five-frame video.
        mer_data::npy::write(&file, &[3, 68, 2], &a.data[..408]).unwrap();
        let e = ds.load(&[0], None).unwrap_err();
        assert!(
            e.message.contains("record 1")
                && e.message
                    .contains("3 frames of landmarks for a video of 5 frames"),
            "{e}"
        );
        // A record without `landmarks_2d`.
        let mut recs = rec.clone();
        recs[1].as_object_mut().unwrap().remove("landmarks_2d");
        std::fs::write(out.join(FILE), recs.to_string()).unwrap();
        let e = build(&p(&[])).err().unwrap();
        assert!(
            e.0.contains("record 2") && e.0.contains("landmarks_2d"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn every_task_reads_gold_and_generated_answers_alike() {
        let aus = [1, 2, 4, 6, 9, 12, 25, 26];
        let r = |task: &str| Reader::new(task, &classes(), &aus).unwrap();
        let row = |task: &str, text: &str| {
            let rd = r(task);
            rd.row(&rd.read(text))
        };
        assert_eq!(
            row("emotion", "The expression is sad."),
            Some(vec![0., 1., 0., 0., 0., 0., 0.])
        );
        assert_eq!(
            row("aus", "Active units: AU4 and AU 12."),
            Some(vec![-10., -10., 10., -10., -10., 10., -10., -10.])
        );
        assert_eq!(
            row("aus", "No action units are active."),
            Some(vec![-10.; 8])
        );
        assert_eq!(
            row("age", "The person looks about 34 years old."),
            Some(vec![34.])
        );
        assert_eq!(
            row("yes_no", "Yes, the video is genuine."),
            Some(vec![0., 1.])
        );
        assert_eq!(
            row(
                "deepfake",
                "The video appears genuine, with no signs of manipulation."
            ),
            Some(vec![1., 0.])
        );
        assert_eq!(
            row(
                "deepfake",
                "This face has been manipulated: the blending at the jaw is a giveaway."
            ),
            Some(vec![0., 1.])
        );
        assert_eq!(
            r("deepfake").words(&r("deepfake").read("It is a deepfake.")),
            "fake"
        );
        for (task, text) in [
            ("emotion", "hard to say"),
            ("age", "young"),
            ("yes_no", "perhaps"),
            ("deepfake", "hard to tell from this clip"),
        ] {
            let rd = r(task);
            let p = rd.read(text);
            assert_eq!(rd.row(&p), None, "{task}: {text}");
            assert!(rd.words(&p).starts_with("unparseable: "), "{task}");
        }
        // Label tokens of an AU answer are the AUs it names.
        let d = folder("aus");
        let f = Formatter::new(&tiny_llm(&d), None, r("aus"), None, 400).unwrap();
        let x = f
            .format("<image>\nWhich AUs?", "Active units: AU4 and AU12.")
            .unwrap();
        let label: Vec<u32> = x
            .ids
            .iter()
            .zip(&x.types)
            .filter(|(_, t)| **t == LABEL)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(f.decode(&label).unwrap().replace(' ', ""), "AU4AU12");
        assert_eq!(x.gold, vec![-10., -10., 10., -10., -10., 10., -10., -10.]);
        assert_eq!(x.reading, "AU4, AU12");
    }
}
