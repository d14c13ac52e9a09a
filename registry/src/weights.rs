//! Pretrained checkpoints on disk, as Hugging Face ships them.
//!
//! A model is a `.safetensors` file, a folder with `model.safetensors`, or a
//! folder whose `model.safetensors.index.json` names several shards. Every
//! component that loads weights (the engine's LLM bodies, plugins' encoders)
//! goes through [`load_safetensors`], so they accept the same layouts and
//! fail with the same messages.

use crate::component::BuildError;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The safetensors files behind `path`: the file itself, a folder's
/// `model.safetensors`, or every shard named by a folder's index file
/// (sorted, each once).
pub fn safetensors_files(path: &Path) -> Result<Vec<PathBuf>, BuildError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(BuildError(format!(
            "weights `{}` do not exist (give a .safetensors file or a Hugging Face model folder)",
            path.display()
        )));
    }
    let single = path.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = path.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| {
        BuildError(format!(
            "`{}` holds neither model.safetensors nor model.safetensors.index.json",
            path.display()
        ))
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BuildError(format!("`{}`: {e}", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| BuildError(format!("`{}` has no `weight_map`", index.display())))?;
    let mut shards: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|s| path.join(s))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Every tensor of the checkpoint at `path` (see [`safetensors_files`]),
/// by name, on `device`, in the dtype it was stored in.
pub fn load_safetensors(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, BuildError> {
    let mut tensors = HashMap::new();
    for f in safetensors_files(path)? {
        let t = candle_core::safetensors::load(&f, device)
            .map_err(|e| BuildError(format!("`{}`: cannot read safetensors: {e}", f.display())))?;
        tensors.extend(t);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_files_folders_and_shards_load_alike() {
        let dir = std::env::temp_dir().join(format!("mer-weights-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sharded")).unwrap();
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2.0], &dev).unwrap();
        let b = Tensor::new(&[3f32], &dev).unwrap();
        let one: HashMap<String, Tensor> =
            [("a".to_string(), a.clone()), ("b".to_string(), b.clone())].into();
        candle_core::safetensors::save(&one, dir.join("model.safetensors")).unwrap();
        candle_core::safetensors::save(
            &HashMap::from([("a".to_string(), a)]),
            dir.join("sharded/part-1.safetensors"),
        )
        .unwrap();
        candle_core::safetensors::save(
            &HashMap::from([("b".to_string(), b)]),
            dir.join("sharded/part-2.safetensors"),
        )
        .unwrap();
        std::fs::write(
            dir.join("sharded/model.safetensors.index.json"),
            r#"{"weight_map": {"a": "part-1.safetensors", "b": "part-2.safetensors"}}"#,
        )
        .unwrap();
        for p in [
            dir.join("model.safetensors"),
            dir.clone(),
            dir.join("sharded"),
        ] {
            let t = load_safetensors(&p, &dev).unwrap();
            assert_eq!(t.len(), 2, "{}", p.display());
            assert_eq!(t["b"].to_vec1::<f32>().unwrap(), vec![3.0]);
        }
        let e = load_safetensors(&dir.join("missing"), &dev).unwrap_err();
        assert!(e.0.contains("do not exist"), "{}", e.0);
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let e = load_safetensors(&dir.join("empty"), &dev).unwrap_err();
        assert!(e.0.contains("neither model.safetensors"), "{}", e.0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
