"""Where supernets come from: a run directory or a ``.safetensors`` file (later: the zoo and the Hub).

``resolve_supernet(spec)`` returns the model, the directory where its evaluation results live, and the
dataset it was trained on (from its ``config.json``), so that ``eval`` and ``search`` default to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from khnet.checkpoint import CONFIG_FILE, CheckpointError, load_supernet

__all__ = ["ResolvedSupernet", "resolve_supernet"]


@dataclass
class ResolvedSupernet:
    """A loaded supernet and where it came from.

    Attributes:
        model: the ``SuperNet``, in eval mode.
        source: the spec as given.
        results_dir: where evaluation results are stored and reused.
        dataset: the dataset it was trained on, or None when unknown.
        data_note: the caveat recorded at training time ('' if none).
    """

    model: torch.nn.Module
    source: str
    results_dir: Path
    dataset: str | None
    data_note: str


def resolve_supernet(spec: str | Path, device: str | torch.device = "cpu") -> ResolvedSupernet:
    """Load the supernet named by ``spec``: a run directory or a ``.safetensors`` file."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"supernet {spec!r} not found: give a run directory (khnet train -o DIR) or a .safetensors file"
        )
    model = load_supernet(path, device=device).eval()
    directory = path if path.is_dir() else path.parent
    dataset, note = None, ""
    config_file = directory / CONFIG_FILE
    if config_file.is_file():
        data = json.loads(config_file.read_text())
        dataset = (data.get("dataset") or {}).get("name") or (data.get("train") or {}).get("dataset")
        note = (data.get("dataset") or {}).get("note", "")
    return ResolvedSupernet(model, str(spec), directory, dataset, note)
