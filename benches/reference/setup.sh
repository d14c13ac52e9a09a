#!/usr/bin/env bash
# A Python with PyTorch for the benchmark's side-by-side reference
# (benches/reference/train_step.py), in target/bench-venv. Benchmarking
# only: CI never runs this. torch 2.15.0 from PyPI is the CUDA build
# (about 5 GB with its nvidia-* wheels); it runs on the CPU here.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/bench-venv
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet uv==0.13.9
"$venv/bin/uv" pip install --python "$venv/bin/python" --quiet -r benches/reference/requirements.txt
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'
