"""Where supernets come from and go to: run directories, files, the model zoo and the Hugging Face Hub.

``resolve_supernet(spec)`` accepts a run directory, a ``.safetensors`` file, a zoo name (``khnet zoo list``)
or ``hf://ORG/NAME[@REVISION]`` (downloaded with huggingface_hub into its cache; offline it uses the cache or
says how to get the files). ``save_pretrained`` writes a Hub-style folder (``model.safetensors``,
``config.json``, ``README.md`` model card) and ``push_to_hub`` uploads one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from khnet.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError, atomic_write, load_supernet, save_supernet
from khnet.errors import KhnetError, UsageError

__all__ = [
    "ResolvedSupernet",
    "ZooEntry",
    "model_card",
    "pull_from_zoo",
    "push_to_hub",
    "resolve_supernet",
    "save_pretrained",
    "sha256_of",
    "zoo_entries",
]

HUB_FILES = [MODEL_FILE, CONFIG_FILE, "README.md"]
PAPER = (
    "Jingyue Zhuge, Christian Mayr, Anand Subramoney, David Kappel. Single Train Multi Deploy on Topology Search "
    "Spaces using Kshot-Hypernet. WANT@ICML 2024."
)
NB201 = (
    "Xuanyi Dong, Yi Yang. NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search. ICLR 2020."
)


@dataclass
class ResolvedSupernet:
    """A loaded supernet and where it came from.

    Attributes:
        model: the ``SuperNet``, in eval mode.
        source: the spec as given.
        results_dir: where evaluation results are stored and reused.
        dataset: the dataset it was trained on, or None when unknown.
        data_note: the caveat recorded at training time ('' if none).
        directory: the folder holding its files.
        train: the training settings from its config.json ({} when unknown); ``seed`` and ``valid_fraction``
            fix which training images were held out as the validation split.
        zoo: the registry entry when ``source`` named a zoo entry.
    """

    model: torch.nn.Module
    source: str
    results_dir: Path
    dataset: str | None
    data_note: str
    directory: Path
    train: dict[str, Any] = field(default_factory=dict)
    zoo: ZooEntry | None = None

    @property
    def shipped_results(self) -> Path | None:
        """The zoo entry's folder when it ships an evaluation table (read-only), else None."""
        return self.directory if self.zoo is not None and self.zoo.table else None

    def eval_settings(
        self,
        split: str = "valid",
        dataset: str | None = None,
        test_images: int | None = None,
        calib_images: int | None = None,
        calib_seed: int | None = None,
        batch_size: int = 512,
        data_dir: str | None = None,
    ):
        """``EvalSettings`` for this supernet: its training data and train/valid split; for a zoo entry with a
        shipped table, the table's settings wherever the caller gives none, so that the table answers (on
        ``valid``: its validation subset, recalibration images and seed; on ``test``: its recalibration on the
        whole test set), else the defaults (the whole split, 2,048 recalibration images, seed 0)."""
        from khnet.evaluate import EvalSettings

        table = dict(self.zoo.table.get("settings", {})) if self.zoo else {}
        if split != "valid":  # the table's test rows: its recalibration, on the whole test set
            table.pop("test_images", None)
        return EvalSettings(
            dataset=dataset or self.dataset or "sample",
            split=split,
            test_images=test_images if test_images is not None else table.get("test_images"),
            calib_images=calib_images if calib_images is not None else table.get("calib_images", 2048),
            calib_seed=calib_seed if calib_seed is not None else table.get("calib_seed", 0),
            batch_size=batch_size,
            data_dir=data_dir,
            **self.split_settings(),
        )

    def calibration_dataset(self, dataset: str | None = None, data_dir: str | None = None) -> tuple[str, str]:
        """The dataset to recalibrate BatchNorm on, and a note ('' if none) when it is not the training data.

        ``dataset`` when given; else the training dataset; when that is not on this machine and the zoo entry
        names a ``calibration_fallback`` (images of the same source, e.g. the shipped sample of the JPEG copy),
        the fallback, with a note that says so. Anything else missing raises ``DataError`` (where to put it).
        """
        from khnet.data import load_dataset
        from khnet.errors import DataError

        if dataset:
            return dataset, ""
        name = self.dataset or "sample"
        try:
            load_dataset(name, "train", root=data_dir, **_split_kwargs(self.split_settings()))
            return name, ""
        except DataError as err:
            fallback = self.zoo.calibration_fallback if self.zoo else None
            if not fallback:
                raise
            return fallback, (
                f"BatchNorm recalibrated on {fallback!r} instead of {name!r}, which is not here ({err}); "
                f"the zoo entry's table was measured with {name!r}"
            )

    def split_settings(self) -> dict[str, Any]:
        """``EvalSettings`` fields that reproduce the training run's train/valid split."""
        return {
            "split_seed": int(self.train.get("seed", 0)),
            "valid_fraction": float(self.train.get("valid_fraction", 0.1)),
        }


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_kwargs(split: dict[str, Any]) -> dict[str, Any]:
    return {"valid_fraction": split["valid_fraction"], "seed": split["split_seed"]}


