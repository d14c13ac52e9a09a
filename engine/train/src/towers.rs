//! The frozen-CLIP baseline every prompt-learning paper starts from, without
//! a recipe: zero-shot class probabilities for one image, and the projected
//! embedding of an image or a text (what transformers' `get_image_features`
//! and `get_text_features` return). `mer models zero-shot` and `mer models
//! embed` print these.

use mer_nn::vision::{unit, TextTower, VisionTower};
use mer_registry::candle::{Device, Tensor};
use std::path::Path;

/// What to embed.
pub enum Input<'a> {
    /// An image file (PNG, JPEG, BMP).
    Image(&'a Path),
    /// A text, tokenized with the folder's tokenizer.json.
    Text(&'a str),
}

fn tower(weights: &Path, device: &Device) -> Result<VisionTower, String> {
    VisionTower::open(weights, device).map_err(|e| e.0)
}

fn pixels(tower: &VisionTower, image: &Path, device: &Device) -> Result<Tensor, String> {
    let side = tower.image_size;
    let px = mer_data::tower_pixels(image, side)?;
    Tensor::from_vec(px, (1, 3, side, side), device).map_err(|e| e.to_string())
}

/// The projected, un-normalised embedding of `input` (CLIP: after the
/// visual or text projection; SigLIP images: the pooled embedding).
pub fn embed(weights: &Path, input: Input, device: &Device) -> Result<Vec<f32>, String> {
    let e = |e: mer_registry::candle::Error| e.to_string();
    let t = match input {
        Input::Image(path) => {
            let v = tower(weights, device)?;
            v.forward(&pixels(&v, path, device)?).map_err(e)?.embeds
        }
        Input::Text(text) => {
            let t = TextTower::load(weights, device).map_err(|e| e.0)?;
            let tok =
                mer_nn::vision::tokenizer::ClipTokenizer::from_folder(weights).map_err(|e| e.0)?;
            let ids = tok.encode(text).map_err(|e| e.0)?;
            t.forward(&[ids], None).map_err(e)?.embeds
        }
    };
    t.flatten_all().and_then(|t| t.to_vec1()).map_err(e)
}

/// Each class's probability for `image`: softmax over `scale · cos(image,
/// template(class))`, with the checkpoint's own logit scale.
pub fn zero_shot(
    weights: &Path,
    image: &Path,
    classes: &[String],
    template: &str,
    device: &Device,
) -> Result<Vec<(String, f32)>, String> {
    if classes.is_empty() {
        return Err("no classes: give --classes happy,sad,…".into());
    }
    if !template.contains("{}") {
        return Err(format!(
            "template `{template}` has no `{{}}` for the class name"
        ));
    }
    let e = |e: mer_registry::candle::Error| e.to_string();
    let v = tower(weights, device)?;
    let img = v.forward(&pixels(&v, image, device)?).map_err(e)?.embeds;
    let t = TextTower::load(weights, device)
        .map_err(|e| format!("{} (zero-shot needs a CLIP folder with both towers)", e.0))?;
    let tok = mer_nn::vision::tokenizer::ClipTokenizer::from_folder(weights).map_err(|e| e.0)?;
    let ids = classes
        .iter()
        .map(|c| tok.encode(&template.replace("{}", c)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.0)?;
    let txt = t.forward(&ids, None).map_err(e)?.embeds;
    let scale = mer_nn::vision::logit_scale(weights).unwrap_or(100.0);
    let logits = (unit(&img)
        .map_err(e)?
        .matmul(&unit(&txt).map_err(e)?.t().map_err(e)?)
        .map_err(e)?
        * scale)
        .map_err(e)?;
    let probs = mer_registry::layers::softmax(&logits).map_err(e)?;
    let p: Vec<f32> = probs.flatten_all().and_then(|t| t.to_vec1()).map_err(e)?;
    Ok(classes.iter().cloned().zip(p).collect())
}
