"""Where supernets come from and go to: run directories, files, the model zoo and the Hugging Face Hub.

``resolve_supernet(spec)`` accepts a run directory, a ``.safetensors`` file, a zoo name (``khnet zoo list``)
or ``hf://ORG/NAME[@REVISION]`` (downloaded with huggingface_hub into its cache; offline it uses the cache or
says how to get the files). ``save_pretrained`` writes a Hub-style folder (``model.safetensors``,
``config.json``, ``README.md`` model card) and ``push_to_hub`` uploads one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from khnet.card import model_card
from khnet.checkpoint import CheckpointError, atomic_write, load_supernet, read_run_config, save_supernet
from khnet.errors import KhnetError, UsageError
from khnet.files import METADATA_KEYS
from khnet.zoo import HUB_FILES, ZooEntry, download_snapshot, pull_from_zoo, sha256_of, zoo_entries

if TYPE_CHECKING:
    from khnet.supernet import SuperNet

__all__ = [
    "ResolvedSupernet",
    "ZooEntry",
    "model_card",
    "pull_from_zoo",
    "push_to_hub",
    "resolve_supernet",
    "save_pretrained",
    "sha256_of",
    "shareable_training",
    "zoo_entries",
]


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

    model: SuperNet
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
        from khnet.config import EvalSettings

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
            data_dir=self.data_root(dataset, data_dir),
            **self.split_settings(),
        )

    def data_root(self, dataset: str | None = None, data_dir: str | None = None) -> str | None:
        """Where to read ``dataset`` from: ``data_dir`` when given; for the training dataset (``dataset`` None or
        the same name), the folder the run was trained from when it still exists; else None (the default root).
        So ``khnet eval RUN`` finds data that ``khnet train --data-dir`` was given without repeating it."""
        if data_dir:
            return data_dir
        trained_from = self.train.get("data_dir")
        if dataset in (None, self.dataset) and trained_from and Path(trained_from).expanduser().is_dir():
            return str(trained_from)
        return None

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
        data_dir = self.data_root(name, data_dir)
        try:
            split = self.split_settings()
            load_dataset(name, "train", root=data_dir, valid_fraction=split["valid_fraction"], seed=split["split_seed"])
            return name, ""
        except DataError:
            fallback = self.zoo.calibration_fallback if self.zoo else None
            if not fallback:
                raise
            from khnet.data import default_data_root

            where = Path(data_dir).expanduser() if data_dir else default_data_root()
            return fallback, (
                f"BatchNorm recalibrated on {fallback!r} instead of {name!r}, which is not in {where}; the zoo "
                f"entry's table was measured with {name!r} (put it there, or pass --data-dir, for the same numbers)"
            )

    def split_settings(self) -> dict[str, Any]:
        """``EvalSettings`` fields that reproduce the training run's train/valid split."""
        return {
            "split_seed": int(self.train.get("seed", 0)),
            "valid_fraction": float(self.train.get("valid_fraction", 0.1)),
        }


def _results_cache() -> Path:
    """Where results of supernets that do not live in a run directory are stored: ``$KHNET_RESULTS``."""
    return Path(os.environ.get("KHNET_RESULTS", Path.home() / ".cache" / "khnet" / "results"))


