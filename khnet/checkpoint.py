"""Files that must never be half-written: atomic writes, supernets as safetensors, training checkpoints.

A supernet on disk is ``model.safetensors`` (weights, beta included) beside ``config.json``
(``{"model": SupernetConfig, ...}``); the config is also stored in the safetensors metadata, so a lone
``.safetensors`` file loads too. Checkpoints are ``torch.save`` dicts of tensors and plain values, read back
with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from khnet.config import ConfigError, SupernetConfig
from khnet.errors import CheckpointError

__all__ = [
    "CheckpointError",
    "atomic_write",
    "canonical_safetensors",
    "load_checkpoint",
    "load_supernet",
    "save_checkpoint",
    "save_supernet",
    "state_hash",
]

MODEL_FILE, CONFIG_FILE, CHECKPOINT_FILE = "model.safetensors", "config.json", "checkpoint.pt"


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


def save_supernet(model: torch.nn.Module, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` atomically; returns the weights' path.

    Identical weights and config give byte-identical files (``canonical_safetensors``)."""
    from safetensors.torch import save

    directory = Path(directory)
    config = model.config.to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "khnet_model_config": json.dumps(config, sort_keys=True)}
    blob = canonical_safetensors(save(state, metadata=metadata))
    atomic_write(directory / MODEL_FILE, lambda tmp: tmp.write_bytes(blob))
    write_json(directory / CONFIG_FILE, {"model": config, **(extra or {})})
    return directory / MODEL_FILE


def _read_config(path: Path) -> SupernetConfig:
    """The model config from ``config.json`` beside ``path``, else from the safetensors metadata."""
    from safetensors import safe_open

    config_file = path.parent / CONFIG_FILE
    try:
        if config_file.is_file():
            data = json.loads(config_file.read_text())
            return SupernetConfig.from_dict(data.get("model", data))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "khnet_model_config" not in meta:
            raise CheckpointError(f"{path} has no khnet config: put its config.json beside it")
        return SupernetConfig.from_dict(json.loads(meta["khnet_model_config"]))
    except (json.JSONDecodeError, KeyError, ConfigError) as err:
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


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a supernet from a run directory or a ``.safetensors`` file (with its ``config.json``).

    Raises:
        CheckpointError: the file is missing, truncated or tampered with, or does not match its config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from khnet.supernet import SuperNet

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no supernet at {path}: give a run directory or a .safetensors file")
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path} is not a supernet file (.safetensors); for a training checkpoint give its run directory "
            f"({path.parent})"
        )
    config = _read_config(path)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}); re-download or re-train it") from None
    model = SuperNet(config).to(device)
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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: was the run started with this directory?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle error, tampering: one message for all
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(err).__name__}: {err})") from None
