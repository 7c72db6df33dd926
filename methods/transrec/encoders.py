"""TransRec's item towers (seed 001 section 3.2; methods.md 7.1) and the mixture-of-modality rule.

Text item: a pretrained Transformer text encoder (MiniLM offline, ``hf:<model>`` where present)
with only its top ``trainable_layers`` layers trained. The frozen embedding layer and lower
layers never change, so their token outputs are computed once per item (:class:`TextTokenCache`)
and a training step runs only the trainable top, then the authors' head: token-level multi-head
self-attention (4 heads x 20) -> additive attention pooling (query dim 200) -> Linear(80 -> d).

Image item: ResNet-18 with ImageNet weights from a local file when one is configured (only
``layer3``/``layer4`` trainable, as ``resnet_finetuneset``), else a small CNN trained from
scratch on the item images -- named "small CNN (from scratch)" everywhere, never ResNet.

Frozen-features mode (Table 9): the suite's pre-extracted item features (``features.text``,
``features.image``) through a trainable Linear(-> d), the "frozen features" practice the paper
compares against.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark import compat
from benchmark.data.model import Items
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.features.image import load_rgb
from benchmark.features.text import HFTextEncoder, MiniLMEncoder

log = logging.getLogger(__name__)

MODALITY_RULES = ("draw", "domain")
SMALL_CNN = "small CNN (from scratch)"


# ----------------------------------------------------------------------------- modality rule


def assign_modality(items: Items, has_image: np.ndarray, rule: str, text_share: float = 0.5,
                    text_domains: list[str] | None = None, seed: int = 0) -> np.ndarray:
    """bool [N]: True = the item is a text item, False = an image item (each item is one modality).

    ``draw``: a seeded per-item draw, text with probability ``text_share`` (the same for every
    run seed, so every method and seed sees the same items as text). ``domain``: items of
    ``text_domains`` are text, the others image. Either way an item without an image is text,
    and an item with an image but no title is image.
    """
    n = len(items)
    if rule == "draw":
        if not 0.0 <= float(text_share) <= 1.0:
            raise ConfigError(f"transrec.text_share must be in [0, 1], got {text_share!r}")
        is_text = np.random.default_rng([int(seed), 0x7E47]).random(n) < float(text_share)
    elif rule == "domain":
        names = list(text_domains or [])
        unknown = [d for d in names if d not in items.domains]
        if unknown:
            raise ConfigError(f"transrec.text_domains: unknown domain(s) {unknown}; known: {list(items.domains)}")
        codes = [items.domains.index(d) for d in names]
        is_text = np.isin(items.domain, codes)
    else:
        raise ConfigError(f"transrec.modality_rule must be one of {MODALITY_RULES}, got {rule!r}")
    has_image = np.asarray(has_image, dtype=bool)
    titles = items.title if items.title is not None else np.full(n, "", dtype=object)
    has_text = np.array([bool(str(t).strip()) for t in titles], dtype=bool)
    is_text = np.where(~has_image, True, is_text)
    return np.where(has_image & ~has_text, False, is_text)


# ----------------------------------------------------------------------------- text


def _layer_out(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def load_text_backbone(spec: str) -> tuple[Any, Any, str]:
    """(tokenizer, BertModel-like model in eval mode, id) for ``minilm`` or ``hf:<model-or-folder>``."""
    compat.apply()
    from transformers import AutoModel, AutoTokenizer

    if spec == "minilm":
        enc = MiniLMEncoder()
        folder, ident = enc.folder, enc.id
    elif spec.startswith("hf:"):
        enc = HFTextEncoder(spec[3:])
        folder, ident = enc.folder, enc.id
    else:
        raise ConfigError(f"transrec.text_encoder must be 'minilm' or 'hf:<model>', got {spec!r}")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    if not hasattr(model, "encoder") or not hasattr(model.encoder, "layer"):
        raise BenchmarkError(f"transrec: text encoder {spec!r} is not a BERT-style encoder (no encoder.layer)")
    return tokenizer, model, ident


def attention_mask_for(mask: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The additive 4-D padding mask ``[B, 1, 1, T]`` a BERT layer adds to its attention scores.

    Built by hand (0 = attend, the dtype's minimum = padding), exactly what transformers 4.x's
    ``get_extended_attention_mask`` returned for an encoder. transformers 5 removed that helper and
    builds masks through private, version-specific functions; the hand-built mask broadcasts in the
    eager and SDPA attention of every release from 4.40 to 5.25.
    """
    keep = mask.to(device=hidden.device, dtype=torch.bool)[:, None, None, :]
    zero = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
    return torch.where(keep, zero, torch.finfo(hidden.dtype).min)


