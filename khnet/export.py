"""Standalone subnets for deployment: bake from a supernet, recalibrate BatchNorm, save in a chosen format.

``save_network(net, path)`` picks the format from the suffix:

- ``.pt`` / ``.pt2``: a ``torch.export`` program with a dynamic batch dimension (``torch.export.save``);
  load it with plain ``torch.export.load(path).module()``, no khnet needed.
- ``.safetensors``: the weights under the reference network's keys, plus ``<stem>.json`` beside it (arch,
  classes, width, depth, normalisation), so ``NB201Net`` or the benchmark's own code can load them.
- ``.onnx``: ONNX (needs the ``onnx`` and ``onnxscript`` packages), checked with onnxruntime when installed.
- ``compile=True``: an AOTInductor package (``.pt2``) for the fastest inference on this device; load it with
  ``torch._inductor.aoti_load_package(path)``.

Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from khnet.batchnorm import fold_bn
from khnet.checkpoint import atomic_write
from khnet.data import DatasetInfo
from khnet.errors import ExportError, ExportFormatError, UsageError
from khnet.network import NB201Net
from khnet.space import Arch

if TYPE_CHECKING:
    from khnet.supernet import SuperNet

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportFormatError",
    "bake_subnet",
    "load_network",
    "network_config",
    "save_network",
]

FORMATS = (".pt", ".pt2", ".safetensors", ".onnx")


def network_config(net: NB201Net, info: DatasetInfo | None = None, folded: bool = False) -> dict[str, Any]:
    """What a user needs to run ``net``: arch, shape, input normalisation, costs (MFLOPs, M params).

    Unfolded, it is also an xautodl network config: ``get_cell_based_tiny_net(config)`` (the benchmark's own
    code, via ``name: infer.tiny`` and ``arch_str``) builds the ``TinyNetwork`` whose state_dict the exported
    ``.safetensors`` loads strictly."""
    resolution = info.resolution if info else 32
    cost = net.arch.cost(num_classes=net.num_classes, resolution=resolution, C=net.C, N=net.N)
    xautodl = {} if folded else {"name": "infer.tiny", "arch_str": str(net.arch)}
    return {
        **xautodl,
        "arch": str(net.arch),
        "index": net.arch.index,
        "num_classes": net.num_classes,
        "C": net.C,
        "N": net.N,
        "input": {
            "resolution": resolution,
            "mean": list(info.mean) if info else None,
            "std": list(info.std) if info else None,
            "layout": "NCHW float32, RGB in [0, 1] then (x - mean) / std",
        },
        "dataset": info.name if info else None,
        "mflops": round(cost.mflops, 5),
        "mparams": round(cost.mparams, 6),
        "batchnorm_folded": folded,
        "state_dict_keys": "NAS-Bench-201 reference (xautodl TinyNetwork)" if not folded else "khnet folded",
    }


def _example(net: NB201Net, resolution: int, batch: int = 2) -> torch.Tensor:
    param = next(net.parameters())
    return torch.randn(batch, 3, resolution, resolution, device=param.device, dtype=param.dtype)


def _exported_program(net: NB201Net, resolution: int):
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        return torch.export.export(net.eval(), (_example(net, resolution),), dynamic_shapes={"x": {0: batch}})
    except Exception as err:  # torch.export's errors are long; keep the first line
        raise ExportError(f"torch.export failed for {net.arch}: {str(err).splitlines()[0]}") from None


def save_network(
    net: NB201Net,
    path: str | Path,
    info: DatasetInfo | None = None,
    fold: bool = False,
    compile: bool = False,
) -> list[Path]:
    """Write ``net`` (in eval mode) to ``path`` in the format its suffix names; returns the files written.

    Args:
        net: a standalone network, BatchNorm already recalibrated.
        path: ``.pt``, ``.pt2``, ``.safetensors`` or ``.onnx``.
        info: the dataset, for the normalisation recorded beside the weights.
        fold: fold each BatchNorm into the conv before it first.
        compile: write an AOTInductor package instead (``path`` must end in ``.pt2``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ExportFormatError(f"unknown format {path.suffix!r} of {path}; use one of: {', '.join(FORMATS)}")
    if compile and suffix != ".pt2":
        raise ExportFormatError(f"--compile writes an AOTInductor package: name the output *.pt2, not {path.name}")
    net = (fold_bn(net) if fold else net).eval()
    resolution = info.resolution if info else 32
    config = network_config(net, info, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path]
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"khnet": json.dumps(config)}))
        side = path.with_suffix(".json")
        atomic_write(side, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
        written.append(side)
    elif suffix == ".onnx":
        _save_onnx(net, path, resolution)
    elif compile:
        program = _exported_program(net, resolution)

        def write(tmp: Path) -> None:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))

        atomic_write(path, write)
    else:
        program = _exported_program(net, resolution)
        atomic_write(
            path, lambda tmp: torch.export.save(program, str(tmp), extra_files={"khnet.json": json.dumps(config)})
        )
    return written


