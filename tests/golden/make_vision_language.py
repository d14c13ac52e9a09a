"""Generate the CLIP / SigLIP golden fixtures used by mer's Rust tests.

Run from the repository root:

    target/bench-venv/bin/python tests/golden/make_vision_language.py

Needs torch, transformers, tokenizers and safetensors (CPU only; no network,
nothing is downloaded from the Hugging Face hub: every model is random and
tiny, the tokenizer is trained offline on a built-in corpus).

The committed files were produced with:
    python 3.11, torch 2.15.0 (CPU), transformers 5.25.0, tokenizers 0.23.3,
    safetensors 0.8.0.

Writes (all under tests/golden/):
    clip-tiny/config.json, clip-tiny/model.safetensors   random tiny CLIPModel
    clip-tiny/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
        CLIP byte-level BPE, same pipeline as openai/clip-vit-base-patch32
    siglip-tiny/config.json, siglip-tiny/model.safetensors
        random tiny SiglipVisionModel with the MAP attention-pooling head
    vision_language.safetensors   inputs + reference outputs (see NOTES.md)

Besides the transformers outputs, the script re-implements both forwards with
plain torch ops straight from the saved safetensors (`manual_*` below) and
asserts they agree: that is the executable form of NOTES.md.

Determinism: every random draw uses a fixed seed and a single CPU thread.
Re-running on another CPU / BLAS may change the last float bits only.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
from pathlib import Path

import safetensors
import tokenizers
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast, SiglipVisionConfig, SiglipVisionModel

HERE = Path(__file__).resolve().parent
CLIP_DIR = HERE / "clip-tiny"
SIGLIP_DIR = HERE / "siglip-tiny"
GOLDEN = HERE / "vision_language.safetensors"

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# CLIP's pre-tokenizer regex, exactly as in openai/clip-vit-base-patch32 tokenizer.json.
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
MAX_POS = 16

CLASSES = ["happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral", "contempt"]
CORPUS = [
    "a photo of a happy face",
    "a photo of a sad face",
    "a photo of an angry face",
    "a photo of a surprised face",
    "a photo of a fearful face",
    "a photo of a disgusted face",
    "a photo of a neutral face",
    "a photo of a face showing contempt",
    "a close-up photo of a happy person smiling",
    "a close-up photo of a sad person crying",
    "an angry face with a frown",
    "a surprised face with raised brows",
    "a fearful face with wide eyes",
    "a disgusted face with a wrinkled nose",
    "a neutral face with relaxed muscles",
    "a face showing contempt with a smirk",
    "the person looks happy",
    "the person looks sad",
    "the person looks angry",
    "the person looks surprised",
    "the person looks fearful",
    "the person looks disgusted",
    "the person looks neutral",
    "the person shows contempt",
    "a black and white photo of a happy face",
    "a cropped photo of a sad face",
    "a blurry photo of an angry face",
    "a bright photo of a surprised face",
    "a dark photo of a fearful face",
    "a low resolution photo of a disgusted face",
    "a good photo of a neutral face",
    "a photo of the face of a person showing contempt",
    "this is a happy expression",
    "this is a sad expression",
    "this is an angry expression",
    "this is a surprised expression",
    "this is a fearful expression",
    "this is a disgusted expression",
    "this is a neutral expression",
    "this is an expression of contempt",
    "it's a facial expression of emotion",
    "they're smiling, he's frowning and she's crying!",
] + CLASSES
# Texts fed to the CLIP text tower (padded batch, right padding with <|endoftext|>).
TEXTS = ["a photo of a happy face", "sad", "a surprised face with raised brows"]

ATOL = 1e-5


# ---------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP / GPT-2 byte -> printable unicode map (same order as simple_tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_normalizer():
    return normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])


def clip_pre_tokenizer():
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


def build_tokenizer() -> Tokenizer:
    # 1. learn merges with the tokenizers BPE trainer on the built-in corpus
    trainer_tok = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    trainer_tok.normalizer = clip_normalizer()
    trainer_tok.pre_tokenizer = clip_pre_tokenizer()
    trainer = BpeTrainer(
        vocab_size=400,
        min_frequency=1,
        show_progress=False,
        special_tokens=[],
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
    )
    trainer_tok.train_from_iterator(CORPUS, trainer=trainer)
    merges = json.loads(trainer_tok.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, (list, tuple)) else tuple(m.split(" ")) for m in merges]

    # 2. lay the vocab out exactly like OpenAI CLIP: 256 byte symbols, the same 256 + "</w>",
    #    one token per merge (in merge order), then <|startoftext|>, <|endoftext|> last.
    byte_syms = list(bytes_to_unicode().values())
    tokens = byte_syms + [s + "</w>" for s in byte_syms] + ["".join(m) for m in merges] + [BOS, EOS]
    assert len(set(tokens)) == len(tokens), "duplicate token in CLIP-style vocab"
    vocab = {t: i for i, t in enumerate(tokens)}

    tok = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=EOS,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
        )
    )
    tok.normalizer = clip_normalizer()
    tok.pre_tokenizer = clip_pre_tokenizer()
    tok.post_processor = processors.RobertaProcessing(
        (EOS, vocab[EOS]), (BOS, vocab[BOS]), trim_offsets=False, add_prefix_space=False
    )
    # ByteLevel bytes -> text, then "</w>" (end of word) -> " ", then drop the trailing space.
    tok.decoder = decoders.Sequence(
        [decoders.ByteLevel(), decoders.Replace("</w>", " "), decoders.Strip(content=" ", left=0, right=1)]
    )
    tok.add_special_tokens(
        [
            AddedToken(BOS, single_word=False, lstrip=False, rstrip=False, normalized=True, special=True),
            AddedToken(EOS, single_word=False, lstrip=False, rstrip=False, normalized=True, special=True),
        ]
    )
    return tok


def write_tokenizer(tok: Tokenizer, folder: Path) -> None:
    tok.save(str(folder / "tokenizer.json"), pretty=True)
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_POS,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def check_tokenizer(folder: Path) -> CLIPTokenizerFast:
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = CLIPTokenizerFast.from_pretrained(str(folder))
    probes = TEXTS + [
        "A  Photo\tof a HAPPY face!!",
        "they're smiling; it's 2024...",
        "zebra quokka xylophone",
        "café naïve",
        "<|startoftext|>sad<|endoftext|>",
    ]
    for s in probes:
        a = raw.encode(s).ids
        b = hf(s, verbose=False)["input_ids"]
        assert a == b, f"tokenizer.json and CLIPTokenizerFast disagree on {s!r}: {a} vs {b}"
    for s in TEXTS:
        ids = raw.encode(s).ids
        assert raw.decode(ids) == s, (raw.decode(ids), s)
        assert hf.decode(ids, skip_special_tokens=True) == s
    return hf


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------
def perturb_(model: nn.Module, seed: int) -> None:
    """transformers initialises biases to 0 and LayerNorm to (1, 0); make them random so a
    Rust port that drops a bias or swaps gamma/beta cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):  # includes nn.MultiheadAttention.in_proj_bias
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        for _, m in model.named_modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))


