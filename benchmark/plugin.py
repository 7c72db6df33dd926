"""The method plugin contract: small on purpose.

A method is a class with ``fit`` and ``item_embeddings``; it declares what it needs, checks its
config up front (``check_config``) and ships a default config with its own scale presets
(``config.yaml``) and a card (``card.md``) beside its module. Third-party methods
have the same shape and register through the ``benchmark.methods`` entry-point group.
The evaluator never imports a method.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import yaml

from benchmark.data.model import Histories, TrainView
from benchmark.features.model import ItemFeatures

T = TypeVar("T")

#: Inputs a method may declare in ``requires`` (hard) or ``uses`` (optional).
REQUIREMENTS = frozenset({"ids", "sequences", "text", "image", "ratings"})
#: Extra inputs a method may list in ``uses`` only: UniSRec's word-drop text view
#: (``ItemFeatures.text_word_drop``), encoded only when a planned method uses it.
OPTIONAL_INPUTS = frozenset({"text_word_drop"})


def _no_metric(name: str, value: float, step: int | None = None) -> None:
    return None


def _plain_progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterable[T]:
    return iterable


@dataclass
class RunContext:
    """What the runner hands a method: seed, progress bars and a metric logger.

    ``log_metric(name, value, step)`` forwards to MLflow (loss curves); ``progress(iterable,
    desc=..., total=...)`` wraps a loop in a progress bar. The device is not here: it is the
    method's own config key ``device`` (``cpu`` or ``cuda[:k]``), checked before any work by
    :func:`benchmark.devices.check_devices`.
    """

    seed: int = 0
    scale: str = "small"
    log_metric: Callable[[str, float, int | None], None] = _no_metric
    progress: Callable[..., Iterable[Any]] = _plain_progress
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("benchmark.method"))
    workers: int = 1  # CPU threads a method may use; 1 = reproducible across machines

    def rng(self, offset: int = 0) -> np.random.Generator:
        """A numpy generator derived from the run seed (offset separates independent streams)."""
        return np.random.default_rng([self.seed, offset])

    @contextlib.contextmanager
    def threads(self) -> Iterator[None]:
        """Give torch ``workers`` CPU threads while a method trains; restore the caller's setting."""
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.workers)))
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def seed_everything(self) -> None:
        """Seed python, numpy and torch so a run is deterministic per seed."""
        random.seed(self.seed)
        np.random.seed(self.seed % (2**32))  # noqa: NPY002 - third-party code uses the global RNG
        try:
            import torch
        except ImportError:  # torch is a core dependency; tolerate its absence in light tools
            return
        torch.manual_seed(self.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)


