"""The model zoo and the Hub's files, without torch: registry entries, their verified folders, snapshots.

The zoo lives in ``zoo/`` of the source tree and installs with khnet as ``khnet/zoo``; ``$KHNET_ZOO`` points
elsewhere. ``khnet zoo list`` and the checks here import no torch, so they answer at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from khnet.errors import CheckpointError

__all__ = ["HUB_FILES", "ZooEntry", "download_snapshot", "pull_from_zoo", "sha256_of", "zoo_dir", "zoo_entries"]

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"
HUB_FILES = [MODEL_FILE, CONFIG_FILE, "training.json", "README.md"]


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ZooEntry:
    """One published supernet (an entry of ``registry.json`` in the zoo folder).

    Attributes:
        name, description, dataset (what ``load_dataset`` calls its training data), method, source
        (``{"path": ...}`` inside the zoo folder or ``{"repo": ..., "revision": ...}`` on the Hub), sha256 (of
        ``model.safetensors``), metrics (headline figures, accuracies in percent), command (how it was made).
        scale: the network it deploys, e.g. ``{"channels": 8, "cells_per_stage": 1, "mparams": 1.8}``.
        recipe: the training recipe in words (method, schedule, epochs, wall time).
        table: the shipped whole-space evaluation, ``{"file": ..., "state_hash": ..., "settings": {...}}`` with
            the ``EvalSettings`` fields it was measured with; search answers from it without any data.
        calibration_fallback: a dataset ``khnet sample`` may recalibrate BatchNorm on when ``dataset`` is not on
            this machine (it says so when it does), e.g. ``sample`` for an entry trained on the JPEG copy.
        config_sha256: sha256 of its ``config.json`` (which decides the network built around the weights).
    """

    name: str
    description: str
    dataset: str
    method: str
    source: dict[str, str]
    sha256: str
    metrics: dict[str, Any]
    command: str
    scale: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""
    table: dict[str, Any] = field(default_factory=dict)
    calibration_fallback: str | None = None
    config_sha256: str | None = None


def zoo_dir() -> Path:
    """The zoo folder: ``$KHNET_ZOO``, else the one installed with khnet (``khnet/zoo`` in a wheel), else
    ``zoo/`` of the source tree khnet runs from."""
    if os.environ.get("KHNET_ZOO"):
        return Path(os.environ["KHNET_ZOO"])
    package = Path(__file__).resolve().parent
    installed = package / "zoo"
    return installed if (installed / "registry.json").is_file() else package.parent / "zoo"


def zoo_entries() -> dict[str, ZooEntry]:
    """The registry, by name (empty when the zoo folder is absent)."""
    registry = zoo_dir() / "registry.json"
    if not registry.is_file():
        return {}
    try:
        return {e["name"]: ZooEntry(**e) for e in json.loads(registry.read_text())["supernets"]}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{registry} is malformed ({type(err).__name__}: {err}); restore it from khnet") from None


def pull_from_zoo(name: str) -> Path:
    """The verified local folder of zoo entry ``name`` (fetched from the Hub first if it lives there)."""
    entries = zoo_entries()
    if name not in entries:
        known = ", ".join(entries) or "none (no zoo/registry.json found; set KHNET_ZOO)"
        raise CheckpointError(f"no zoo entry {name!r}; known: {known}")
    entry = entries[name]
    if "path" in entry.source:
        root = zoo_dir().resolve()
        weights = (root / entry.source["path"]).resolve()
        if not weights.is_relative_to(root):
            raise CheckpointError(
                f"zoo entry {name!r}: source.path {entry.source['path']!r} leaves the zoo folder {root}"
            )
        if not weights.is_file():
            raise CheckpointError(f"zoo entry {name!r} points at {weights}, which is missing")
    else:
        folder = download_snapshot(entry.source["repo"], entry.source.get("revision"))
        weights = folder / MODEL_FILE
    expected = {weights: entry.sha256}
    if entry.config_sha256:
        expected[weights.parent / CONFIG_FILE] = entry.config_sha256
    for file, digest in expected.items():
        actual = sha256_of(file) if file.is_file() else "missing"
        if actual != digest:
            raise CheckpointError(
                f"zoo entry {name!r}: {file} has sha256 {actual[:16]}..., expected {digest[:16]}...; reinstall khnet "
                "or pull the entry again"
            )
    return weights.parent


def download_snapshot(repo_id: str, revision: str | None) -> Path:
    """The local folder of Hub repository ``repo_id`` (its supernet files), from the Hugging Face cache or
    downloaded when online; offline and not cached, a one-line error that says how to get it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise CheckpointError(
            f"hf://{repo_id} is not a Hub repository id: write hf://ORG/NAME[@REVISION] (letters, digits, '-', '_', "
            "'.'; at most 96 characters per part)"
        ) from None

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"hf://{repo_id}{'@' + revision if revision else ''} is not in the Hugging Face cache and the Hub cannot "
            "be reached (offline); download it once online, or pass a local folder holding model.safetensors and "
            "config.json"
        ) from None
    except HfHubHTTPError as err:
        raise CheckpointError(f"hf://{repo_id}: {str(err).splitlines()[0]}") from None
