"""Supernets and training checkpoints on disk.

A supernet folder is ``model.safetensors`` + a flat ``config.json`` + ``training.json`` (``khnet.files`` says
what each holds; the file helpers live there and are re-exported here). Checkpoints are ``torch.save`` dicts of
tensors and plain values, read back with ``weights_only=True``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from khnet.errors import CheckpointError
from khnet.files import (
    CONFIG_FILE,
    METADATA_KEYS,
    MODEL_FILE,
    TRAINING_FILE,
    atomic_write,
    canonical_safetensors,
    load_weights,
    read_model_config,
    read_run_config,
    state_hash,
    write_json,
    write_supernet_files,
)

if TYPE_CHECKING:
    from khnet.supernet import SuperNet

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "METRIC_FIELDS",
    "MODEL_FILE",
    "TRAINING_FILE",
    "CheckpointError",
    "append_metrics",
    "atomic_write",
    "canonical_safetensors",
    "load_checkpoint",
    "load_supernet",
    "read_run_config",
    "save_checkpoint",
    "save_supernet",
    "state_hash",
    "write_json",
]

CHECKPOINT_FILE = "checkpoint.pt"


def save_supernet(model: SuperNet, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors``, the flat ``config.json`` and (when ``extra`` has training details)
    ``training.json`` into ``directory`` atomically; returns the weights' path.

    ``extra`` may hold ``input`` and ``khnet_version`` (into config.json) and ``train``, ``dataset``,
    ``param_counts``, ``progress`` (into training.json). Identical weights and config give byte-identical files.
    """
    extra = dict(extra or {})
    metadata = {k: extra.pop(k) for k in METADATA_KEYS if k in extra}
    return write_supernet_files(directory, model.state_dict(), model.config.to_dict(), metadata, extra or None)


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> SuperNet:
    """Load a supernet from a run directory or a ``.safetensors`` file (with its ``config.json``).

    Raises:
        CheckpointError: the file is missing, truncated or tampered with, or does not match its config.
    """
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
    config = read_model_config(path)
    return load_weights(SuperNet(config).to(device), path, device)


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


METRICS_FILE = "metrics.csv"
METRIC_FIELDS = ("epoch", "step", "global_step", "lr", "loss_teacher", "loss_subnets", "acc_teacher", "images_per_s")


def append_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` (``METRIC_FIELDS`` each) to the run's ``metrics.csv``, header first; written atomically."""
    path = run_dir / METRICS_FILE
    old = path.read_text() if path.is_file() else ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_FIELDS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(old + out.getvalue()))
