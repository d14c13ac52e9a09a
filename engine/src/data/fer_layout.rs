//! Still-image expression corpora as distributed.
//!
//! * RAF-DB (basic): `basic/EmoLabel/list_patition_label.txt` (the file
//!   name really is spelled `patition`), one `train_00001.jpg 5` per line,
//!   codes 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger,
//!   7 neutral; aligned faces in `basic/Image/aligned/<stem>_aligned.jpg`.
//!   The official split is the `train_`/`test_` prefix, given as a `split`
//!   label for `protocol.official`.

use super::synth::Synth;
use mer_registry::candle::{Device, Tensor};
use mer_registry::{Batch, BuildError, DataError, Dataset, SampleMeta, SeededRng, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// RAF-DB's classes, in code order (code = index + 1).
pub const RAFDB_CLASSES: &[&str] = &[
    "surprise",
    "fear",
    "disgust",
    "happiness",
    "sadness",
    "anger",
    "neutral",
];
const LABEL_FILE: &str = "basic/EmoLabel/list_patition_label.txt";
const ALIGNED: &str = "basic/Image/aligned";

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Still {
    /// Line in the label file (1-based).
    pub row: usize,
    /// `train_00001`.
    pub stem: String,
    pub split: &'static str,
    pub class: usize,
    pub image: PathBuf,
}

/// What reading the folder found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Still>,
    pub problems: Vec<DataError>,
}

fn err(file: &Path, row: Option<usize>, message: String) -> DataError {
    DataError {
        file: file.display().to_string(),
        row,
        message,
    }
}

/// Reads RAF-DB's label list and checks every image.
pub fn scan_rafdb(root: &Path) -> Scan {
    let mut out = Scan::default();
    let label = root.join(LABEL_FILE);
    let text = match std::fs::read_to_string(&label) {
        Ok(t) => t,
        Err(e) => {
            out.problems.push(err(
                &label,
                None,
                format!("cannot read the label list ({e}); RAF-DB keeps it at {LABEL_FILE}"),
            ));
            return out;
        }
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let row = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, code] = fields[..] else {
            out.problems.push(err(
                &label,
                Some(row),
                format!("expected `<image> <code>`, found `{line}`"),
            ));
            continue;
        };
        let Some(stem) = name.strip_suffix(".jpg") else {
            out.problems.push(err(
                &label,
                Some(row),
                format!("`{name}` is not a .jpg name"),
            ));
            continue;
        };
        let split = if stem.starts_with("train_") {
            "train"
        } else if stem.starts_with("test_") {
            "test"
        } else {
            out.problems.push(err(
                &label,
                Some(row),
                format!(
                    "`{name}` has neither the train_ nor the test_ prefix that gives the split"
                ),
            ));
            continue;
        };
        let class = match code.parse::<usize>() {
            Ok(c) if (1..=7).contains(&c) => c - 1,
            _ => {
                out.problems.push(err(
                    &label,
                    Some(row),
                    format!("unknown emotion code `{code}` (RAF-DB: 1 surprise … 7 neutral)"),
                ));
                continue;
            }
        };
        if let Some(first) = seen.insert(stem.to_string(), row) {
            out.problems.push(err(
                &label,
                Some(row),
                format!("`{name}` is listed twice (first on line {first})"),
            ));
            continue;
        }
        let image = root.join(ALIGNED).join(format!("{stem}_aligned.jpg"));
        if !image.is_file() {
            out.problems.push(err(
                &label,
                Some(row),
                format!("image {} is missing", image.display()),
            ));
            continue;
        }
        out.records.push(Still {
            row,
            stem: stem.to_string(),
            split,
            class,
            image,
        });
    }
    out
}

/// The `fer.rafdb` loader.
pub struct RafDb {
    records: Vec<Still>,
    size: [usize; 2],
    augment: bool,
    label: PathBuf,
}

