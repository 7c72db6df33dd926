"""In-batch contrastive (InfoNCE) losses of the text-based sequence methods (docs/methods.md 3.4, 4.4, 15).

Sequence-item: ``-log exp(s.v+/tau) / sum_b exp(s.v_b/tau)`` over the batch's targets, vectors
L2-normalised, the positive kept in the denominator. Other in-batch entries whose target equals
the anchor's target ("same_pos_id") are false negatives; the authors' code sets their *logit to 0*
before the exponential (each still adds e^0 = 1 to the denominator) -- ``same_target="zero"``
replicates that; ``"remove"`` drops them (-inf); ``"none"`` keeps them (MISSRec's code).

Windows batching (every position of a causal window is an anchor) adds another false negative
the authors' random-prefix batches almost never have: the anchor's *own* earlier and later items
(the other positions' targets of the same window, i.e. the same user). ``groups`` [B] names each
anchor's window; entries of the same group are removed from each other's negatives (-inf), so
co-consumed items are never pushed apart. ``SAME_USER_RULES``: "remove" (the fix, default in the
configs) or "keep" (what windows batching did before, for the before/after comparison).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SAME_TARGET_RULES = ("zero", "remove", "none")
SAME_USER_RULES = ("remove", "keep")


def _remove_same_group(logits: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """-inf where row and column anchors come from the same window (the positive, the diagonal, stays)."""
    if groups is None:
        return logits
    same = groups.unsqueeze(0) == groups.unsqueeze(1)
    same.fill_diagonal_(False)
    return logits.masked_fill(same, float("-inf"))


def seq_item_infonce(seq: torch.Tensor, items: torch.Tensor, tau: float, targets: torch.Tensor | None = None,
                     same_target: str = "zero", extra_logits: torch.Tensor | None = None,
                     groups: torch.Tensor | None = None) -> torch.Tensor:
    """Mean InfoNCE of sequences [B, d] against in-batch items [B, d] (positive of row b = item b).

    ``targets`` [B] are the item ids (for same-target masking); ``extra_logits`` [B, k] (already
    divided by tau) are appended negatives, e.g. VQ-Rec's semi-synthetic hard negative.
    ``groups`` [B]: each anchor's window in windows batching (same-user entries are not negatives).
    """
    if same_target not in SAME_TARGET_RULES:
        raise ValueError(f"same_target must be one of {SAME_TARGET_RULES}, got {same_target!r}")
    s, v = F.normalize(seq, dim=-1), F.normalize(items, dim=-1)
    logits = s @ v.T / tau
    if targets is not None and same_target != "none":
        same = targets.unsqueeze(0) == targets.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, 0.0 if same_target == "zero" else float("-inf"))
    logits = _remove_same_group(logits, groups)
    if extra_logits is not None:
        logits = torch.cat([logits, extra_logits], dim=1)
    return F.cross_entropy(logits, torch.arange(len(s), device=s.device))


def seq_seq_infonce(a: torch.Tensor, b: torch.Tensor, tau: float, targets: torch.Tensor | None = None,
                    same_target: str = "none", groups: torch.Tensor | None = None) -> torch.Tensor:
    """Sequence-sequence InfoNCE between two views [B, d] of the same sequences (row b <-> row b).

    UniSRec's code masks the same in-batch entries here as in the sequence-item task (rows whose
    next item equals the anchor's, ``same_pos_id``): pass ``targets`` and ``same_target``
    ("zero" = the code's logit-0 rule, "remove", "none" = no masking, the default).
    """
    if same_target not in SAME_TARGET_RULES:
        raise ValueError(f"same_target must be one of {SAME_TARGET_RULES}, got {same_target!r}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / tau
    if targets is not None and same_target != "none":
        same = targets.unsqueeze(0) == targets.unsqueeze(1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, 0.0 if same_target == "zero" else float("-inf"))
    logits = _remove_same_group(logits, groups)
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))
