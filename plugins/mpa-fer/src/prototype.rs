//! `mpa_fer.prototype`: MPA-FER's class prototypes and prototype loss
//! L_v. A prototype is the mean frozen-CLIP image embedding (no prompts,
//! no augmentation) of a class's training images. The runner's fit pass
//! ([`Component::fit`]) hands this component the training samples of the
//! fold, and only those, before the first epoch; the loss then pulls each
//! prompted image embedding towards its class's prototype.

use crate::fail;
use mer_registry::candle::{DType, Device, Result as CResult, Tensor};
use mer_registry::component::input;
use mer_registry::layers::unit;
use mer_registry::{
    BuildCtx, BuildError, Component, ExampleInput, Kind, KindBuilder, Mode, ParamType, Role,
    SeededRng, Semantic, ShapeCtx, ShapeError, TensorType, Value,
};
use std::sync::Mutex;

const KIND: &str = "mpa_fer.prototype";

pub(crate) fn kind() -> Kind {
    KindBuilder::new(KIND, Role::Loss)
        .doc("Class prototypes and MPA-FER's prototype loss L_v. Before training, the runner passes the fold's training images (never test or inner-validation ones; unaugmented, in a seeded order) through the frozen encoder once, and each class's prototype is the mean of the `frozen` embeddings of its first `subset` images (all with 0). The loss is the distance of each prompted embedding to its class's prototype, averaged over the batch: L1 (averaged over dimensions, as PyTorch's l1_loss) or 1 − cosine. The prototypes are written beside the fold's results (`adapters/<node>/prototypes.safetensors`, with the images counted per class).")
        .input("features", "prompted image embeddings [B, P] (`clip.vision.embeds` with prompts)")
        .input("frozen", "the same images through the frozen CLIP without prompts [B, P]")
        .input("labels", "class indices [B]")
        .output("loss", "scalar")
        .choice("distance", &["l1", "cosine"], Some("l1"), "M in L_v = M(z_g, p_y): the paper names L1 and cosine.")
        .int("subset", Some(0), Some(0), "Training images per class that make its prototype (the paper's Table 3 varies it); 0 = all.")
        .param("classes", ParamType::Optional(Box::new(ParamType::Int { min: Some(1), max: None })), Some(Value::None), "How many classes; none = as the labels' data says.")
        .shapes(shapes)
        .factory(build)
        .example_inputs(
            &[("classes", Value::Int(3))],
            vec![
                ExampleInput::Features(vec![4, 5]),
                ExampleInput::Fixed(vec![4, 5]),
                ExampleInput::ClassIndex { dims: vec![4], classes: 3 },
            ],
        )
        .build()
}

/// Sums and counts per class, in f64 so the order of batches does not
/// move the mean.
struct Sums {
    sum: Vec<f64>,
    count: Vec<usize>,
    width: usize,
}

struct Prototype {
    classes: usize,
    subset: usize,
    cosine: bool,
    sums: Mutex<Option<Sums>>,
}

fn labels(t: &Tensor, classes: usize) -> CResult<Vec<usize>> {
    t.to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|y| {
            if y >= 0.0 && y.fract() == 0.0 && (y as usize) < classes {
                Ok(y as usize)
            } else {
                Err(mer_registry::candle::Error::Msg(format!(
                    "{KIND}: label {y} is not a class index below {classes}"
                )))
            }
        })
        .collect()
}

impl Prototype {
    /// `[K, P]` prototypes and which classes have one.
    fn table(&self, dev: &Device) -> CResult<Option<(Tensor, Vec<bool>)>> {
        let g = self
            .sums
            .lock()
            .map_err(|_| mer_registry::candle::Error::Msg(format!("{KIND}: poisoned")))?;
        let Some(s) = g.as_ref() else {
            return Ok(None);
        };
        let mut p = vec![0f32; self.classes * s.width];
        for k in 0..self.classes {
            let n = s.count[k].max(1) as f64;
            for j in 0..s.width {
                p[k * s.width + j] = (s.sum[k * s.width + j] / n) as f32;
            }
        }
        Ok(Some((
            Tensor::from_vec(p, (self.classes, s.width), dev)?,
            s.count.iter().map(|&c| c > 0).collect(),
        )))
    }
}

impl Component for Prototype {
    fn fits(&self) -> bool {
        true
    }

