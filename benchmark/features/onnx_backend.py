"""ONNX Runtime backends of the shipped MiniLM: ``onnx`` (fp32) and ``onnx-int8`` (dynamic quantisation).

sentence-transformers' own route (``SentenceTransformer(..., backend="onnx")`` and
``export_dynamic_quantized_onnx_model``) goes through optimum-onnx, whose newest release (0.1.0)
requires ``transformers<4.58`` while sentence-transformers 6.3 requires ``transformers>=5``: the
two cannot be installed together. So the two steps optimum runs are run here directly:
``torch.onnx.export`` (the torch.export-based exporter, torch's default) of the BERT body, and
``onnxruntime.quantization.quantize_dynamic`` with int8 weights per output channel on every MatMul
(optimum's ``avx512_vnni`` dynamic config; per-tensor weights moved vectors to cosine 0.95).
Tokenisation, mean pooling and the L2 norm are sentence-transformers' own (modules.json).

Exports live in a cache folder of their own (``$UIE_CACHE_DIR/onnx`` or ``~/.cache/uie-bench/onnx``,
never site-packages), one folder per (source weights, backend, recipe, library versions), made from
the local model folder only. ``manifest.json`` (written last) holds the sha256 of ``model.onnx``; each
use re-hashes the file, and a corrupt, altered or linked entry is named in a warning and exported
again, like the feature cache (:mod:`benchmark.features.cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark import compat
from benchmark.backend_choice import TEXT_BACKENDS, onnx_runtime_missing
from benchmark.errors import BenchmarkError
from benchmark.fsutil import atomic_write, cache_entry_refusal, file_lock, sha256_file, user_cache_dir

log = logging.getLogger(__name__)

ONNX_BACKENDS = tuple(b for b in TEXT_BACKENDS if b.startswith("onnx"))
#: What each backend's export is; part of its cache folder's key, so a changed recipe exports anew.
RECIPES = {
    "onnx": "torch.onnx.export(dynamo=True) of the BERT body, fp32, opset 18",
    "onnx-int8": "the onnx export + quantize_dynamic(QInt8 weights per channel, MatMul only)",
}
_OPSET = 18
_LIBS = ("torch", "onnx", "onnxruntime", "onnxscript")


def default_export_root() -> Path:
    """Where exports are cached when the caller names no folder: beside the other user caches."""
    return user_cache_dir() / "onnx"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def entry_name(weights_hash: str, backend: str) -> str:
    """The cache folder of one export: source weights, backend, recipe and the exporting libraries."""
    versions = {lib: _version(lib) for lib in _LIBS}
    digest = hashlib.sha256(json.dumps([weights_hash, backend, RECIPES[backend], versions]).encode()).hexdigest()
    return f"minilm-{weights_hash[:12]}-{backend}-{digest[:12]}"


def _verified(entry: Path, root: Path) -> Path | None:
    """``entry/model.onnx`` when it matches its manifest, else None (the reason in one warning)."""
    model, manifest = entry / "model.onnx", entry / "manifest.json"
    if not manifest.exists():
        return None
    try:
        for path in (manifest, model):
            refusal = cache_entry_refusal(path, root)
            if refusal is not None:
                raise ValueError(f"{path.name}: {refusal}")
        expected = json.loads(manifest.read_text()).get("sha256", {}).get("model.onnx")
        if not expected:
            raise ValueError("no checksum recorded")
        if sha256_file(model) != expected:  # re-read on every use, never memoised
            raise ValueError("content does not match its checksum (corrupt or altered)")
    except (OSError, ValueError) as e:
        log.warning("ONNX export %s is unreadable or corrupt (%s: %s); exporting it again", model, type(e).__name__, e)
        return None
    return model


def exported_model(source: Path, weights_hash: str, backend: str, root: Path | None = None) -> Path:
    """A verified ``model.onnx`` of the MiniLM in ``source`` for ``backend``: cached, or exported now.

    ``onnx-int8`` quantises the (cached, verified) ``onnx`` export. Two processes asking at once
    export once (a file lock per entry).
    """
    if backend not in ONNX_BACKENDS:
        raise BenchmarkError(f"unknown ONNX backend {backend!r}; known: {', '.join(ONNX_BACKENDS)}")
    reason = onnx_runtime_missing()
    if reason is not None:
        raise BenchmarkError(f"text backend {backend!r} {reason}")
    root = Path(root) if root is not None else default_export_root()
    entry = root / entry_name(weights_hash, backend)
    model = _verified(entry, root)
    if model is not None:
        return model
    fp32 = exported_model(source, weights_hash, "onnx", root) if backend == "onnx-int8" else None
    try:
        entry.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchmarkError(f"cannot write ONNX exports under {root} ({e.strerror or e}); "
                             "point UIE_CACHE_DIR at a writable folder") from e
    with file_lock(root / f".{entry.name}.lock"):
        model = _verified(entry, root)
        if model is not None:  # another process exported it while we waited
            return model
        with contextlib.suppress(FileNotFoundError):
            (entry / "manifest.json").unlink()  # no valid pair while the model is replaced
        log.info("exporting MiniLM to ONNX (%s) in %s", backend, entry)
        model = entry / "model.onnx"
        fd, tmp = tempfile.mkstemp(dir=entry, prefix=".model.", suffix=".onnx.tmp")
        os.close(fd)
        try:
            if fp32 is None:
                _export_fp32(source, Path(tmp))
            else:
                _quantise_int8(fp32, Path(tmp))
            os.chmod(tmp, 0o644)
            os.replace(tmp, model)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        record = {"sha256": {"model.onnx": sha256_file(model)}, "source_weights": weights_hash,
                  "backend": backend, "recipe": RECIPES[backend],
                  "versions": {lib: _version(lib) for lib in _LIBS}}
        atomic_write(entry / "manifest.json", lambda f: f.write(json.dumps(record, indent=1).encode()))
    return model


def _export_fp32(source: Path, out: Path) -> None:
    """The BERT body of sentence-transformers' Transformer module, token vectors out (batch, seq dynamic)."""
    compat.apply()
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    bert = AutoModel.from_pretrained(str(source), local_files_only=True).eval()

    class Body(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = tokenizer(["an example item prompt for the export", "a second, longer example item prompt for it"],
                        padding=True, return_tensors="pt")
    names = ("input_ids", "attention_mask", "token_type_ids")
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
    quiet = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [q.level for q in quiet]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        warnings.simplefilter("ignore")
        for q in quiet:
            q.setLevel(logging.WARNING)
        program = torch.onnx.export(
            Body(bert), tuple(example[n] for n in names), input_names=list(names),
            output_names=["token_embeddings"], dynamic_shapes={n: {0: batch, 1: seq} for n in names},
            opset_version=_OPSET, dynamo=True, external_data=False, verbose=False,
        )
        program.save(str(out), external_data=False)
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def _quantise_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # quantize_dynamic advises pre-processing on the root logger
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        root_logger.setLevel(level)


class OnnxMiniLM:
    """Tokenise as sentence-transformers does, run the exported body, mean-pool and L2-normalise."""

    def __init__(self, model: Path, source: Path, max_seq_length: int, threads: int):
        compat.apply()
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))  # as many as torch would use
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.max_seq_length = max_seq_length

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(list(texts), padding=True, truncation="longest_first",
                               max_length=self.max_seq_length, return_tensors="np")
        tokens = self.session.run(None, {n: batch[n].astype(np.int64) for n in self.inputs})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return pooled.astype(np.float32)
