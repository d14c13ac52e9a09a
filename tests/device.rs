//! Devices and precision from the CPU build (the GPU path itself is checked
//! by `scripts/gpu-check.sh` on a GPU machine): `--device cuda:0` is a clear
//! exit 2, `--device auto` falls back with a line, and `dtype = "bf16"`
//! loads half-precision weights and runs in f32 with a note.

#[path = "common/cli.rs"]
mod cli;

use cli::{mer_at as mer, text};
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    cli::scratch("device", name)
}

/// A seconds-long LLM recipe: generated clips, a linear token into a
/// tiny random LLaMA whose folder holds bf16 safetensors.
fn recipe(dir: &Path, llm: &Path, dtype: &str) -> PathBuf {
    let r = dir.join(format!("half_{dtype}.mer"));
    std::fs::write(
        &r,
        format!(
            r#"mer 0.1
experiment half {{
  seed = 1
  data clips = synth.me {{ subjects = 3, clips_per_subject = 4, frames = 2, size = [8, 8], aus = [1, 2] }}
  model {{
    flat  = nn.flatten(clips.flow)
    token = nn.linear(flat) {{ out = 16 }}
    llm   = llm.causal(prefix = token) {{ weights = "{}", prompt = "AUs:", dtype = "{dtype}" }}
    aus   = nn.linear(llm.last) {{ out = 2 }}
  }}
  loss      = loss.bce(aus, clips.aus)
  optimizer = optim.adam {{ lr = 1e-3 }}
  train     {{ epochs = 1, batch = 4 }}
  protocol  = protocol.loso {{ group = "subject" }}
  metrics   = [metric.f1(aus, clips.aus) {{ average = "macro2" }}]
}}
"#,
            llm.display()
        ),
    )
    .unwrap();
    r
}

fn tiny_bf16(dir: &Path) -> PathBuf {
    let out = dir.join("llm");
    let out_s = out.to_str().unwrap();
    let o = mer(
        &[
            "models", "tiny", "--arch", "llama", "--dtype", "bf16", "--out", out_s,
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("safetensors in bf16"), "{}", text(&o));
    out.join("llama-hf")
}

#[test]
fn the_cpu_build_refuses_cuda_with_how_to_build_it_and_auto_falls_back() {
    let dir = scratch("flags");
    let llm = tiny_bf16(&dir);
    let r = recipe(&dir, &llm, "f32");
    let runs = dir.join("runs");
    let runs = runs.to_str().unwrap();
    let o = mer(
        &[
            "run",
            r.to_str().unwrap(),
            "--runs",
            runs,
            "--device",
            "cuda:0",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("built without CUDA"), "{t}");
    assert!(
        t.contains("scripts/cuda-toolkit.sh") && t.contains("--features cuda"),
        "{t}"
    );
    assert!(!dir.join("runs").exists(), "nothing ran: {t}");
    let o = mer(
        &[
            "run",
            r.to_str().unwrap(),
            "--runs",
            runs,
            "--device",
            "cuda:x",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("expected cuda:N"), "{}", text(&o));
    let o = mer(
        &[
            "run",
            r.to_str().unwrap(),
            "--runs",
            runs,
            "--device",
            "auto",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o)
            .contains("device auto: this build has no CUDA (cargo feature `cuda`); using the CPU"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bf16_recipe_checks_loads_bf16_weights_and_runs_in_f32_on_the_cpu_with_a_note() {
    let dir = scratch("bf16");
    let llm = tiny_bf16(&dir);
    let header = std::fs::read(llm.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
    assert!(String::from_utf8_lossy(&header[8..8 + n]).contains("\"BF16\""));
    let half = recipe(&dir, &llm, "bf16");
    let o = mer(&["check", half.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", text(&o));
    let runs = dir.join("runs");
    let o = mer(
        &[
            "run",
            half.to_str().unwrap(),
            "--runs",
            runs.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("`llm`: dtype = \"bf16\" holds its frozen weights in f32 on the CPU"),
        "{}",
        text(&o)
    );
    // The same numbers as the f32 recipe over the same bf16 file: on the
    // CPU the setting changes nothing but the note.
    let full = recipe(&dir, &llm, "f32");
    let runs32 = dir.join("runs32");
    let o32 = mer(
        &[
            "run",
            full.to_str().unwrap(),
            "--runs",
            runs32.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        &dir,
    );
    assert!(o32.status.success(), "{}", text(&o32));
    assert!(
        !text(&o32).contains("holds its frozen weights"),
        "{}",
        text(&o32)
    );
    // The report's row: `| base | 1 | <recipe hash> | 3 | <f1> |`; the
    // recipe hash differs (the dtype is part of the recipe), the figure not.
    let figure = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("| base"))
            .and_then(|l| l.trim_end_matches('|').rsplit('|').next())
            .map(|f| f.trim().to_string())
            .unwrap_or_else(|| panic!("no report row in:\n{t}"))
    };
    assert_eq!(figure(&text(&o)), figure(&text(&o32)));
    let _ = std::fs::remove_dir_all(dir);
}

/// What the GPU check runs first, on the CPU here: every component kind's
/// gradients through `--all`, and the CUDA refusal of the CPU build.
#[test]
fn gradcheck_all_passes_on_the_cpu_and_refuses_cuda_in_the_cpu_build() {
    let dir = scratch("gradcheck");
    let o = mer(&["plugins", "gradcheck", "--all", "--device", "cpu"], &dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let passed: usize = t
        .lines()
        .find_map(|l| l.strip_suffix(" failed on Cpu"))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{t}"));
    assert!(passed >= 40 && t.contains("0 failed on Cpu"), "{t}");
    assert!(t.contains("ok    nn.conv3d"), "{t}");
    let o = mer(
        &["plugins", "gradcheck", "--all", "--device", "cuda:0"],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("built without CUDA"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);
}

/// `scripts/gpu-check.sh run` on a machine without a GPU: one line, exit 2,
/// before it looks for a bundle.
#[test]
fn the_gpu_check_stops_with_one_line_without_a_gpu() {
    let have_gpu = Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if have_gpu {
        return; // The check itself runs there.
    }
    let o = Command::new("bash")
        .args(["scripts/gpu-check.sh", "run"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert_eq!(t.lines().count(), 1, "{t}");
    assert!(
        t.starts_with("gpu-check: ") && t.contains("nothing to check here"),
        "{t}"
    );
}
