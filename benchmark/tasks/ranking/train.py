"""Fit one cell of the ranking grid (model x embeddings x seed): Adam on BCE, early stopping on validation AUC.

Training runs to early stopping, as FuxiCTR's trainer does (the paper's code base; UniEmbedding 5.3:
"the models are trained using early stopping"): after each epoch the validation AUC is checked; an
epoch counts as a gain only when it beats the best by more than ``min_delta``; each epoch without
a gain multiplies the learning rate by ``plateau_lr_factor`` (FuxiCTR's reduce-LR-on-plateau uses
0.1, floor 1e-6; the suite keeps 1, see the task card); ``patience`` such epochs in a row stop
training ("converged") and the best epoch's weights are restored. ``max_epochs`` is only a safety cap: a cell that reaches it did not converge
and says so (``stop_reason: max_epochs``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.devices import check_device
from benchmark.tasks.ranking.data import CTRData, CTRPart
from benchmark.tasks.ranking.metrics import auc, logloss
from benchmark.tasks.ranking.models import ItemFields, build_model

PRETRAINED_NORMS = ("none", "l2")
MIN_LR = 1e-6  # FuxiCTR's floor for the learning rate decayed on plateaus
#: Test groups (row masks, see :func:`row_groups`): the users' and the candidate items' side.
GROUPS = ("overlapped", "unseen", "head", "tail")


@dataclass
class CellResult:
    """What one fitted cell leaves: test/valid metrics, the learning curve and the test scores."""

    metrics: dict[str, float]
    curves: list[tuple[str, float, int]]
    test_scores: np.ndarray  # float32 [R_test], predicted click probabilities
    info: dict[str, Any] = field(default_factory=dict)


def prepare_pretrained(vectors: np.ndarray | None, norm: str) -> np.ndarray | None:
    """The frozen pretrained table; ``l2`` scales each row to unit length (zero rows stay zero)."""
    if vectors is None:
        return None
    if norm not in PRETRAINED_NORMS:
        raise ValueError(f"pretrained_norm {norm!r}; known: {PRETRAINED_NORMS}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if norm == "l2":
        length = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(length > 0, length, 1.0)
    return np.ascontiguousarray(vectors, dtype=np.float32)


class _Tensors:
    def __init__(self, part: CTRPart, device: torch.device | str = "cpu"):
        device = torch.device(device)
        self.history = torch.from_numpy(part.history.astype(np.int64)).to(device)
        self.positive = torch.from_numpy(part.positive.astype(np.int64)).to(device)
        self.target = torch.from_numpy(part.target.astype(np.int64)).to(device)
        self.label = torch.from_numpy(part.label.astype(np.float32)).to(device)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = rows.to(self.target.device)
        return self.history[self.positive[rows]], self.target[rows], self.label[rows]


def row_groups(part: CTRPart, item_head: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks of the test groups: where the gain of pretrained embeddings comes from.

    ``overlapped`` / ``unseen``: rows of cases whose user is (is not) in training, each positive
    with its negatives (as the matching protocol groups cases). ``head`` / ``tail``: rows whose
    candidate item (``target``, clicked or not) is a head / tail item of the split (top 50% of items
    by training frequency), so each group's AUC ranks that group's clicked rows against its
    unclicked ones: tail = items whose ID embedding had little or no training data.
    """
    head = np.asarray(item_head, dtype=bool)[np.asarray(part.target, dtype=np.int64) - 1]
    overlapped = np.asarray(part.overlapped, dtype=bool)[np.asarray(part.positive, dtype=np.int64)]
    return {"overlapped": overlapped, "unseen": ~overlapped, "head": head, "tail": ~head}


def group_metrics(labels: np.ndarray, scores: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, float]:
    """``{group}/auc``, ``{group}/logloss`` and ``{group}/rows`` of each non-empty group (AUC nan without both labels)."""
    out: dict[str, float] = {}
    for name, rows in groups.items():
        if rows.any():
            out[f"{name}/auc"] = auc(labels[rows], scores[rows])
            out[f"{name}/logloss"] = logloss(labels[rows], scores[rows])
            out[f"{name}/rows"] = int(rows.sum())
    return out


