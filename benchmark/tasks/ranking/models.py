"""DCNv2, FinalMLP and DIN on CPU torch, written from their papers (methods.md 15: no wheel ships all three).

Every model sees the same four fields (UniEmbedding 5.3): the target item and its domain, the
user's history items and their domains. An item's field vector is its learned ID embedding
concatenated with the method's frozen pretrained vector (the paper: "we concatenated item ID
embedding and pre-trained item embedding"); ``mode="concat_project"`` instead maps the
concatenation back to the ID size with a bias-free linear layer (FuxiCTR's PretrainedEmbedding
"concat"). DCNv2 and FinalMLP pool the history fields by a masked mean (FuxiCTR's default for
sequence fields); DIN pools them with its target attention. All models return logits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EMBEDDING_MODES = ("concat", "concat_project")


def _init_linear(module: nn.Module) -> None:
    """FuxiCTR's initialisation: Xavier-normal weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Dice(nn.Module):
    """DIN's data-adaptive activation: p(s) s + (1 - p(s)) alpha s, p = sigmoid(BN(s)) (Zhou et al. 2018, Eq. 6)."""

    def __init__(self, dim: int, eps: float = 1e-9):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.bn(x))
        return p * x + (1 - p) * self.alpha * x


def mlp(in_dim: int, hidden: list[int], activation: str = "relu", dropout: float = 0.0,
        out_dim: int | None = None) -> nn.Sequential:
    """Linear -> activation (-> dropout) per hidden layer, then an optional linear output."""
    layers: list[nn.Module] = []
    dim = in_dim
    for h in hidden:
        layers.append(nn.Linear(dim, h))
        layers.append(Dice(h) if activation == "dice" else nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        dim = h
    if out_dim is not None:
        layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


def mlp_out_dim(in_dim: int, hidden: list[int]) -> int:
    return hidden[-1] if hidden else in_dim


class ItemFields(nn.Module):
    """Item and domain field vectors from item indices shifted by one (0 = padding).

    ``known[i]`` says whether item i has a learned ID row; others (cold items) share the
    padding/unknown row, a fixed zero vector, but keep their pretrained vector.
    """

    def __init__(self, known: np.ndarray, item_domain: np.ndarray, n_domains: int, id_dim: int,
                 pretrained: np.ndarray | None = None, mode: str = "concat"):
        super().__init__()
        if mode not in EMBEDDING_MODES:
            raise ValueError(f"embedding mode {mode!r}; known: {EMBEDDING_MODES}")
        n = len(known)
        id_of = np.zeros(n + 1, dtype=np.int64)
        id_of[1:][known] = np.arange(1, int(known.sum()) + 1)
        self.register_buffer("id_of", torch.from_numpy(id_of))
        self.register_buffer("domain_of", torch.from_numpy(np.r_[0, np.asarray(item_domain, np.int64) + 1]))
        self.id_emb = nn.Embedding(int(known.sum()) + 1, id_dim, padding_idx=0)
        self.domain_emb = nn.Embedding(n_domains + 1, id_dim, padding_idx=0)
        for emb in (self.id_emb, self.domain_emb):  # FuxiCTR's default: normal(0, 1e-4), padding row zero
            nn.init.normal_(emb.weight, std=1e-4)
            with torch.no_grad():
                emb.weight[0].zero_()
        self.mode = mode
        self.pretrained_dim = 0 if pretrained is None else int(pretrained.shape[1])
        if pretrained is not None:
            table = np.zeros((n + 1, pretrained.shape[1]), dtype=np.float32)
            table[1:] = pretrained
            self.register_buffer("pretrained", torch.from_numpy(table))  # frozen: a buffer, never a parameter
        self.proj = (nn.Linear(id_dim + self.pretrained_dim, id_dim, bias=False)
                     if mode == "concat_project" and pretrained is not None else None)
        self.item_dim = id_dim if self.proj is not None else id_dim + self.pretrained_dim
        self.domain_dim = id_dim

    def item(self, idx: torch.Tensor) -> torch.Tensor:
        vec = self.id_emb(self.id_of[idx])
        if self.pretrained_dim:
            vec = torch.cat([vec, self.pretrained[idx]], dim=-1)
            if self.proj is not None:
                vec = self.proj(vec)
        return vec

    def domain(self, idx: torch.Tensor) -> torch.Tensor:
        return self.domain_emb(self.domain_of[idx])

    def pooled_fields(self, history: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
        """[target item, target domain, mean history item, mean history domain] (masked mean)."""
        mask = (history > 0).unsqueeze(-1).float()
        count = mask.sum(dim=1).clamp(min=1.0)
        hist_item = (self.item(history) * mask).sum(dim=1) / count
        hist_domain = (self.domain(history) * mask).sum(dim=1) / count
        return [self.item(target), self.domain(target), hist_item, hist_domain]

    @property
    def flat_dim(self) -> int:
        return 2 * (self.item_dim + self.domain_dim)


class CrossNetV2(nn.Module):
    """DCN-V2's cross network: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l (Wang et al. 2021, Eq. 1)."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class DCNv2(nn.Module):
    """DCN-V2: cross network and a deep network, "parallel" (concatenated) or "stacked" (deep on cross)."""

    def __init__(self, fields: ItemFields, cross_layers: int = 3, hidden: list[int] | None = None,
                 structure: str = "parallel", dropout: float = 0.0):
        super().__init__()
        if structure not in ("parallel", "stacked"):
            raise ValueError(f"DCNv2 structure {structure!r}; known: parallel, stacked")
        hidden = list([256, 128] if hidden is None else hidden)
        self.fields, self.structure = fields, structure
        dim = fields.flat_dim
        self.cross = CrossNetV2(dim, cross_layers)
        self.deep = mlp(dim, hidden, dropout=dropout)
        deep_dim = mlp_out_dim(dim, hidden)
        self.out = nn.Linear(dim + deep_dim if structure == "parallel" else deep_dim, 1)
        _init_linear(self.cross)
        _init_linear(self.deep)
        _init_linear(self.out)

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat(self.fields.pooled_fields(history, target), dim=-1)
        cross = self.cross(x0)
        if self.structure == "stacked":
            return self.out(self.deep(cross)).squeeze(-1)
        return self.out(torch.cat([cross, self.deep(x0)], dim=-1)).squeeze(-1)


class FeatureSelection(nn.Module):
    """FinalMLP's stream-specific gating: x_k = e * 2 sigmoid(MLP_k(context_k)) (Mao et al. 2023, Eq. 4).

    A context is "item" (target item + domain), "user" (pooled history fields) or "none" (a
    learned vector, zero-initialised as in FuxiCTR).
    """

    def __init__(self, fields: ItemFields, hidden: list[int], contexts: tuple[str, str] = ("user", "item")):
        super().__init__()
        self.contexts = contexts
        dims = {"item": fields.item_dim + fields.domain_dim, "user": fields.item_dim + fields.domain_dim,
                "none": fields.domain_dim}
        for c in contexts:
            if c not in dims:
                raise ValueError(f"FinalMLP feature-selection context {c!r}; known: item, user, none")
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(1, dims["none"])) for _ in contexts)
        self.gates = nn.ModuleList(mlp(dims[c], hidden, out_dim=fields.flat_dim) for c in contexts)
        _init_linear(self.gates)

    def context(self, k: int, fields: list[torch.Tensor]) -> torch.Tensor:
        c = self.contexts[k]
        if c == "item":
            return torch.cat(fields[:2], dim=-1)
        if c == "user":
            return torch.cat(fields[2:], dim=-1)
        return self.bias[k].expand(fields[0].shape[0], -1)

    def forward(self, fields: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.cat(fields, dim=-1)
        g1 = 2 * torch.sigmoid(self.gates[0](self.context(0, fields)))
        g2 = 2 * torch.sigmoid(self.gates[1](self.context(1, fields)))
        return flat * g1, flat * g2


class InteractionAggregation(nn.Module):
    """FinalMLP's multi-head bilinear fusion: w1.o1 + w2.o2 + b + sum_h o1_h^T W_h o2_h (Mao et al. 2023, Eq. 6-7)."""

    def __init__(self, x_dim: int, y_dim: int, heads: int = 1):
        super().__init__()
        if x_dim % heads or y_dim % heads:
            raise ValueError(f"FinalMLP: stream outputs {x_dim} and {y_dim} must divide by {heads} heads")
        self.heads, self.hx, self.hy = heads, x_dim // heads, y_dim // heads
        self.w_x = nn.Linear(x_dim, 1)
        self.w_y = nn.Linear(y_dim, 1, bias=False)
        self.w_xy = nn.Parameter(torch.empty(heads, self.hx, self.hy))
        nn.init.xavier_normal_(self.w_xy)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hx = x.view(-1, self.heads, self.hx)
        hy = y.view(-1, self.heads, self.hy)
        bilinear = torch.einsum("bhi,hij,bhj->b", hx, self.w_xy, hy)
        return (self.w_x(x) + self.w_y(y)).squeeze(-1) + bilinear


class FinalMLP(nn.Module):
    """FinalMLP: two MLP streams over gated copies of the features, fused bilinearly."""

    def __init__(self, fields: ItemFields, mlp1: list[int] | None = None, mlp2: list[int] | None = None,
                 fs_hidden: list[int] | None = None, heads: int = 2, contexts: tuple[str, str] = ("user", "item"),
                 dropout: float = 0.0):
        super().__init__()
        mlp1, mlp2 = list([256, 128] if mlp1 is None else mlp1), list([128] if mlp2 is None else mlp2)
        self.fields = fields
        dim = fields.flat_dim
        self.select = FeatureSelection(fields, list([128] if fs_hidden is None else fs_hidden), tuple(contexts))
        self.mlp1, self.mlp2 = mlp(dim, mlp1, dropout=dropout), mlp(dim, mlp2, dropout=dropout)
        _init_linear(self.mlp1)
        _init_linear(self.mlp2)
        self.fusion = InteractionAggregation(mlp_out_dim(dim, mlp1), mlp_out_dim(dim, mlp2), heads)

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.select(self.fields.pooled_fields(history, target))
        return self.fusion(self.mlp1(x1), self.mlp2(x2))


class DINAttention(nn.Module):
    """DIN's local activation unit: weight_j = MLP([q, k_j, q - k_j, q * k_j]), padded j masked to 0.

    No softmax (Zhou et al. 2018, 4.3: weights are not normalised, to keep the intensity of
    interest); the pooled vector is sum_j weight_j k_j.
    """

    def __init__(self, dim: int, hidden: list[int] | None = None, activation: str = "dice"):
        super().__init__()
        self.unit = mlp(4 * dim, list([64] if hidden is None else hidden), activation=activation, out_dim=1)
        _init_linear(self.unit)

    def weights(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = query.unsqueeze(1).expand_as(keys)
        x = torch.cat([q, keys, q - keys, q * keys], dim=-1)
        w = self.unit(x.reshape(-1, x.shape[-1])).view(keys.shape[0], keys.shape[1])
        return w * mask.float()

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.weights(query, keys, mask).unsqueeze(-1) * keys).sum(dim=1)


class DIN(nn.Module):
    """DIN: target attention over the history (item + domain), then an MLP over all fields."""

    def __init__(self, fields: ItemFields, attention_hidden: list[int] | None = None,
                 hidden: list[int] | None = None, activation: str = "dice", dropout: float = 0.0):
        super().__init__()
        self.fields = fields
        dim = fields.item_dim + fields.domain_dim
        self.attention = DINAttention(dim, attention_hidden, activation)
        self.dnn = mlp(2 * dim, list([256, 128] if hidden is None else hidden), activation=activation, dropout=dropout, out_dim=1)
        _init_linear(self.dnn)

    def forward(self, history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f = self.fields
        query = torch.cat([f.item(target), f.domain(target)], dim=-1)
        keys = torch.cat([f.item(history), f.domain(history)], dim=-1)
        pooled = self.attention(query, keys, history > 0)
        return self.dnn(torch.cat([query, pooled], dim=-1)).squeeze(-1)


MODELS = {"dcnv2": DCNv2, "finalmlp": FinalMLP, "din": DIN}
DISPLAY = {"dcnv2": "DCNv2", "finalmlp": "FinalMLP", "din": "DIN"}


def build_model(name: str, fields: ItemFields, cfg: dict) -> nn.Module:
    """A ranking model by name with its config section (keys as in the suite file)."""
    if name not in MODELS:
        raise ValueError(f"unknown ranking model {name!r}; known: {', '.join(MODELS)}")
    if name == "dcnv2":
        return DCNv2(fields, cross_layers=int(cfg.get("cross_layers", 3)), hidden=cfg.get("hidden"),
                     structure=cfg.get("structure", "parallel"), dropout=float(cfg.get("dropout", 0.0)))
    if name == "finalmlp":
        return FinalMLP(fields, mlp1=cfg.get("mlp1"), mlp2=cfg.get("mlp2"), fs_hidden=cfg.get("fs_hidden"),
                        heads=int(cfg.get("heads", 2)), contexts=tuple(cfg.get("contexts", ("user", "item"))),
                        dropout=float(cfg.get("dropout", 0.0)))
    return DIN(fields, attention_hidden=cfg.get("attention_hidden"), hidden=cfg.get("hidden"),
               activation=cfg.get("activation", "dice"), dropout=float(cfg.get("dropout", 0.0)))
