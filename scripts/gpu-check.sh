#!/usr/bin/env bash
# One prepared check of the CUDA build on a GPU machine.
#
#   scripts/gpu-check.sh bundle   # here, no GPU needed: builds the CUDA
#                                 # release (scripts/cuda-toolkit.sh) and packs
#                                 # target/gpu-check.tar.gz (< 64 MiB)
#   scripts/gpu-check.sh run      # on the GPU machine, from the unpacked
#                                 # bundle (or a checkout holding one)
#
# `run` checks, on cuda:0:
#   1. the gradients of every component kind (`mer plugins gradcheck --all`),
#      with the fused ops and again with their composed forms
#      (MER_COMPOSED_OPS=1): fused-vs-composed parity, gradients included;
#   2. a short AU-LLM demo run (recipes/au_llm/demo.mer on a tiny random
#      LLM at SmolLM2's width, fold 1, 2 epochs) on the GPU and on the CPU:
#      the per-epoch training losses agree within 1e-3 relative;
#   3. the train-step benchmark on the GPU beside PyTorch's CUDA eager
#      (the machine's own torch: MER_TORCH_PYTHON, default
#      /opt/torch/.venv/bin/python), printed as one table.
# The GPU machine needs no Rust, no network and no CUDA toolkit: the CUDA
# libraries come from its torch's nvidia-* wheels, the driver from the
# machine. Without a GPU `run` stops with one line and exit 2.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

bundle() {
  cd "$here/.."
  eval "$(scripts/cuda-toolkit.sh)"
  export CARGO_TARGET_DIR="$PWD/target/cuda"
  cargo build --release --workspace --features cuda
  bench="$(cargo bench --bench train_step --features cuda --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "train_step" and m.get("executable"):
        print(m["executable"])')"
  [ -x "$bench" ] || { echo "gpu-check: the train_step bench did not build" >&2; exit 1; }
  out="$PWD/target/gpu-check"
  rm -rf "$out" && mkdir -p "$out/bin" "$out/scripts" "$out/recipes/au_llm" "$out/recipes/demo" "$out/benches/reference"
  cp target/cuda/release/mer "$out/bin/"
  cp "$bench" "$out/bin/train_step"
  cp target/cuda/release/libmer_registry.so target/cuda/release/libmer_plugin_*.so "$out/bin/"
  # The binaries link Rust's std dynamically; the GPU machine has no Rust.
  cp "$(rustc --print sysroot)"/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-*.so "$out/bin/"
  cp scripts/gpu-check.sh "$out/scripts/"
  cp recipes/au_llm/demo.mer "$out/recipes/au_llm/"
  cp recipes/demo/synth_me_3dcnn.mer "$out/recipes/demo/"
  cp -r benches/recipes "$out/benches/"
  cp benches/reference/train_step.py "$out/benches/reference/"
  tar -C "$out" -czf target/gpu-check.tar.gz .
  echo "gpu-check: target/gpu-check.tar.gz ($(du -m target/gpu-check.tar.gz | cut -f1) MiB, compute capability ${CUDA_COMPUTE_CAP})"
  echo "on the GPU machine: mkdir g && tar -C g -xzf gpu-check.tar.gz && g/scripts/gpu-check.sh run"
}

no_gpu() {
  echo "gpu-check: $1; nothing to check here (run it on a machine with an NVIDIA GPU and driver)"
  exit 2
}

