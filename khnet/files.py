"""Files that must never be half-written, and the on-disk form of a supernet, below the model code (torch is
imported only by the functions that need it, so the CLI can read these files without it).

A supernet folder holds ``model.safetensors`` (weights; the model config also in its metadata, so a lone file
loads), ``config.json`` and, when it was trained by khnet, ``training.json``:

- ``config.json`` is flat: the ``SupernetConfig`` fields, plus ``input`` (resolution and normalisation the
  network expects) and ``khnet_version``. It is what ``SuperNet.from_pretrained`` (huggingface_hub's
  ``PyTorchModelHubMixin``) reads, and it holds no local paths.
- ``training.json``: how it was trained (``train`` settings, ``dataset``, ``param_counts``, ``progress``).

Folders written by khnet 0.1.0 (the zoo entry cifar10-jpeg-c8 among them) have one nested ``config.json``
(``{"model": ..., "train": ..., ...}``); ``read_run_config`` reads both forms into the nested one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from khnet.config import SupernetConfig
from khnet.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_FILE",
    "METADATA_KEYS",
    "MODEL_FILE",
    "SUMMARY_FILE",
    "TRAINING_FILE",
    "atomic_write",
    "canonical_safetensors",
    "load_weights",
    "model_config_from_dict",
    "read_model_config",
    "read_run_config",
    "state_hash",
    "write_json",
    "write_run_configs",
    "write_supernet_files",
]

MODEL_FILE, CONFIG_FILE, TRAINING_FILE = "model.safetensors", "config.json", "training.json"
SUMMARY_FILE = "eval-summary.json"  # the last `khnet eval` summary, beside its results, for the model card
METADATA_KEYS = ("input", "khnet_version")  # the keys of a flat config.json that are not SupernetConfig fields
_MODEL_KEYS = tuple(f.name for f in fields(SupernetConfig))


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the new one, never a partial one, even if the process dies mid-write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name ends like the target, for writers that check suffixes (torch.export wants .pt2)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (first 16 hex digits): a content id."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)  # 1-D, so 0-d tensors can be viewed as bytes
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header written with sorted keys.

    safetensors keeps the metadata in a hash map, so two saves of identical tensors can order the header's keys
    differently and differ in their bytes (and sha256). Offsets count from the end of the header, so rewriting
    it (space-padded to 8 bytes, as the format asks) leaves the tensors untouched.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


# ---------------------------------------------------------------- configs
def model_config_from_dict(data: dict[str, Any]) -> SupernetConfig:
    """A ``SupernetConfig`` from a flat ``config.json`` (its metadata keys ignored) or a nested one (``model``).

    Raises:
        ConfigError: a key that is neither a config field nor metadata (a typo must not pass silently).
    """
    if isinstance(data.get("model"), dict):
        return SupernetConfig.from_dict(data["model"])
    unknown = sorted(set(data) - set(_MODEL_KEYS) - set(METADATA_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}")
    return SupernetConfig.from_dict({k: v for k, v in data.items() if k in _MODEL_KEYS})


def read_run_config(directory: str | Path) -> dict[str, Any]:
    """Everything recorded beside a supernet, nested: ``model``, ``input``, ``khnet_version`` and, from
    ``training.json``, ``train``, ``dataset``, ``param_counts``, ``progress`` ({} when there is no config.json).

    Raises:
        CheckpointError: a config.json or training.json that is not a JSON object.
    """
    directory = Path(directory)
    out: dict[str, Any] = {}
    for name in (CONFIG_FILE, TRAINING_FILE):
        path = directory / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot read {path}: {err}") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object")
        if name == CONFIG_FILE and not isinstance(data.get("model"), dict):  # flat form
            model = {k: v for k, v in data.items() if k not in METADATA_KEYS}
            data = {"model": model, **{k: data[k] for k in METADATA_KEYS if k in data}}
        out.update(data)
    return out


def read_model_config(path: str | Path) -> SupernetConfig:
    """The model config of the supernet file ``path`` (or of the ``model.safetensors`` in the folder ``path``):
    from the ``config.json`` beside it, else from the safetensors metadata."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    config_file = path.parent / CONFIG_FILE
    try:
        if config_file.is_file():
            return model_config_from_dict(json.loads(config_file.read_text()))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "khnet_model_config" not in meta:
            raise CheckpointError(f"{path} has no khnet config: put its config.json beside it")
        return SupernetConfig.from_dict(json.loads(meta["khnet_model_config"]))
    except (json.JSONDecodeError, KeyError, ConfigError, AttributeError) as err:
        raise CheckpointError(f"cannot read the supernet config for {path}: {err}") from None


def _absent_shape_keys(path: Path) -> list[str]:
    """The shape-deciding keys a ``config.json`` beside ``path`` does not give (they fall back to defaults)."""
    config_file = path.parent / CONFIG_FILE
    if not config_file.is_file():
        return []
    data = json.loads(config_file.read_text())
    data = data.get("model", data)
    return [
        k for k in ("method", "channels", "cells_per_stage", "num_classes", "hidden", "num_kernels") if k not in data
    ]


# ---------------------------------------------------------------- weights
def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the safetensors file ``path`` into ``model`` strictly; returns ``model``.

    Raises:
        CheckpointError: the file is corrupt or truncated, or its tensors do not match the model (named).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); re-download or re-train it") from None
    own = model.state_dict()
    for name, tensor in state.items():
        if name in own and own[name].shape != tensor.shape:
            absent = _absent_shape_keys(path)
            hint = f"; {CONFIG_FILE} lacks {', '.join(absent)}, so defaults were used" if absent else ""
            raise CheckpointError(
                f"{path} does not match its config: {name} is {tuple(tensor.shape)} in the file but "
                f"{tuple(own[name].shape)} for the config{hint}"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its config ({len(missing)} missing, {len(unexpected)} unexpected tensors, "
            f"e.g. {(missing or unexpected)[0]})"
        )
    return model


def write_supernet_files(
    directory: str | Path,
    state: dict[str, torch.Tensor],
    model_config: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` (byte-identical for identical tensors), the flat ``config.json``
    (``model_config`` plus ``metadata``: ``input``, ``khnet_version``) and, when given, ``training.json``, each
    atomically; returns the weights' path."""
    from safetensors.torch import save

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": "pt", "khnet_model_config": json.dumps(model_config, sort_keys=True)}
    blob = canonical_safetensors(save(state, metadata=meta))
    atomic_write(directory / MODEL_FILE, lambda tmp: tmp.write_bytes(blob))
    write_run_configs(directory, model_config, metadata, training)
    return directory / MODEL_FILE


def write_run_configs(
    directory: str | Path,
    model_config: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> None:
    """Write the flat ``config.json`` (``model_config`` plus the ``METADATA_KEYS`` of ``metadata``) and, when
    given, ``training.json``, each atomically."""
    directory = Path(directory)
    extra = {k: v for k, v in (metadata or {}).items() if k in METADATA_KEYS and v is not None}
    write_json(directory / CONFIG_FILE, {**model_config, **extra})
    if training is not None:
        write_json(directory / TRAINING_FILE, training)