impl RafDb {
    pub fn new(p: &BTreeMap<String, Value>) -> Result<Self, BuildError> {
        let root = match p.get("root") {
            Some(Value::Str(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return Err(BuildError("`fer.rafdb` needs `root`".into())),
        };
        let s = scan_rafdb(&root);
        if let Some(first) = s.problems.first() {
            return Err(BuildError(format!(
                "{first}{}",
                match s.problems.len() - 1 {
                    0 => String::new(),
                    n => format!(
                        " (and {n} more problems: `mer data verify {} --dataset fer.rafdb` lists them)",
                        root.display()
                    ),
                }
            )));
        }
        if s.records.is_empty() {
            return Err(BuildError(format!(
                "{}: the label list names no images",
                root.join(LABEL_FILE).display()
            )));
        }
        let size = super::size(p, [100, 100])?;
        Ok(RafDb {
            records: s.records,
            size,
            augment: !matches!(p.get("augment"), Some(Value::Bool(false))),
            label: root.join(LABEL_FILE),
        })
    }
}

impl Dataset for RafDb {
    fn label_names(&self, port: &str) -> Option<Vec<String>> {
        (port == "emotion").then(|| RAFDB_CLASSES.iter().map(|c| c.to_string()).collect())
    }

    fn index(&self) -> Result<Vec<SampleMeta>, DataError> {
        Ok(self
            .records
            .iter()
            .map(|r| SampleMeta {
                id: r.stem.clone(),
                dataset: String::new(),
                // No identities are published: each image is its own group.
                group: r.stem.clone(),
                labels: BTreeMap::from([
                    (
                        "emotion".to_string(),
                        Value::Str(RAFDB_CLASSES[r.class].to_string()),
                    ),
                    ("split".to_string(), Value::Str(r.split.to_string())),
                    ("row".to_string(), Value::Int(r.row as i64)),
                ]),
            })
            .collect())
    }

    fn load(
        &self,
        positions: &[usize],
        mut aug: Option<&mut SeededRng>,
    ) -> Result<Batch, DataError> {
        let [h, w] = self.size;
        let b = positions.len();
        let mut image = Vec::with_capacity(b * 3 * h * w);
        let (mut emotion, mut ids) = (vec![], vec![]);
        for &p in positions {
            let r = self.records.get(p).ok_or_else(|| {
                err(
                    &self.label,
                    None,
                    format!("position {p} is outside the {} images", self.records.len()),
                )
            })?;
            let img = image::open(&r.image)
                .map_err(|e| err(&r.image, Some(r.row), format!("cannot decode: {e}")))?
                .to_rgb8();
            // Training augmentation: a random crop of 90% of each side and
            // a horizontal flip, drawn from the run's seeded stream.
            let (mut x0, mut y0, mut cw, mut ch) = (0, 0, img.width(), img.height());
            let mut flip = false;
            if let (true, Some(rng)) = (self.augment, aug.as_deref_mut()) {
                cw = (img.width() * 9 / 10).max(1);
                ch = (img.height() * 9 / 10).max(1);
                x0 = rng.below((img.width() - cw + 1) as usize) as u32;
                y0 = rng.below((img.height() - ch + 1) as usize) as u32;
                flip = rng.uniform() < 0.5;
            }
            let crop = image::imageops::crop_imm(&img, x0, y0, cw, ch).to_image();
            let mut rs = image::imageops::resize(
                &crop,
                w as u32,
                h as u32,
                image::imageops::FilterType::Triangle,
            );
            if flip {
                rs = image::imageops::flip_horizontal(&rs);
            }
            let mut planes: Vec<Vec<f32>> = (0..3).map(|_| Vec::with_capacity(h * w)).collect();
            for px in rs.pixels() {
                for (c, plane) in planes.iter_mut().enumerate() {
                    plane.push(px.0[c] as f32 / 255.0);
                }
            }
            for pl in planes {
                image.extend(pl);
            }
            emotion.push(r.class as i64);
            ids.push(r.stem.clone());
        }
        let d = &Device::Cpu;
        let e = |e: mer_registry::candle::Error| err(&self.label, None, e.to_string());
        let mut ports = BTreeMap::new();
        ports.insert(
            "image".into(),
            Tensor::from_vec(image, (b, 3, h, w), d).map_err(e)?,
        );
        ports.insert(
            "emotion".into(),
            Tensor::from_vec(emotion, b, d).map_err(e)?,
        );
        Ok(Batch { ids, ports })
    }
}

/// `fer.rafdb`'s factory.
pub fn rafdb(p: &BTreeMap<String, Value>) -> Result<Box<dyn Dataset>, BuildError> {
    Ok(Box::new(RafDb::new(p)?))
}

/// `mer data verify ROOT --dataset fer.rafdb`.
pub fn verify_rafdb(root: &Path) -> (String, bool) {
    use std::fmt::Write;
    let s = scan_rafdb(root);
    let mut o = String::new();
    let _ = writeln!(o, "fer.rafdb at {}", root.display());
    let train = s.records.iter().filter(|r| r.split == "train").count();
    let _ = writeln!(
        o,
        "samples: {}   train: {train}   test: {}",
        s.records.len(),
        s.records.len() - train
    );
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &s.records {
        *per.entry(RAFDB_CLASSES[r.class]).or_default() += 1;
    }
    let list: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(o, "emotions: {}", list.join(", "));
    let _ = writeln!(o, "problems: {}", s.problems.len());
    for p in &s.problems {
        let _ = writeln!(o, "  {p}");
    }
    (o, s.problems.is_empty())
}

/// Writes generated faces in RAF-DB's layout: each generated clip's apex
/// frame as an aligned JPEG, actors in the first 80% train, the rest test.
pub fn write_rafdb(p: &BTreeMap<String, Value>, root: &Path) -> Result<usize, String> {
    let mut params = p.clone();
    let synth_names = [
        "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral",
    ];
    params.insert(
        "class_names".into(),
        Value::List(
            synth_names
                .iter()
                .map(|c| Value::Str(c.to_string()))
                .collect(),
        ),
    );
    let synth = Synth::new(super::synth::Flavor::Dfer, &params).map_err(|e| e.0)?;
    let subjects = super::int(p, "subjects", 1).max(1) as usize;
    let train_subjects = ((subjects * 4) / 5).max(1);
    let dir = root.join(ALIGNED);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (mut lines, mut n_train, mut n_test) = (String::new(), 0, 0);
    for i in 0..synth.len() {
        let info = synth.clip_info(i).ok_or("clip vanished")?;
        let code = synth_names
            .iter()
            .position(|c| *c == info.emotion)
            .ok_or("generated class outside RAF-DB")?
            + 1;
        let stem = if info.subject <= train_subjects {
            n_train += 1;
            format!("train_{n_train:05}")
        } else {
            n_test += 1;
            format!("test_{n_test:04}")
        };
        let planes = synth.render_at(i, info.timing[1]).ok_or("clip vanished")?;
        let img = super::me_layout::to_image(&planes, synth.size_hw());
        let path = dir.join(format!("{stem}_aligned.jpg"));
        img.save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        lines.push_str(&format!("{stem}.jpg {code}\n"));
    }
    let label = root.join(LABEL_FILE);
    if let Some(d) = label.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(&label, lines).map_err(|e| format!("{}: {e}", label.display()))?;
    Ok(synth.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mer-fer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn gen(root: &Path) -> usize {
        let p: BTreeMap<String, Value> = [
            ("subjects", Value::Int(5)),
            ("clips_per_subject", Value::Int(4)),
            ("size", Value::List(vec![Value::Int(40), Value::Int(40)])),
            ("color", Value::Bool(true)),
            ("intensity", Value::Float(1.0)),
            ("seed", Value::Int(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_rafdb(&p, root).unwrap()
    }

    #[test]
    fn generated_rafdb_loads_with_the_official_split() {
        let root = tmp("ok");
        assert_eq!(gen(&root), 20);
        let p = BTreeMap::from([
            ("root".to_string(), Value::Str(root.display().to_string())),
            (
                "size".to_string(),
                Value::List(vec![Value::Int(24), Value::Int(24)]),
            ),
        ]);
        let ds = RafDb::new(&p).unwrap();
        let index = ds.index().unwrap();
        let train = index
            .iter()
            .filter(|s| s.labels["split"] == Value::Str("train".into()))
            .count();
        assert_eq!((index.len(), train), (20, 16));
        let b = ds.load(&[0, 19], None).unwrap();
        assert_eq!(b.ports["image"].dims(), &[2, 3, 24, 24]);
        // Augmentation is seeded: the same stream gives the same pixels.
        let a1 = ds.load(&[3], Some(&mut SeededRng::new(9))).unwrap().ports["image"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let a2 = ds.load(&[3], Some(&mut SeededRng::new(9))).unwrap().ports["image"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a1, a2);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn label_list_defects_are_named_by_line() {
        let root = tmp("bad");
        gen(&root);
        let label = root.join(LABEL_FILE);
        let mut text = std::fs::read_to_string(&label).unwrap();
        text.push_str("train_00001.jpg 4\n"); // duplicate
        text.push_str("train_09999.jpg 3\n"); // image missing
        text.push_str("test_0001.jpg 9\n"); // unknown code
        text.push_str("val_0001.jpg 1\n"); // no split prefix
        text.push_str("oops\n"); // malformed
        std::fs::write(&label, text).unwrap();
        std::fs::write(root.join(ALIGNED).join("train_00002_aligned.jpg"), b"no").unwrap();
        let s = scan_rafdb(&root);
        let msgs: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
        let at = |row: usize, needle: &str| {
            msgs.iter().any(|m| {
                m.contains(&format!("list_patition_label.txt:{row}")) && m.contains(needle)
            })
        };
        assert!(at(21, "listed twice (first on line 1)"), "{msgs:#?}");
        assert!(at(22, "is missing"), "{msgs:#?}");
        assert!(at(23, "unknown emotion code `9`"), "{msgs:#?}");
        assert!(at(24, "neither the train_ nor the test_"), "{msgs:#?}");
        assert!(at(25, "expected `<image> <code>`"), "{msgs:#?}");
        assert_eq!(s.records.len(), 20, "the 20 good lines stay");
        // An unreadable image fails at load with its path and line.
        let fixed = std::fs::read_to_string(&label).unwrap();
        let good: String = fixed.lines().take(20).map(|l| format!("{l}\n")).collect();
        std::fs::write(&label, good).unwrap();
        let p = BTreeMap::from([("root".to_string(), Value::Str(root.display().to_string()))]);
        let ds = RafDb::new(&p).unwrap();
        let e = ds.load(&[1], None).err().unwrap();
        assert!(
            e.file.ends_with("train_00002_aligned.jpg") && e.row == Some(2),
            "{e}"
        );
        std::fs::remove_dir_all(&root).ok();
    }
}
