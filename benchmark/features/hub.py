"""What the encoder modules share below the registry: the fallback encoder names their error
messages suggest, and whether the Hugging Face hub can be asked for weights.

Kept apart from :mod:`benchmark.features.registry` so ``text`` and ``image`` import it downward
while the registry imports them (no cycle).
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

TEXT_FALLBACK = "minilm"
IMAGE_FALLBACK = "offline-descriptor"

_TRUE = {"1", "true", "yes", "on"}
_probe_lock = threading.Lock()
_probe_result: dict[str, bool] = {}


def hub_offline_requested() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect (False at once when offline is set).

    Asked once per process, in a thread with a hard timeout, so a machine without a network
    fails fast instead of sitting in the hub clients' retry loops.
    """
    if hub_offline_requested():
        return False
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    host = urlparse(endpoint).hostname or "huggingface.co"
    with _probe_lock:
        if host not in _probe_result:
            result: list[bool] = []

            def probe() -> None:
                try:
                    socket.create_connection((host, 443), timeout=timeout).close()
                    result.append(True)
                except OSError:
                    result.append(False)

            t = threading.Thread(target=probe, daemon=True)
            t.start()
            t.join(timeout + 0.5)
            _probe_result[host] = bool(result and result[0])
        return _probe_result[host]
