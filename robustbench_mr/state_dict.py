"""What a bare state_dict looks like (weights without an architecture): asked by the checkpoint
reader (to point such a file at ``mr-eval import-torch``) and by the importer itself. Imports no
torch until asked."""

from __future__ import annotations

from typing import Any

# the keys under which foreign files commonly nest a state_dict (``mr-eval import-torch``)
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")


def is_tensor_dict(obj: Any) -> bool:
    """A non-empty dict of named tensors, not itself a wrapper under one of ``STATE_DICT_KEYS``."""
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj) \
        and any(isinstance(v, torch.Tensor) for v in obj.values()) and not any(k in obj for k in STATE_DICT_KEYS)


def looks_like_state_dict(obj: Any) -> bool:
    """A dict of tensors, a dict holding one under a common key, or a list of those."""
    if is_tensor_dict(obj):
        return True
    if isinstance(obj, dict):
        return any(looks_like_state_dict(obj[k]) for k in STATE_DICT_KEYS if k in obj)
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(is_tensor_dict(v) for v in obj)
    return False