def _save_onnx(net: NB201Net, path: Path, resolution: int) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxscript packages: pip install 'khnet[onnx]'") from None
    example = _example(net, resolution)

    def write(tmp: Path) -> None:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps on stdout
            torch.onnx.export(
                net, (example,), str(tmp), input_names=["x"], output_names=["logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}}, dynamo=True,
            )  # fmt: skip

    atomic_write(path, write)
    try:
        import onnxruntime
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _example(net, resolution, batch=3).cpu()
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        expected = net.cpu()(x)
    if not torch.allclose(got, expected, atol=1e-3, rtol=1e-3):
        raise ExportError(
            f"onnxruntime disagrees with the network for {path} (max diff {(got - expected).abs().max():.2e})"
        )


def load_network(path: str | Path) -> torch.nn.Module:
    """Load a network written by ``save_network`` (any format but ONNX) as a module returning logits."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no network at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            config = json.loads(path.with_suffix(".json").read_text())
            net = NB201Net(Arch.parse(config["arch"]), config["num_classes"], config["C"], config["N"])
            if config.get("batchnorm_folded"):
                net = fold_bn(net)
            net.load_state_dict(load_file(str(path)), strict=True)
            return net.eval()
        if suffix in (".pt", ".pt2"):
            try:
                return torch.export.load(str(path)).module()
            except Exception:
                return torch._inductor.aoti_load_package(str(path))
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ExportError(f"{path} is not a readable khnet network ({type(err).__name__}: {err})") from None
    raise ExportError(f"cannot load {path.suffix!r} files; use .pt, .pt2 or .safetensors")


def bake_subnet(
    supernet: SuperNet, arch: Arch, dataset: str, calib_images: int = 2048,
    seed: int = 0, data_dir: str | None = None,
) -> tuple[NB201Net, DatasetInfo]:  # fmt: skip
    """A standalone ``NB201Net`` for ``arch`` with the supernet's generated weights baked in and its
    BatchNorm statistics recalibrated on ``calib_images`` training images of ``dataset`` (eval mode, on the
    supernet's device).

    ``dataset`` has no default: BatchNorm statistics belong to the data the network will see (for a supernet
    from ``resolve_supernet``, ``ResolvedSupernet.calibration_dataset()`` names its training data).

    Raises:
        UsageError: ``dataset`` has another number of classes than the supernet (it is not its data).
    """
    from khnet.batchnorm import recalibrate_bn
    from khnet.config import EvalSettings
    from khnet.data import load_dataset
    from khnet.evaluate import calibration_images

    info = load_dataset(dataset, "test", root=data_dir).info
    if info.num_classes != supernet.config.num_classes:
        raise UsageError(
            f"dataset {dataset!r} has {info.num_classes} classes but the supernet has {supernet.config.num_classes}; "
            "recalibrate on the data it was trained on"
        )
    settings = EvalSettings(dataset=dataset, calib_images=calib_images, calib_seed=seed, data_dir=data_dir)
    net = supernet.subnet(arch)
    recalibrate_bn(net, calibration_images(settings), calib_images)
    return net.eval(), info