def save_model(model, folder: Path) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


def seq(x):
    return [t.contiguous() for t in x]


# ---------------------------------------------------------------------------
# plain-torch re-implementation from the safetensors (spec self-check)
# ---------------------------------------------------------------------------
def lin(x, w, pre, bias=True):
    y = x @ w[pre + ".weight"].T
    return y + w[pre + ".bias"] if bias else y


def ln(x, w, pre, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mu) / torch.sqrt(var + eps) * w[pre + ".weight"] + w[pre + ".bias"]


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def mha(x, w, pre, heads, add_mask=None):
    b, t, d = x.shape
    hd = d // heads
    q = lin(x, w, pre + ".q_proj").view(b, t, heads, hd).transpose(1, 2)
    k = lin(x, w, pre + ".k_proj").view(b, t, heads, hd).transpose(1, 2)
    v = lin(x, w, pre + ".v_proj").view(b, t, heads, hd).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) * hd**-0.5
    if add_mask is not None:
        s = s + add_mask
    o = torch.softmax(s, -1) @ v
    return lin(o.transpose(1, 2).reshape(b, t, d), w, pre + ".out_proj")


def encoder(x, w, pre, layers, heads, eps, act, add_mask=None):
    hs = [x]
    for i in range(layers):
        p = f"{pre}.layers.{i}"
        x = x + mha(ln(x, w, p + ".layer_norm1", eps), w, p + ".self_attn", heads, add_mask)
        h = ln(x, w, p + ".layer_norm2", eps)
        x = x + lin(act(lin(h, w, p + ".mlp.fc1")), w, p + ".mlp.fc2")
        hs.append(x)
    return hs