# ---------------------------------------------------------------- the zoo
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
        folder = _download(entry.source["repo"], entry.source.get("revision"))
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


# ---------------------------------------------------------------- the Hub
def _download(repo_id: str, revision: str | None) -> Path:
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


def resolve_supernet(spec: str | Path, device: str | torch.device = "cpu") -> ResolvedSupernet:
    """Load the supernet named by ``spec``: run directory, ``.safetensors`` file, zoo name (or ``zoo:NAME``) or
    ``hf://ORG/NAME[@REV]``; ``device`` is ``cpu``, ``cuda[:N]`` or ``auto``."""
    from khnet.runtime import resolve_device

    device = resolve_device(device)
    text = str(spec)
    entry = None
    if text.startswith("hf://"):
        repo, _, revision = text[len("hf://") :].partition("@")
        path = _download(repo, revision or None)
        results = Path(os.environ.get("KHNET_RESULTS", Path.home() / ".cache" / "khnet" / "results"))
    elif text.startswith("zoo:") or text in zoo_entries():
        name = text.removeprefix("zoo:")
        if not text.startswith("zoo:") and Path(text).expanduser().exists():
            raise UsageError(
                f"{text!r} is both a zoo entry and a local path; write zoo:{text} for the entry or ./{text} for the "
                "path"
            )
        path = pull_from_zoo(name)
        entry = zoo_entries()[name]
        results = Path(os.environ.get("KHNET_RESULTS", Path.home() / ".cache" / "khnet" / "results"))
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise CheckpointError(
                f"supernet {text!r} not found: give a run directory, a .safetensors file, a zoo name "
                "(khnet zoo list) or hf://ORG/NAME"
            )
        results = path if path.is_dir() else path.parent
    model = load_supernet(path, device=device).eval()
    directory = path if path.is_dir() else path.parent
    dataset, note, train = None, "", {}
    config_file = directory / CONFIG_FILE
    if config_file.is_file():
        data = json.loads(config_file.read_text())
        train = data.get("train") or {}
        dataset = (data.get("dataset") or {}).get("name") or train.get("dataset")
        note = (data.get("dataset") or {}).get("note", "")
    return ResolvedSupernet(model, text, results, dataset, note, directory, train, entry)


def model_card(config: dict[str, Any], param_counts: dict[str, int], metrics: dict[str, Any] | None = None) -> str:
    """A README.md for the Hub: what it is, how it was trained, its metrics, how to load it, citations."""
    model, train = config.get("model", {}), config.get("train", {})
    dataset = (config.get("dataset") or {}).get("name", train.get("dataset", "unknown"))
    note = (config.get("dataset") or {}).get("note", "")
    rows = "\n".join(f"| {k} | {v} |" for k, v in (metrics or {}).items() if not isinstance(v, (dict, list)))
    return f"""---
library_name: khnet
tags: [neural-architecture-search, nas-bench-201, hypernetwork, supernet, pytorch]
license: mit
---

# khnet supernet: {model.get("method", "kshot-hypernet")} on {dataset}

A Kshot-Hypernet supernet over the NAS-Bench-201 search space (15,625 architectures): any subnet can be
baked out and deployed without retraining.

- method: `{model.get("method")}`; C={model.get("channels")}, cells per stage={model.get("cells_per_stage")},
  h={model.get("hidden")}, dictionary size N={model.get("num_kernels")}, classes={model.get("num_classes")}
- parameters: {param_counts.get("total", 0) / 1e6:.3f} M in all
- trained with `khnet train`: {json.dumps(train, sort_keys=True)}
- data: {dataset}. {note}

## Metrics

| metric | value |
| --- | --- |
{rows or "| (not evaluated yet) | |"}

## Use

```python
from khnet.hub import resolve_supernet

supernet = resolve_supernet("hf://ORG/NAME").model
net = supernet.subnet("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
```

or `khnet sample ARCH --supernet hf://ORG/NAME -o net.pt` for a standalone network (recalibrate BatchNorm first).

## Citation

- {PAPER}
- {NB201}
"""


def save_pretrained(supernet: torch.nn.Module, directory: str | Path, config: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card into ``directory``."""
    directory = Path(directory)
    config = dict(config or {})
    extra = {k: v for k, v in config.items() if k != "model"}
    save_supernet(supernet, directory, extra=extra)
    card = model_card({"model": supernet.config.to_dict(), **extra}, supernet.param_counts(), metrics)
    atomic_write(directory / "README.md", lambda tmp: tmp.write_text(card))
    return directory


def push_to_hub(directory: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                token: str | None = None) -> str:  # fmt: skip
    """Upload a ``save_pretrained`` folder to the Hub repository ``repo_id``; returns the commit URL."""
    from huggingface_hub import HfApi

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise KhnetError("HF_HUB_OFFLINE is set: unset it to push to the Hub")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(folder_path=str(directory), repo_id=repo_id, revision=revision, allow_patterns=HUB_FILES)
    return str(getattr(info, "commit_url", info))