class Method(abc.ABC):
    """Base class of every item-embedding method.

    Class attributes:
      name: registry name (lower-case, qualified where papers collide, e.g. ``transrec``).
      display_name: the name in tables; ``paper_column`` the Table 1 column it reproduces.
      requires: inputs without which the method cannot run (subset of REQUIREMENTS).
      uses: optional inputs it takes when present.
      tags: extra MLflow tags (e.g. ``{"reconstruction": "true"}``).
    """

    name: ClassVar[str]
    display_name: ClassVar[str]
    paper_column: ClassVar[str | None] = None
    requires: ClassVar[frozenset[str]] = frozenset({"ids"})
    uses: ClassVar[frozenset[str]] = frozenset()
    tags: ClassVar[dict[str, str]] = {}
    #: How the next-item protocol scores a user vector against candidates: "cosine" or "dot".
    next_item_scoring: ClassVar[str] = "cosine"
    #: False for methods that learn nothing (raw content, popularity, random): their training budget
    #: is "untrained", not "not recorded" (a trained method records ``stats["training"]``, see
    #: methods/shared/training.py TrainingBudget).
    trains: ClassVar[bool] = True

    @abc.abstractmethod
    def fit(self, train: TrainView, features: ItemFeatures, cfg: dict[str, Any], ctx: RunContext) -> None:
        """Learn from the training view; ``cfg`` is the resolved config (see :mod:`benchmark.config`)."""

    @abc.abstractmethod
    def item_embeddings(self) -> np.ndarray:
        """float32 [n_items, d], row = item index. Zero rows rank last (e.g. cold items for ID methods)."""

    def query_embeddings(self) -> np.ndarray | None:
        """Optional query-side vectors [n_items, d] for asymmetric scorers (None = symmetric).

        Only the sanity baselines need it (popularity ranks every query's candidates alike); the
        paper's methods are all symmetric item-to-item MIPS.
        """
        return None

    # -- optional: the next-item protocol (methods with a user / sequence encoder) ---------------
    def user_embeddings(self, histories: Histories) -> np.ndarray:
        """float32 [len(histories), d]: one user vector per case from its item history.

        Optional. Methods that learn a user or sequence encoder (UniSRec, VQ-Rec, MISSRec,
        UniM2Rec, TransRec, SASRec) implement it and are then also judged by next-item retrieval
        (their papers' protocol); the others are simply absent from that table. ``histories`` are
        time-ordered, mixed-domain item indices; for unseen users none of them were training data.
        """
        raise NotImplementedError

    def next_item_embeddings(self) -> np.ndarray:
        """Candidate vectors [n_items, d] for the next-item protocol (default: ``item_embeddings``)."""
        return self.item_embeddings()

    @classmethod
    def supports_next_item(cls) -> bool:
        """True when the class overrides :meth:`user_embeddings`."""
        return cls.user_embeddings is not Method.user_embeddings

    # -- optional: source -> target transfer (the transfer suite's finetune_methods) ------------
    def fit_transfer(self, source: TrainView, target: TrainView, features: ItemFeatures, cfg: dict[str, Any],
                     ctx: RunContext) -> None:
        """Pretrain on the source domains' view, then fine-tune on the target domain's view.

        Optional: methods whose paper has a pretrain -> fine-tune recipe (UniSRec, VQ-Rec, MISSRec)
        implement it and then join the transfer grid beside TransRec; the others are skipped there
        with that reason. Afterwards the embeddings methods answer as after :meth:`fit`.
        """
        raise NotImplementedError

    @classmethod
    def supports_transfer(cls) -> bool:
        """True when the class overrides :meth:`fit_transfer`."""
        return cls.fit_transfer is not Method.fit_transfer

    def display(self, features: ItemFeatures | None = None) -> str:
        """The column name in tables (may depend on the run's encoders, e.g. the CLIP baseline)."""
        return self.display_name

    # -- metadata beside the module ------------------------------------------------------------
    @classmethod
    def home(cls) -> Path:
        return Path(inspect.getfile(cls)).resolve().parent

    @classmethod
    def _config_file(cls) -> dict[str, Any]:
        path = cls.home() / "config.yaml"
        if not path.exists():
            return {}
        return yaml.safe_load(path.read_text()) or {}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The commented defaults in ``config.yaml`` beside the method's module ({} if none; no ``scales``)."""
        data = cls._config_file()
        data.pop("scales", None)
        return data

    @classmethod
    def scale_presets(cls) -> dict[str, dict[str, Any]]:
        """The method's own scale presets: the ``scales:`` section of its ``config.yaml``.

        ``{tiny: {...}, small: {...}, paper: {...}}`` (any may be absent): the values a run at that
        ``--scale`` changes over the defaults, recorded in the run (``scaled_by_preset``). A suite
        that needs other values for a method gives its own ``scales.<scale>.methods_config.<method>``,
        which then replaces this preset at that scale (``{}`` = the plain defaults).
        """
        return cls._config_file().get("scales") or {}

    @classmethod
    def check_config(cls, cfg: dict[str, Any]) -> None:
        """Reject a resolved config the method cannot run: raise ConfigError (one line, naming the key).

        Called by the runner for every planned run, beside the device check and before any data
        loads, so a bad ``--set`` fails in seconds, not after feature encoding. Default: nothing to
        check (the runner has already checked key names, types and signs against ``config.yaml``).
        ``fit`` may call it again; it must not depend on the data.
        """
        return None

    @classmethod
    def card(cls) -> str:
        path = cls.home() / "card.md"
        return path.read_text() if path.exists() else ""

    @classmethod
    def summary(cls) -> str:
        """One line for ``benchmark list methods``: the first line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else cls.display_name
