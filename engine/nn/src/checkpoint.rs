//! Named tensors on disk (safetensors), written atomically through the run
//! store's temporary names: checkpoints, trained weights and adapters.

use mer_registry::candle::{self, Device, Tensor};
use mer_store::tmp_name;
use std::collections::HashMap;
use std::path::Path;

/// Saves named tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    candle::safetensors::save(tensors, &tmp).map_err(std::io::Error::other)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads named tensors from safetensors onto `device`.
pub fn load_tensors(path: &Path, device: &Device) -> std::io::Result<HashMap<String, Tensor>> {
    candle::safetensors::load(path, device)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
}