# ---------------------------------------------------------------- resolving a spec
def resolve_supernet(spec: str | Path, device: str | torch.device = "cpu") -> ResolvedSupernet:
    """Load the supernet named by ``spec``: run directory, ``.safetensors`` file, zoo name (or ``zoo:NAME``) or
    ``hf://ORG/NAME[@REV]``; ``device`` is ``cpu``, ``cuda[:N]`` or ``auto``."""
    from khnet.runtime import resolve_device

    device = resolve_device(device)
    text = str(spec)
    entry = None
    entries = {} if text.startswith("hf://") else zoo_entries()
    if text.startswith("hf://"):
        repo, _, revision = text[len("hf://") :].partition("@")
        path = download_snapshot(repo, revision or None)
        results = _results_cache()
    elif text.startswith("zoo:") or text in entries:
        name = text.removeprefix("zoo:")
        if not text.startswith("zoo:") and Path(text).expanduser().exists():
            raise UsageError(
                f"{text!r} is both a zoo entry and a local path; write zoo:{text} for the entry or ./{text} for the "
                "path"
            )
        path = pull_from_zoo(name)
        entry = entries[name]
        results = _results_cache()
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
    data = read_run_config(directory)
    train = data.get("train") or {}
    dataset = (data.get("dataset") or {}).get("name") or train.get("dataset")
    note = (data.get("dataset") or {}).get("note", "")
    return ResolvedSupernet(model, text, results, dataset, note, directory, train, entry)


def shareable_training(training: dict[str, Any]) -> dict[str, Any]:
    """``training.json`` contents without local paths (``train.data_dir``, ``imagefolder:/abs/path``)."""
    out = json.loads(json.dumps(training))  # a deep copy of plain JSON
    train = out.get("train") or {}
    if "data_dir" in train:
        train["data_dir"] = None
    for holder, key in ((train, "dataset"), (out.get("dataset") or {}, "name")):
        value = holder.get(key)
        if isinstance(value, str) and ":" in value:
            holder[key] = value.split(":", 1)[0]  # imagefolder:/home/me/data -> imagefolder
    return out


def save_pretrained(
    supernet: SuperNet,
    directory: str | Path,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    overwrite_card: bool = False,
) -> Path:
    """Write a Hub folder: ``model.safetensors``, flat ``config.json``, ``training.json`` (without local paths)
    and a ``README.md`` model card (an existing README is kept unless ``overwrite_card``).

    Args:
        supernet: the ``SuperNet``.
        directory: the folder (created when missing).
        config: ``read_run_config`` output of where it came from (training details, input normalisation).
        metrics: figures for the card (an eval summary or a zoo entry's metrics).
        overwrite_card: replace an existing README.md.
    """
    from khnet import __version__

    directory = Path(directory)
    config = dict(config or {})
    training = shareable_training({k: v for k, v in config.items() if k not in ("model", *METADATA_KEYS)})
    input_spec = config.get("input") or _input_of((training.get("dataset") or {}).get("name"))
    extra = {"input": input_spec, "khnet_version": __version__, **training}
    save_supernet(supernet, directory, extra=extra)
    readme = directory / "README.md"
    if overwrite_card or not readme.exists():
        card = model_card({**training, "model": supernet.config.to_dict()}, supernet.param_counts(), metrics)
        atomic_write(readme, lambda tmp: tmp.write_text(str(card)))
    return directory


def _input_of(dataset: str | None) -> dict[str, Any] | None:
    """Resolution and normalisation of a known dataset (folders of khnet 0.1.0 did not record them)."""
    from khnet.data import dataset_info
    from khnet.errors import DataUsageError

    if not dataset:
        return None
    try:
        return dataset_info(dataset).input_spec()
    except DataUsageError:
        return None


def push_to_hub(directory: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                token: str | None = None, overwrite_card: bool = False) -> str:  # fmt: skip
    """Upload a ``save_pretrained`` folder to the Hub repository ``repo_id``; returns the commit URL. A README
    already in the repository is kept unless ``overwrite_card``; requests carry ``library_name=khnet``."""
    from huggingface_hub import HfApi

    from khnet import __version__

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise KhnetError("HF_HUB_OFFLINE is set: unset it to push to the Hub")
    api = HfApi(token=token, library_name="khnet", library_version=__version__)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    files = list(HUB_FILES)
    if not overwrite_card and api.file_exists(repo_id, "README.md", revision=revision):
        files.remove("README.md")
    info = api.upload_folder(folder_path=str(directory), repo_id=repo_id, revision=revision, allow_patterns=files)
    return str(getattr(info, "commit_url", info))