    fn fit(&self, inputs: &[Tensor]) -> CResult<()> {
        let frozen = input(inputs, 1, KIND)?.to_dtype(DType::F64)?;
        let ys = labels(input(inputs, 2, KIND)?, self.classes)?;
        let (b, w) = frozen.dims2()?;
        let rows = frozen.to_vec2::<f64>()?;
        let mut g = self
            .sums
            .lock()
            .map_err(|_| mer_registry::candle::Error::Msg(format!("{KIND}: poisoned")))?;
        let s = g.get_or_insert_with(|| Sums {
            sum: vec![0.0; self.classes * w],
            count: vec![0; self.classes],
            width: w,
        });
        if s.width != w {
            mer_registry::candle::bail!("{KIND}: features were {} wide, now {w}", s.width);
        }
        for (row, &y) in rows.iter().zip(&ys).take(b) {
            if self.subset > 0 && s.count[y] >= self.subset {
                continue;
            }
            s.count[y] += 1;
            for (acc, x) in s.sum[y * w..(y + 1) * w].iter_mut().zip(row) {
                *acc += x;
            }
        }
        Ok(())
    }

    fn forward(
        &self,
        inputs: &[Tensor],
        _mode: Mode,
        _rng: &mut SeededRng,
    ) -> CResult<Vec<Tensor>> {
        let z = input(inputs, 0, KIND)?;
        let ys = labels(input(inputs, 2, KIND)?, self.classes)?;
        let zero = || z.sum_all()? * 0.0;
        let Some((table, has)) = self.table(z.device())? else {
            // Never fitted (a model built outside the runner): no pull.
            return Ok(vec![zero()?]);
        };
        let keep: Vec<u32> = (0..ys.len() as u32)
            .filter(|&i| has[ys[i as usize]])
            .collect();
        if keep.is_empty() {
            return Ok(vec![zero()?]);
        }
        let dev = z.device();
        let idx = Tensor::new(keep.as_slice(), dev)?;
        let cls: Vec<u32> = keep.iter().map(|&i| ys[i as usize] as u32).collect();
        let z = z.index_select(&idx, 0)?;
        let p = table
            .index_select(&Tensor::new(cls.as_slice(), dev)?, 0)?
            .to_dtype(z.dtype())?;
        let loss = if self.cosine {
            ((unit(&z)? * unit(&p)?)?.sum(1)?.neg()? + 1.0)?.mean_all()?
        } else {
            (z - p)?.abs()?.mean_all()?
        };
        Ok(vec![loss])
    }

    fn export(
        &self,
        _params: &std::collections::HashMap<String, Tensor>,
        dir: &std::path::Path,
    ) -> std::io::Result<()> {
        let io = |e: mer_registry::candle::Error| std::io::Error::other(e.to_string());
        let Some((table, _)) = self.table(&Device::Cpu).map_err(io)? else {
            return Ok(());
        };
        let count: Vec<u32> = match self.sums.lock() {
            Ok(g) => g
                .as_ref()
                .map(|s| s.count.iter().map(|&c| c as u32).collect()),
            Err(_) => None,
        }
        .unwrap_or_default();
        std::fs::create_dir_all(dir)?;
        let n = count.len();
        let tensors = std::collections::HashMap::from([
            ("prototypes".to_string(), table),
            (
                "images_per_class".to_string(),
                Tensor::from_vec(count, n, &Device::Cpu).map_err(io)?,
            ),
        ]);
        mer_registry::candle::safetensors::save(&tensors, dir.join("prototypes.safetensors"))
            .map_err(io)
    }
}

fn class_count(
    params: &std::collections::BTreeMap<String, Value>,
    labels: Option<&TensorType>,
) -> Option<usize> {
    match params.get("classes") {
        Some(Value::Int(k)) if *k > 0 => Some(*k as usize),
        _ => match labels.map(|t| &t.semantic) {
            Some(Semantic::ClassIndex { classes }) => *classes,
            _ => None,
        },
    }
}

fn build(ctx: &mut BuildCtx) -> Result<Box<dyn Component>, BuildError> {
    let classes = class_count(ctx.params, ctx.inputs.get(2)).ok_or_else(|| {
        BuildError(format!(
            "`{KIND}`: the labels do not say how many classes; set `classes`"
        ))
    })?;
    Ok(Box::new(Prototype {
        classes,
        subset: ctx.usize("subset")?,
        cosine: ctx.str("distance")? == "cosine",
        sums: Mutex::new(None),
    }))
}

