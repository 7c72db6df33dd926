"""Fit one cell of the ranking grid (model x embeddings x seed): Adam on BCE, early stopping on validation AUC."""

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

    ``cfg`` holds the training keys (id_dim, embedding_mode, pretrained_norm, epochs, batch_size,
    lr, weight_decay, patience, optional device) and the model's own section under ``model``. The
    weights of the epoch with the best validation AUC are restored before the test set is scored.
    The batch order comes from a CPU generator whatever the device.
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
    epochs, patience = int(cfg["epochs"]), int(cfg["patience"])
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
        if v_auc > best_auc:
            best_auc, best_epoch, bad = v_auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience:
                stop_reason = "converged"  # early stopping on validation AUC
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    fit_s = time.perf_counter() - t0
    scores = predict(model, data.test, device=device)
    test = data.test
    metrics = {"auc": auc(test.label, scores), "logloss": logloss(test.label, scores),
               "valid_auc": best_auc}
    for group, mask in (("overlapped", test.overlapped), ("unseen", ~test.overlapped)):
        rows = mask[test.positive]
        if rows.any():
            metrics[f"{group}/auc"] = auc(test.label[rows], scores[rows])
            metrics[f"{group}/logloss"] = logloss(test.label[rows], scores[rows])
    training = {"optimizer_steps": steps, "examples_seen": examples, "epochs": epoch + 1, "best_epoch": best_epoch,
                "stop_reason": stop_reason, "metric": "valid AUC", "fit_wall_s": round(fit_s, 3),
                "fit_cpu_s": round(time.process_time() - cpu0, 3),
                "curve": [[(e + 1) * -(-len(data.train) // batch), v] for n, v, e in curves if n == "valid/auc"]}
    info = {"best_epoch": best_epoch, "epochs_run": epoch + 1, "fit_s": round(fit_s, 3), "training": training,
            "parameters": int(sum(p.numel() for p in params)), "item_dim": fields.item_dim,
            "pretrained_dim": fields.pretrained_dim}
    return CellResult(metrics=metrics, curves=curves, test_scores=scores, info=info)