def manual_clip(w, cfg, pixel_values, input_ids, attention_mask):
    vc, tc = cfg["vision_config"], cfg["text_config"]
    # vision
    pre = "vision_model"
    pe = torch.nn.functional.conv2d(pixel_values, w[pre + ".embeddings.patch_embedding.weight"], stride=vc["patch_size"])
    pe = pe.flatten(2).transpose(1, 2)  # [B, N, D], patches row-major
    cls = w[pre + ".embeddings.class_embedding"].expand(pe.shape[0], 1, -1)
    x = torch.cat([cls, pe], 1) + w[pre + ".embeddings.position_embedding.weight"][None]
    x = ln(x, w, pre + ".pre_layrnorm", vc["layer_norm_eps"])
    vhs = encoder(x, w, pre + ".encoder", vc["num_hidden_layers"], vc["num_attention_heads"], vc["layer_norm_eps"], quick_gelu)
    vpool = ln(vhs[-1][:, 0], w, pre + ".post_layernorm", vc["layer_norm_eps"])
    img = vpool @ w["visual_projection.weight"].T
    # text
    pre = "text_model"
    b, t = input_ids.shape
    x = w[pre + ".embeddings.token_embedding.weight"][input_ids] + w[pre + ".embeddings.position_embedding.weight"][:t][None]
    allowed = torch.tril(torch.ones(t, t, dtype=torch.bool))[None] & attention_mask.bool()[:, None, :]  # [B, q, k]
    add = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[:, None]  # [B, 1, q, k]
    ths = encoder(x, w, pre + ".encoder", tc["num_hidden_layers"], tc["num_attention_heads"], tc["layer_norm_eps"], quick_gelu, add)
    tlast = ln(ths[-1], w, pre + ".final_layer_norm", tc["layer_norm_eps"])
    eos_pos = (input_ids == tc["eos_token_id"]).int().argmax(-1)  # FIRST eos in each row
    tpool = tlast[torch.arange(b), eos_pos]
    txt = tpool @ w["text_projection.weight"].T
    # contrastive logits
    i_n = img / img.norm(dim=-1, keepdim=True)
    t_n = txt / txt.norm(dim=-1, keepdim=True)
    logits_per_image = w["logit_scale"].exp() * i_n @ t_n.T
    return dict(vhs=vhs, vlast=vhs[-1], vpool=vpool, img=img, ths=ths, tlast=tlast, tpool=tpool, txt=txt, lpi=logits_per_image)


def manual_siglip(w, cfg, pixel_values):
    # transformers 5.25 SiglipVisionModel.save_pretrained writes names WITHOUT a "vision_model." prefix
    # (SiglipModel / google/siglip-* checkpoints have it); accept both.
    w = {k if k.startswith("vision_model.") else "vision_model." + k: v for k, v in w.items()}
    pre = "vision_model"
    pe = torch.nn.functional.conv2d(
        pixel_values,
        w[pre + ".embeddings.patch_embedding.weight"],
        w[pre + ".embeddings.patch_embedding.bias"],
        stride=cfg["patch_size"],
    )
    x = pe.flatten(2).transpose(1, 2) + w[pre + ".embeddings.position_embedding.weight"][None]
    eps = cfg["layer_norm_eps"]
    hs = encoder(x, w, pre + ".encoder", cfg["num_hidden_layers"], cfg["num_attention_heads"], eps, gelu_tanh)
    last = ln(hs[-1], w, pre + ".post_layernorm", eps)
    # MAP head: nn.MultiheadAttention(probe, last, last), in_proj rows = [q; k; v]
    d, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // heads
    b, n, _ = last.shape
    ipw, ipb = w[pre + ".head.attention.in_proj_weight"], w[pre + ".head.attention.in_proj_bias"]
    probe = w[pre + ".head.probe"].expand(b, 1, d)
    q = (probe @ ipw[:d].T + ipb[:d]).view(b, 1, heads, hd).transpose(1, 2)
    k = (last @ ipw[d : 2 * d].T + ipb[d : 2 * d]).view(b, n, heads, hd).transpose(1, 2)
    v = (last @ ipw[2 * d :].T + ipb[2 * d :]).view(b, n, heads, hd).transpose(1, 2)
    o = torch.softmax((q @ k.transpose(-1, -2)) * hd**-0.5, -1) @ v
    o = lin(o.transpose(1, 2).reshape(b, 1, d), w, pre + ".head.attention.out_proj")
    h = o + lin(gelu_tanh(lin(ln(o, w, pre + ".head.layernorm", eps), w, pre + ".head.mlp.fc1")), w, pre + ".head.mlp.fc2")
    return dict(hs=hs, last=last, pool=h[:, 0])