fn shapes(c: &ShapeCtx) -> Result<Vec<TensorType>, ShapeError> {
    let (z, f, y) = (c.input(0)?, c.input(1)?, c.input(2)?);
    if z.rank() != 2 || f.rank() != 2 || y.rank() != 1 {
        return Err(fail(
            c,
            format!("needs features [B, P], frozen features [B, P] and labels [B]; got {z}, {f} and {y}"),
        ));
    }
    if let (Some(a), Some(b)) = (z.dims[1].size(), f.dims[1].size()) {
        if a != b {
            return Err(fail(
                c,
                format!(
                    "`{}` is {a} wide and `{}` {b}: prototypes must live in the features' space",
                    c.source(0),
                    c.source(1)
                ),
            )
            .at_input(1));
        }
    }
    if class_count(c.params, Some(y)).is_none() {
        return Err(fail(
            c,
            format!(
                "`{}` does not say how many classes; set `classes`",
                c.source(2)
            ),
        )
        .at_input(2));
    }
    Ok(crate::scalar())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(subset: usize, cosine: bool) -> Prototype {
        Prototype {
            classes: 2,
            subset,
            cosine,
            sums: Mutex::new(None),
        }
    }

    #[test]
    fn prototypes_are_class_means_of_what_was_fitted_and_subset_keeps_the_first() {
        let dev = Device::Cpu;
        let f = Tensor::new(&[[1f32, 0.], [3., 0.], [0., 2.], [9., 9.]], &dev).unwrap();
        let y = Tensor::new(&[0i64, 0, 1, 0], &dev).unwrap();
        let p = proto(0, false);
        p.fit(&[f.clone(), f.clone(), y.clone()]).unwrap();
        let (t, has) = p.table(&dev).unwrap().unwrap();
        assert_eq!(
            t.to_vec2::<f32>().unwrap(),
            vec![vec![13.0 / 3.0, 3.0], vec![0.0, 2.0]]
        );
        assert_eq!(has, vec![true, true]);
        let q = proto(2, false);
        q.fit(&[f.clone(), f.clone(), y.clone()]).unwrap();
        let (t, _) = q.table(&dev).unwrap().unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap()[0], vec![2.0, 0.0]);
        // L1 to the prototype, averaged over the batch and the dimensions.
        let z = Tensor::new(&[[2f32, 1.], [0., 0.]], &dev).unwrap();
        let yz = Tensor::new(&[0i64, 1], &dev).unwrap();
        let l = q
            .forward(
                &[z.clone(), z.clone(), yz.clone()],
                Mode::Train,
                &mut SeededRng::new(0),
            )
            .unwrap()[0]
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - (0.0 + 1.0 + 0.0 + 2.0) / 4.0).abs() < 1e-6, "{l}");
        let c = proto(2, true);
        c.fit(&[f.clone(), f, y]).unwrap();
        let l = c
            .forward(&[z.clone(), z, yz], Mode::Train, &mut SeededRng::new(0))
            .unwrap()[0]
            .to_scalar::<f32>()
            .unwrap();
        // Sample 0: 1 − cos((2,1), (2,0)); sample 1 is a zero vector: 1 − 0.
        let want = ((1.0 - 2.0 / 5f32.sqrt()) + 1.0) / 2.0;
        assert!((l - want).abs() < 1e-5, "{l} vs {want}");
    }

    #[test]
    fn a_class_without_a_prototype_pulls_nothing_and_a_bad_label_is_an_error() {
        let dev = Device::Cpu;
        let p = proto(0, false);
        let f = Tensor::new(&[[1f32, 0.]], &dev).unwrap();
        p.fit(&[f.clone(), f.clone(), Tensor::new(&[0i64], &dev).unwrap()])
            .unwrap();
        let z = Tensor::new(&[[5f32, 5.]], &dev).unwrap();
        let l = p
            .forward(
                &[z.clone(), z.clone(), Tensor::new(&[1i64], &dev).unwrap()],
                Mode::Train,
                &mut SeededRng::new(0),
            )
            .unwrap()[0]
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(l, 0.0);
        let e = p
            .forward(
                &[z.clone(), z, Tensor::new(&[2i64], &dev).unwrap()],
                Mode::Train,
                &mut SeededRng::new(0),
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("label 2 is not a class index below 2"),
            "{e}"
        );
    }
}
