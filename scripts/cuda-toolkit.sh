#!/usr/bin/env bash
# Installs the CUDA toolkit that `--features cuda` needs from PyPI's NVIDIA
# wheels into target/cuda-venv, with no GPU and no system CUDA, and prints the
# environment to build with:
#
#   eval "$(scripts/cuda-toolkit.sh)"
#   cargo build --release --workspace --features cuda
#
# Why each piece (shared/research/cuda-from-pypi.md):
# - The wheels are pinned to CUDA 13.0.x because the GPU machines we check on
#   run driver 580 (CUDA 13.0): PTX from a newer nvcc may not load there.
#   MER_CUDA_PINS overrides the whole pin list for other drivers.
# - No GPU is queried at build time: the compute capability comes from
#   CUDA_COMPUTE_CAP (default 90, the H100/H200; 80 for an A100, 89 for an L4).
# - The wheels ship libraries only under versioned names and no driver stub;
#   the linker wants plain names and a `libcuda.so` (candle links cudarc's
#   driver API dynamically), so target/cuda-venv/link holds plain-name links
#   and a stub whose SONAME is libcuda.so.1. The stub is for linking only: a
#   CUDA build runs only where the NVIDIA driver's own libcuda.so.1 is found.
#
# Everything it writes goes to stderr except the `export` lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${MER_CUDA_VENV:-$PWD/target/cuda-venv}"
CAP="${CUDA_COMPUTE_CAP:-90}"
PINS="${MER_CUDA_PINS:-nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35}"
log() { echo "cuda-toolkit: $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV" >&2
fi
# The stamp records the pins so that a change of pins reinstalls.
STAMP="$VENV/.mer-pins"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$PINS" ]; then
  log "installing $PINS"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check uv==0.13.9 >&2
  # shellcheck disable=SC2086
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" $PINS >&2
  echo "$PINS" > "$STAMP"
fi

CUDA="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[ -x "$CUDA/bin/nvcc" ] || { log "no nvcc under $CUDA: the nvidia-cuda-nvcc wheel did not install"; exit 1; }

LINK="$VENV/link"
mkdir -p "$LINK"
for lib in cudart cublas cublasLt curand nvrtc; do
  real="$(find "$CUDA/lib" -maxdepth 1 -name "lib$lib.so.*" | sort | head -1)"
  [ -n "$real" ] || { log "lib$lib.so.* missing under $CUDA/lib"; exit 1; }
  ln -sf "$real" "$LINK/lib$lib.so"
done

# The driver stub: one empty function per driver-API name that the driver
# headers (cuda.h, cudaProfiler.h, …) declare or map a versioned alias to
# (cuCtxCreate -> cuCtxCreate_v2), a superset of what cudarc's bindings
# reference. Never loaded at run time.
if [ ! -f "$LINK/libcuda.so" ] || [ "$CUDA/include/cuda.h" -nt "$LINK/libcuda.so" ] || [ "$0" -nt "$LINK/libcuda.so" ]; then
  # Names that only survive as `PFN_<name>_v<version>` typedefs (such as
  # cuProfilerInitialize in 13.0) are still referenced by cudarc.
  { cat "$CUDA"/include/cuda*.h | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\b'
    cat "$CUDA"/include/cuda*.h | grep -oE '\bPFN_cu[A-Z][A-Za-z0-9_]*_v[0-9]+\b' | sed -E 's/^PFN_//; s/_v[0-9]+$//'
  } | sort -u \
    | awk '{ print "void " $1 "(void) {}" }' > "$LINK/cuda-stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so" "$LINK/cuda-stub.c"
  log "driver stub: $(wc -l < "$LINK/cuda-stub.c") symbols in $LINK/libcuda.so (link time only)"
fi

NVCC_VERSION="$("$CUDA/bin/nvcc" --version | grep -oE 'release [0-9]+\.[0-9]+' | cut -d' ' -f2)"
log "nvcc $NVCC_VERSION, compute capability $CAP"
cat <<EOF
export CUDA_HOME="$CUDA"
export CUDA_PATH="$CUDA"
export CUDA_ROOT="$CUDA"
export CUDA_COMPUTE_CAP="$CAP"
export PATH="$CUDA/bin:\$PATH"
export LIBRARY_PATH="$LINK\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
EOF