ERRS: dict[str, float] = {}


def close(name, a, b, atol=ATOL):
    err = (a - b).abs().max().item()
    assert err <= atol, f"{name}: max abs diff {err}"
    ERRS[name] = err
    return err


# ---------------------------------------------------------------------------
def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for d in (CLIP_DIR, SIGLIP_DIR):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    # ---- tokenizer -------------------------------------------------------
    tok = build_tokenizer()
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    assert eos_id == vocab_size - 1 and bos_id == vocab_size - 2

    # ---- CLIP ------------------------------------------------------------
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16)
    config = CLIPConfig(
        text_config=dict(common, vocab_size=vocab_size, max_position_embeddings=MAX_POS,
                         bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id),
        vision_config=dict(common, num_channels=3, image_size=32, patch_size=8),
        projection_dim=16,
        logit_scale_init_value=2.6592,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    perturb_(model, seed=100)
    save_model(model, CLIP_DIR)
    write_tokenizer(tok, CLIP_DIR)  # after save_pretrained so nothing overwrites tokenizer.json
    hf_tok = check_tokenizer(CLIP_DIR)

    model = CLIPModel.from_pretrained(str(CLIP_DIR), attn_implementation="eager").eval()
    assert model.text_model.eos_token_id == eos_id != 2  # -> "first eos_token_id" pooling path

    enc = hf_tok(TEXTS, padding=True, return_tensors="pt")
    input_ids, attention_mask = enc["input_ids"].long(), enc["attention_mask"].long()
    clip_px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1234))

    with torch.no_grad():
        vout = model.vision_model(pixel_values=clip_px, output_hidden_states=True)
        tout = model.text_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        img_feat = model.get_image_features(pixel_values=clip_px)
        txt_feat = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        full = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=clip_px)
    # transformers 5.x: get_*_features return a BaseModelOutputWithPooling whose pooler_output is
    # the projected (un-normalised) embedding; 4.x returned the tensor directly.
    image_embeds = img_feat if torch.is_tensor(img_feat) else img_feat.pooler_output
    text_embeds = txt_feat if torch.is_tensor(txt_feat) else txt_feat.pooler_output
    assert len(vout.hidden_states) == 3 and len(tout.hidden_states) == 3
    # CLIPModel.forward normalises (image_embeds / text_embeds in CLIPOutput are unit-norm)
    close("clip normalised image_embeds", full.image_embeds, image_embeds / image_embeds.norm(dim=-1, keepdim=True))
    close("clip normalised text_embeds", full.text_embeds, text_embeds / text_embeds.norm(dim=-1, keepdim=True))

    # sdpa must agree with eager
    model_sdpa = CLIPModel.from_pretrained(str(CLIP_DIR), attn_implementation="sdpa").eval()
    with torch.no_grad():
        full_sdpa = model_sdpa(input_ids=input_ids, attention_mask=attention_mask, pixel_values=clip_px)
    close("clip eager vs sdpa", full.logits_per_image, full_sdpa.logits_per_image, 1e-4)

    # spec self-check against the raw safetensors
    w = load_file(str(CLIP_DIR / "model.safetensors"))
    cfg = json.loads((CLIP_DIR / "config.json").read_text())
    m = manual_clip(w, cfg, clip_px, input_ids, attention_mask)
    for i in range(3):
        close(f"clip vision hs{i}", m["vhs"][i], vout.hidden_states[i])
        close(f"clip text hs{i}", m["ths"][i], tout.hidden_states[i])
    close("clip vision last", m["vlast"], vout.last_hidden_state)
    close("clip vision pool", m["vpool"], vout.pooler_output)
    close("clip image_embeds", m["img"], image_embeds)
    close("clip text last", m["tlast"], tout.last_hidden_state)
    close("clip text pool", m["tpool"], tout.pooler_output)
    close("clip text_embeds", m["txt"], text_embeds)
    close("clip logits_per_image", m["lpi"], full.logits_per_image, 1e-4)
    # legacy argmax(input_ids) pooling picks the same row here because eos is the largest id
    legacy = tout.last_hidden_state[torch.arange(3), input_ids.argmax(-1)]
    close("clip legacy pooling coincides", legacy, tout.pooler_output, 0.0)

    # ---- SigLIP vision -----------------------------------------------------
    scfg = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              num_channels=3, image_size=32, patch_size=8, hidden_act="gelu_pytorch_tanh",
                              layer_norm_eps=1e-6, vision_use_head=True)
    torch.manual_seed(1)
    smodel = SiglipVisionModel(scfg)
    perturb_(smodel, seed=101)
    save_model(smodel, SIGLIP_DIR)
    smodel = SiglipVisionModel.from_pretrained(str(SIGLIP_DIR), attn_implementation="eager").eval()
    sig_px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5678))
    with torch.no_grad():
        sout = smodel(pixel_values=sig_px, output_hidden_states=True)
    assert len(sout.hidden_states) == 3
    sw = load_file(str(SIGLIP_DIR / "model.safetensors"))
    sm = manual_siglip(sw, json.loads((SIGLIP_DIR / "config.json").read_text()), sig_px)
    for i in range(3):
        close(f"siglip hs{i}", sm["hs"][i], sout.hidden_states[i])
    close("siglip last", sm["last"], sout.last_hidden_state)
    close("siglip pool", sm["pool"], sout.pooler_output)

    # ---- golden file -------------------------------------------------------
    g = {
        "clip.pixel_values": clip_px,
        "clip.vision.last_hidden_state": vout.last_hidden_state,
        "clip.vision.pooler_output": vout.pooler_output,
        "clip.image_embeds": image_embeds,
        "clip.input_ids": input_ids,
        "clip.attention_mask": attention_mask,
        "clip.text.last_hidden_state": tout.last_hidden_state,
        "clip.text.pooler_output": tout.pooler_output,
        "clip.text_embeds": text_embeds,
        "clip.logits_per_image": full.logits_per_image,
        "siglip.pixel_values": sig_px,
        "siglip.last_hidden_state": sout.last_hidden_state,
        "siglip.pooler_output": sout.pooler_output,
    }
    for i in range(3):
        g[f"clip.vision.hidden_states.{i}"] = vout.hidden_states[i]
        g[f"clip.text.hidden_states.{i}"] = tout.hidden_states[i]
        g[f"siglip.hidden_states.{i}"] = sout.hidden_states[i]
    g = {k: (v.detach().float() if v.is_floating_point() else v.long()).contiguous().clone() for k, v in g.items()}
    meta = {
        "generator": "tests/golden/make_vision_language.py",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "clip.texts": json.dumps(TEXTS),
        "clip.pooling": "first position where input_ids == eos_token_id (config eos_token_id != 2)",
        "clip.eos_token_id": str(eos_id),
        "clip.bos_token_id": str(bos_id),
    }
    # one metadata key only: safetensors writes the metadata map in hash order, so several keys would
    # make the file bytes differ from run to run.
    save_file(g, str(GOLDEN), metadata={"info": json.dumps(meta, sort_keys=True)})

    # ---- report ------------------------------------------------------------
    print(f"vocab_size={vocab_size} bos={bos_id} eos={eos_id}")
    for s in TEXTS:
        ids = tok.encode(s).ids
        print(f"  {s!r}: ids={ids} tokens={tok.encode(s).tokens}")
    print("input_ids:", input_ids.tolist())
    print("attention_mask:", attention_mask.tolist())
    print("logits_per_image:", full.logits_per_image.tolist())
    for folder in (CLIP_DIR, SIGLIP_DIR):
        print(f"{folder.name}:")
        for name, t in load_file(str(folder / "model.safetensors")).items():
            print(f"  {name} {list(t.shape)} {str(t.dtype).replace('torch.', '')}")
    print("golden:")
    for name, t in sorted(load_file(str(GOLDEN)).items()):
        print(f"  {name} {list(t.shape)} {str(t.dtype).replace('torch.', '')}")
    worst = max(ERRS, key=ERRS.get)
    print(f"all self-checks passed (worst: {worst} max abs diff {ERRS[worst]:.2e})", file=sys.stderr)


if __name__ == "__main__":
    main()