@torch.no_grad()
def predict(model: nn.Module, part: CTRPart, batch_size: int = 8192,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Click probabilities of every row of a part (model in eval mode, on ``device``)."""
    model.eval()
    t = _Tensors(part, device)
    out = []
    for start in range(0, len(part), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(part)))
        hist, target, _ = t.batch(rows)
        out.append(torch.sigmoid(model(hist, target)))
    return torch.cat(out).cpu().numpy().astype(np.float32) if out else np.zeros(0, np.float32)


def train_cell(model_name: str, data: CTRData, pretrained: np.ndarray | None, cfg: dict, seed: int,
               progress: Callable[..., Iterable[Any]] | None = None,
               log: Callable[[str], None] | None = None) -> CellResult:
    """Train ``model_name`` on ``data`` with optional frozen ``pretrained`` vectors [n_items, d].

    ``cfg`` holds the training keys (id_dim, embedding_mode, pretrained_norm, max_epochs,
    batch_size, lr, weight_decay, patience, optional min_delta, plateau_lr_factor and device) and
    the model's own section under ``model``. Early stopping as in the module docstring; the weights
    of the epoch with the best validation AUC are restored before the test set is scored. The
    batch order comes from a CPU generator whatever the device.
    """
    device = torch.device(check_device(cfg.get("device"), "training.device"))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(int(seed))
    table = prepare_pretrained(pretrained, cfg.get("pretrained_norm", "l2"))
    fields = ItemFields(data.known, data.item_domain, len(data.domains), int(cfg["id_dim"]), table,
                        mode=cfg.get("embedding_mode", "concat"))
    model = build_model(model_name, fields, cfg.get("model", {})).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0.0)))
    loss_fn = nn.BCEWithLogitsLoss()
    train = _Tensors(data.train, device)
    batch = int(cfg["batch_size"])
    epochs, patience = int(cfg["max_epochs"]), int(cfg["patience"])
    min_delta, factor = float(cfg.get("min_delta", 1e-6)), float(cfg.get("plateau_lr_factor", 1.0))
    best_auc, best_state, best_epoch, bad = -1.0, None, -1, 0
    curves: list[tuple[str, float, int]] = []
    wrap = progress or (lambda it, **_: it)
    t0, cpu0 = time.perf_counter(), time.process_time()
    epoch, steps, examples, stop_reason = -1, 0, 0, "max_epochs"
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data.train), generator=gen)
        total, seen = 0.0, 0
        for start in wrap(range(0, len(order), batch), desc=f"{model_name} epoch {epoch}"):
            hist, target, label = train.batch(order[start : start + batch])
            loss = loss_fn(model(hist, target), label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            total += float(loss.detach()) * len(label)
            seen += len(label)
        examples += seen
        valid_scores = predict(model, data.valid, device=device)
        v_auc, v_loss = auc(data.valid.label, valid_scores), logloss(data.valid.label, valid_scores)
        curves += [("train/loss", total / max(seen, 1), epoch), ("valid/auc", v_auc, epoch), ("valid/logloss", v_loss, epoch)]
        if log:
            log(f"{model_name} epoch {epoch}: train loss {total / max(seen, 1):.4f}, valid AUC {v_auc:.4f}")
        if v_auc > best_auc + min_delta:
            best_auc, best_epoch, bad = v_auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience:
                stop_reason = "converged"  # early stopping on validation AUC
                break
            for group in opt.param_groups:  # reduce the learning rate on a plateau (FuxiCTR)
                group["lr"] = max(group["lr"] * factor, MIN_LR)
    if best_state is not None:
        model.load_state_dict(best_state)
    fit_s = time.perf_counter() - t0
    scores = predict(model, data.test, device=device)
    test = data.test
    metrics = {"auc": auc(test.label, scores), "logloss": logloss(test.label, scores),
               "valid_auc": best_auc, **group_metrics(test.label, scores, row_groups(test, data.item_head))}
    training = {"optimizer_steps": steps, "examples_seen": examples, "epochs": epoch + 1, "best_epoch": best_epoch,
                "stop_reason": stop_reason, "metric": "valid AUC", "max_epochs": epochs, "patience": patience,
                "min_delta": min_delta, "plateau_lr_factor": factor,
                "train_positives": data.train.n_positives, "train_rows": len(data.train),
                "train_set": data.train.fingerprint(),  # what this cell trained on: equal across a grid's cells
                "fit_wall_s": round(fit_s, 3), "fit_cpu_s": round(time.process_time() - cpu0, 3),
                "curve": [[(e + 1) * -(-len(data.train) // batch), v] for n, v, e in curves if n == "valid/auc"]}
    info = {"best_epoch": best_epoch, "epochs_run": epoch + 1, "fit_s": round(fit_s, 3), "training": training,
            "parameters": int(sum(p.numel() for p in params)), "item_dim": fields.item_dim,
            "pretrained_dim": fields.pretrained_dim}
    return CellResult(metrics=metrics, curves=curves, test_scores=scores, info=info)