run() {
  # One clear line, before anything else, where there is no GPU.
  command -v nvidia-smi > /dev/null 2>&1 || no_gpu "no nvidia-smi"
  gpus="$(nvidia-smi -L 2>/dev/null || true)"
  [ -n "$gpus" ] || no_gpu "nvidia-smi sees no GPU"
  ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1' || [ -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 ] \
    || no_gpu "no NVIDIA driver library (libcuda.so.1)"
  root="$(cd "$here/.." && pwd)"
  [ -x "$root/bin/mer" ] || root="$root/target/gpu-check"
  [ -x "$root/bin/mer" ] || { echo "gpu-check: no bundle; build it with scripts/gpu-check.sh bundle"; exit 1; }
  cd "$root"
  py="${MER_TORCH_PYTHON:-/opt/torch/.venv/bin/python}"
  [ -x "$py" ] || py="$(command -v python3)"
  # CUDA 13 libraries from the torch wheels (libcudart, cublas, curand, nvrtc).
  cuda_libs="$("$py" - <<'EOF' 2>/dev/null || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
print(":".join(sorted(d for r in roots for d in glob.glob(os.path.join(r, "*", "lib")) + glob.glob(os.path.join(r, "*", "*", "lib")))))
EOF
)"
  export LD_LIBRARY_PATH="$root/bin${cuda_libs:+:$cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export MER_PLUGIN_PATH="$root/bin"
  echo "== $gpus"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  declare -a rows
  status=0

  echo "== 1. gradients of every kind on cuda:0 (fused ops, then composed)"
  if bin/mer plugins gradcheck --all --device cuda:0; then rows+=("gradcheck, fused ops | ok"); else rows+=("gradcheck, fused ops | FAILED"); status=1; fi
  if MER_COMPOSED_OPS=1 bin/mer plugins gradcheck --all --device cuda:0; then rows+=("gradcheck, composed ops | ok"); else rows+=("gradcheck, composed ops | FAILED"); status=1; fi

  echo "== 2. AU-LLM demo (tiny LLM at SmolLM2's width), fold 1, 2 epochs: GPU vs CPU"
  work="$(mktemp -d)"
  bin/mer models tiny --arch llama --hidden 576 --out "$work/llm" > /dev/null
  for dev in cpu cuda:0; do
    SMOLLM2_GGUF="$work/llm/llama.gguf" bin/mer run recipes/au_llm/demo.mer --variant base --folds 1 \
      --set train.epochs=2 --set llm.layers=2 --offline --no-mlflow --device "$dev" \
      --runs "$work/runs-${dev%%:*}" > "$work/${dev%%:*}.log" 2>&1 || { cat "$work/${dev%%:*}.log"; status=1; }
  done
  if verdict="$("$py" - "$work" <<'EOF'
import glob, json, sys
w = sys.argv[1]
def losses(d):
    files = sorted(glob.glob(f"{w}/runs-{d}/**/epochs.json", recursive=True))
    return [e["train_loss"] for f in files for e in json.load(open(f))]
c, g = losses("cpu"), losses("cuda")
if not c or len(c) != len(g):
    print(f"no comparable epochs (cpu {len(c)}, gpu {len(g)})"); sys.exit(1)
rel = max(abs(a - b) / max(1e-12, abs(a)) for a, b in zip(c, g))
print(f"train loss per epoch cpu {', '.join(f'{x:.6f}' for x in c)} | gpu {', '.join(f'{x:.6f}' for x in g)} | max rel. diff {rel:.1e} (tolerance 1e-3)")
sys.exit(0 if rel <= 1e-3 else 1)
EOF
)"; then rows+=("demo GPU vs CPU | ok: $verdict"); else rows+=("demo GPU vs CPU | FAILED: $verdict"); status=1; fi
  echo "$verdict"

  echo "== 3. train-step benchmark on cuda:0 beside PyTorch CUDA eager"
  MER_BENCH_DEVICE=cuda:0 MER_BENCH_PYTHON="$py" bin/train_step | tee "$work/bench.txt" || status=1

  echo
  echo "== gpu-check summary ($gpus)"
  for r in "${rows[@]}"; do echo "| $r |"; done
  sed -n '/^| step/,$p' "$work/bench.txt"
  rm -rf "$work"
  exit "$status"
}

case "${1:-run}" in
  bundle) bundle ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh [bundle|run]" >&2; exit 64 ;;
esac
