"""UniSRec's network (authors' ``unisrec.py``; methods.md 3.2-3.3, 3.5): MoE adaptor + SASRec encoder.

    v_i = MoE(x_i) [+ e_i^ID in transductive fine-tuning]        x_i = frozen text vector
    s   = Transformer(LN(v_{i_t} + P_t)) at the last real position
    scores / item embedding use n(s) and n(v_i) (``full_sort_predict``).

The encoder is the shared SASRec-style one; this module adds the adaptor, the optional ID table,
and a forward that groups a batch by length before the Transformer (``encode``): a batch of
every-prefix examples is mostly short histories, and one padded [B, 50] block would spend most
of its work on padding. Grouping changes nothing but the cost (padding is masked either way).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.shared.moe import MoEAdaptor
from methods.shared.sequence import SequenceEncoder


class UniSRecNet(nn.Module):
    """Frozen text table -> MoE adaptor -> causal Transformer; optional item-ID table (transductive)."""

    def __init__(self, text: torch.Tensor, cfg: dict[str, Any], text_aug: torch.Tensor | None = None) -> None:
        super().__init__()
        d = int(cfg["dim"])
        self.register_buffer("text", text, persistent=False)  # [N, d_text], frozen PLM vectors
        self.register_buffer("text_aug", text_aug, persistent=False)  # word-drop view or None
        self.moe = MoEAdaptor(text.shape[1], d, int(cfg["n_experts"]), float(cfg["adaptor_dropout"]),
                              noise=bool(cfg["gate_noise"]))
        self.encoder = SequenceEncoder(d, int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg["inner"]),
                                       float(cfg["dropout"]), int(cfg["max_len"]), causal=True, pooling="last",
                                       layer_norm_eps=float(cfg["layer_norm_eps"]), init_std=float(cfg["init_std"]))
        self.item_id: nn.Embedding | None = None
        self.chunk = int(cfg["encode_chunk"])

    @property
    def n_items(self) -> int:
        return int(self.text.shape[0])

    def add_item_ids(self, init_std: float) -> None:
        """Transductive fine-tuning: an item-ID table added to MoE(x) (RecBole's SASRec init)."""
        self.item_id = nn.Embedding(self.n_items, self.encoder.dim).to(self.text.device)
        nn.init.normal_(self.item_id.weight, 0.0, init_std)

    def item_vectors(self, items: torch.Tensor, aug: bool = False) -> torch.Tensor:
        """v_i for item indices ``items`` [U]: MoE of the (word-drop, if ``aug``) text, + e_ID if any."""
        x = (self.text_aug if aug else self.text)[items]
        v = self.moe(x)
        if self.item_id is not None:
            v = v + self.item_id(items)
        return v

    def encode(self, table: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor,
               alt: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        """Sequence vectors [B, d] (not normalised) of left-aligned sequences given as rows of ``table``.

        ``pos`` [B, L] indexes ``table`` [U, d] (padding entries may point anywhere: they are masked);
        where ``mix`` [B, L] is True the vector comes from ``alt`` instead (the word-drop view).
        """
        return self._by_length(table, pos, lengths, alt, mix, last=True)

    def hidden(self, table: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor,
               alt: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states at every position [B, L, d] (causal: position p sees items 0..p); as ``encode``."""
        return self._by_length(table, pos, lengths, alt, mix, last=False)

    def _by_length(self, table: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor, alt: torch.Tensor | None,
                   mix: torch.Tensor | None, last: bool) -> torch.Tensor:
        """The batch sorted by length and run in chunks of ``encode_chunk`` sequences, each padded only
        to its own longest sequence; results returned in the input order."""
        order = torch.argsort(lengths, stable=True)
        full = pos.shape[1]
        outs = []
        for s in range(0, len(order), self.chunk):
            idx = order[s : s + self.chunk]
            n = lengths[idx]
            width = max(int(n.max()), 1)
            p = pos[idx, :width]
            x = table[p]
            if alt is not None and mix is not None:
                x = torch.where(mix[idx, :width].unsqueeze(-1), alt[p], x)
            if last:
                outs.append(self.encoder(x, n))
            else:
                outs.append(F.pad(self.encoder.hidden(x, n), (0, 0, 0, full - width)))
        if not outs:
            shape = (0, self.encoder.dim) if last else (0, full, self.encoder.dim)
            return table.new_zeros(shape)
        return torch.cat(outs)[torch.argsort(order)]
