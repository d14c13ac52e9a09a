"""Pretrain the tiny CLIP that mer's MPA-FER demo and tests prompt-tune.

No package registry ships CLIP weights, and a frozen *random* CLIP carries
no class information at all (a linear probe on its CLS feature stays at
chance on mer's generated faces), so prompt learning on it cannot show
anything. This script trains a tiny CLIPModel contrastively, from scratch,
on faces mer generates itself, with short captions that name each
expression by the demo's class name or a synonym (``happiness``, ``happy``,
``smiling``). The demo then starts, as MPA-FER does on the real CLIP, from
a model whose image and text towers already agree roughly (its zero-shot
accuracy on held-out faces is printed), and its prompts have something
left to learn.

Run from the repository root after ``cargo build --workspace``:

    target/bench-venv/bin/python tests/golden/make_clip_faces.py

Needs torch, transformers, tokenizers, safetensors, numpy and pillow (the
benchmark venv plus ``uv pip install transformers tokenizers safetensors
pillow``). CPU only, no network. Writes ``tests/golden/clip-faces/``
(config.json, model.safetensors, tokenizer.json): about 0.5 MB.

The faces: ``mer data synth --layout rafdb --seed 7`` (16 drawn subjects,
none of them the demo's: the demo's data uses seed 0). Nothing the demo
tests on is seen here.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from tokenizers import Tokenizer
from transformers import CLIPConfig, CLIPModel

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "clip-faces"
MER = ROOT / "target" / "debug" / "mer"

# RAF-DB's codes 1..7, and the words the captions use for each.
RAFDB = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
WORDS = {
    "surprise": ["surprise", "surprised", "astonished"],
    "fear": ["fear", "scared", "afraid"],
    "disgust": ["disgust", "disgusted", "repulsed"],
    "happiness": ["happiness", "happy", "smiling"],
    "sadness": ["sadness", "sad", "unhappy"],
    "anger": ["anger", "angry", "furious"],
    "neutral": ["neutral", "calm", "expressionless"],
}
# The first two are CLIP's and CoOp's layouts (CoOp's learnt context
# stands where "a photo of a" is, before the name and a full stop).
TEMPLATES = [
    "a photo of a {}.",
    "a photo of a {} face.",
    "a {} person.",
    "someone who looks {}.",
    "a close-up of a {} face.",
]
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
STEPS, BATCH, LR = 1500, 64, 2e-3


def run(*args: str) -> None:
    subprocess.run([str(MER), *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def load_faces(root: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for line in (root / "basic/EmoLabel/list_patition_label.txt").read_text().splitlines():
        name, code = line.split()
        stem = name.rsplit(".", 1)[0]
        img = Image.open(root / f"basic/Image/aligned/{stem}_aligned.jpg").convert("RGB")
        images.append(np.asarray(img, dtype=np.float32) / 255.0)
        labels.append(int(code) - 1)
    x = (np.stack(images) - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.tensor(labels)


def encode(tok: Tokenizer, texts: list[str], eot: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [tok.encode(t).ids for t in texts]
    n = max(len(i) for i in ids)
    pad = [i + [eot] * (n - len(i)) for i in ids]
    mask = [[1] * len(i) + [0] * (n - len(i)) for i in ids]
    return torch.tensor(pad), torch.tensor(mask)


def zero_shot(model: CLIPModel, tok: Tokenizer, eot: int, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy with the demo's class names in a template seen in training."""
    model.eval()
    with torch.no_grad():
        ids, mask = encode(tok, [f"a photo of a {c}." for c in RAFDB], eot)
        out = model(input_ids=ids, attention_mask=mask, pixel_values=x)
        acc = (out.logits_per_image.argmax(1) == y).float().mean().item()
    model.train()
    return acc


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run("models", "tiny", "--arch", "clip", "--image", "64", "--hidden", "64", "--layers", "3", "--out", str(tmp))
        run("data", "synth", "--layout", "rafdb", "--out", str(tmp / "faces"), "--subjects", "16",
            "--clips-per-subject", "40", "--size", "64", "--intensity", "1.0", "--seed", "7")
        tiny = tmp / "clip-tiny"
        config = json.loads((tiny / "config.json").read_text())
        tok = Tokenizer.from_file(str(tiny / "tokenizer.json"))
        x, y = load_faces(tmp / "faces")
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny / "tokenizer.json", OUT / "tokenizer.json")
    eot = config["text_config"]["eos_token_id"]
    model = CLIPModel(CLIPConfig(**config))
    # Hold out 20% to watch generalisation (printed, not used to select).
    order = torch.randperm(len(y))
    held = order[: len(y) // 5]
    train = order[len(y) // 5 :]
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    for step in range(STEPS):
        idx = train[torch.randint(len(train), (BATCH,))]
        img = x[idx]
        flip = torch.rand(BATCH) < 0.5
        img[flip] = img[flip].flip(-1)
        labels = y[idx]
        caps = [
            TEMPLATES[rng.integers(len(TEMPLATES))].format(WORDS[RAFDB[c]][rng.integers(3)])
            for c in labels.tolist()
        ]
        ids, mask = encode(tok, caps, eot)
        out = model(input_ids=ids, attention_mask=mask, pixel_values=img)
        # Every caption of the same class is a positive (7 classes in a
        # batch of 64: plain CLIP would push most positives apart).
        pos = (labels[:, None] == labels[None, :]).float()
        pos = pos / pos.sum(1, keepdim=True)
        li = -(out.logits_per_image.log_softmax(1) * pos).sum(1).mean()
        lt = -(out.logits_per_text.log_softmax(1) * pos).sum(1).mean()
        loss = (li + lt) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == STEPS - 1:
            acc = zero_shot(model, tok, eot, x[held], y[held])
            print(f"step {step}: loss {loss.item():.3f}, zero-shot on held-out faces {acc:.3f}", flush=True)
    model.save_pretrained(OUT, safe_serialization=True)
    print(
        f"wrote {OUT} (python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