class TextTokenCache:
    """Token states after the frozen embedding + lower layers, computed once per text item.

    ``hidden[k]`` / ``mask[k]`` belong to item ``items[k]``; ``row[i]`` maps an item index to its
    cache row (-1 = not a text item). The lower part is frozen, so these never change.
    """

    def __init__(self, model: Any, tokenizer: Any, texts: list[str], items: np.ndarray, n_items: int,
                 n_frozen: int, max_tokens: int, batch: int = 64) -> None:
        self.items = np.asarray(items, dtype=np.int64)
        self.row = np.full(n_items, -1, dtype=np.int64)
        self.row[self.items] = np.arange(len(self.items))
        self.n_frozen = int(n_frozen)
        hidden, masks = [], []
        with torch.no_grad():
            for s in range(0, len(texts), batch):
                tok = tokenizer(texts[s : s + batch], padding="max_length", truncation=True,
                                max_length=int(max_tokens), return_tensors="pt")
                h = lower_forward(model, tok["input_ids"], tok["attention_mask"], self.n_frozen)
                hidden.append(h)
                masks.append(tok["attention_mask"].bool())
        width = int(max_tokens)
        self.hidden = torch.cat(hidden) if hidden else torch.zeros(0, width, model.config.hidden_size)
        self.mask = torch.cat(masks) if masks else torch.zeros(0, width, dtype=torch.bool)


def lower_forward(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, n_frozen: int) -> torch.Tensor:
    """Embeddings + the first ``n_frozen`` layers of a BERT-style model (no grad needed)."""
    h = model.embeddings(input_ids=input_ids)
    ext = attention_mask_for(mask, h)
    for layer in model.encoder.layer[:n_frozen]:
        h = _layer_out(layer(h, attention_mask=ext))
    return h


class TextTower(nn.Module):
    """Trainable top layers + token self-attention + additive pooling + Linear -> d (methods.md 7.1)."""

    def __init__(self, model: Any, n_frozen: int, dim: int, heads: int = 4, head_dim: int = 20,
                 query_dim: int = 200, dropout: float = 0.1) -> None:
        super().__init__()
        self.top = nn.ModuleList(copy.deepcopy(layer) for layer in model.encoder.layer[n_frozen:])
        for p in self.top.parameters():
            p.requires_grad_(True)
        hidden = int(model.config.hidden_size)
        width = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.q, self.k, self.v = (nn.Linear(hidden, width) for _ in range(3))
        self.att = nn.Linear(width, query_dim)
        self.att_query = nn.Parameter(torch.randn(query_dim) * 0.02)
        self.out = nn.Linear(width, dim)
        self.dropout = nn.Dropout(dropout)

    def top_layers(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ext = attention_mask_for(mask, hidden)
        for layer in self.top:
            hidden = _layer_out(layer(hidden, attention_mask=ext))
        return hidden

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.top_layers(hidden, mask)
        b, t, _ = h.shape
        q, k, v = (f(h).view(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) / self.head_dim**0.5
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        z = self.dropout(z)
        a = (torch.tanh(self.att(z)) @ self.att_query).masked_fill(~mask, float("-inf"))
        pooled = (a.softmax(-1).unsqueeze(-1) * z).sum(1)
        return self.out(pooled)


# ----------------------------------------------------------------------------- image

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_images(paths: list[str], size: int) -> torch.Tensor:
    """uint8 [K, 3, size, size]: each image resized to ``size`` (unreadable -> grey)."""
    out = np.full((len(paths), size, size, 3), 128, dtype=np.uint8)
    for k, p in enumerate(paths):
        im = load_rgb(p, draft=2 * size) if p else None
        if im is not None:
            out[k] = np.asarray(im.resize((size, size)), dtype=np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks + global average pooling + Linear -> d, trained from scratch."""

    def __init__(self, dim: int, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        blocks: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            blocks += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(chans[-1], dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class ResNet18Top(nn.Module):
    """torchvision ResNet-18 with ImageNet weights from ``weights``; only layer3/layer4 + head train."""

    def __init__(self, dim: int, weights: str) -> None:
        super().__init__()
        compat.apply()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.fc = nn.Identity()
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith(("layer3", "layer4")))
        self.net = net
        self.out = nn.Linear(512, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(x))


def build_image_tower(dim: int, cfg: dict[str, Any]) -> tuple[nn.Module, str]:
    """(tower, display name): ResNet-18 when ``resnet18_weights`` names an existing file, else the small CNN."""
    weights = str(cfg.get("resnet18_weights") or "")
    if weights and Path(weights).expanduser().is_file():
        return ResNet18Top(dim, str(Path(weights).expanduser())), "ResNet-18 (ImageNet, layer3-4 trained)"
    if weights:
        log.warning("transrec: resnet18_weights %s not found; using the %s", weights, SMALL_CNN)
    return SmallCNN(dim, int(cfg["cnn_width"])), SMALL_CNN


def normalise_images(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - IMAGENET_MEAN.to(x.device)) / IMAGENET_STD.to(x.device)
