"""The model card of a supernet: ``huggingface_hub.ModelCard`` metadata (library, licence, tags, ``datasets``,
a ``model-index`` with the last evaluation's figures) and a page that says what it is and how to use it."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CARD_METRICS", "NB201", "PAPER", "model_card"]

PAPER = (
    "Jingyue Zhuge, Christian Mayr, Anand Subramoney, David Kappel. Single Train Multi Deploy on Topology Search "
    "Spaces using Kshot-Hypernet. WANT@ICML 2024."
)
NB201 = (
    "Xuanyi Dong, Yi Yang. NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search. ICLR 2020."
)

# the figures a card's model-index reports: (key in an eval summary or a zoo entry's metrics, metric type, name)
CARD_METRICS = (
    ("mean_accuracy", "accuracy", "mean accuracy of the evaluated subnets (%)"),
    ("max_accuracy", "accuracy", "best evaluated subnet (%)"),
    ("kendall_tau", "kendall_tau", "Kendall tau vs NAS-Bench-201"),
    ("spearman_rho", "spearman_rho", "Spearman rho vs NAS-Bench-201"),
    ("space_valid_mean", "accuracy", "mean validation accuracy over all 6,466 classes (%)"),
    ("space_valid_max", "accuracy", "best class, validation (%)"),
    ("space_kendall_tau", "kendall_tau", "Kendall tau vs NAS-Bench-201 over all classes"),
    ("space_spearman_rho", "spearman_rho", "Spearman rho vs NAS-Bench-201 over all classes"),
)


def model_card(config: dict[str, Any], param_counts: dict[str, int], metrics: dict[str, Any] | None = None):
    """A ``huggingface_hub.ModelCard`` for the Hub: metadata (library, licence, tags, ``datasets``, a
    ``model-index`` with the last evaluation's figures), then what it is, how it was trained, how to use it.

    Args:
        config: ``read_run_config`` output (``model``, ``train``, ``dataset``).
        param_counts: ``SuperNet.param_counts()``.
        metrics: an eval summary (``khnet eval``'s ``eval-summary.json``) or a zoo entry's metrics.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from khnet import __version__

    model, train = config.get("model", {}), config.get("train", {})
    dataset_info = config.get("dataset") or {}
    dataset = dataset_info.get("name", train.get("dataset", "unknown"))
    benchmark = dataset_info.get("benchmark")
    note = dataset_info.get("note", "")
    name = f"khnet-{model.get('method', 'kshot-hypernet')}-{dataset}"
    results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=benchmark or dataset,
            dataset_name=dataset,
            metric_type=kind,
            metric_value=round(float(metrics[key]), 4),
            metric_name=label,
            dataset_split=str(metrics.get("split") or "valid"),
        )
        for key, kind, label in CARD_METRICS
        if metrics and isinstance(metrics.get(key), (int, float)) and not isinstance(metrics.get(key), bool)
    ]
    data = ModelCardData(
        library_name="khnet",
        license="mit",
        tags=["neural-architecture-search", "nas-bench-201", "hypernetwork", "supernet", "pytorch"],
        datasets=[benchmark or dataset],
        model_name=name,
        eval_results=results or None,
        khnet_version=__version__,
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in (metrics or {}).items() if not isinstance(v, (dict, list)))
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    body = f"""
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
from khnet.evaluate import recalibrate_bn
from khnet.supernet import SuperNet

supernet = SuperNet.from_pretrained("ORG/NAME").eval()
net = supernet.subnet("{arch}")
recalibrate_bn(net, calibration_images)  # 2,048 normalised training images: BatchNorm statistics of this subnet
```

or `khnet sample ARCH --supernet hf://ORG/NAME -o net.pt`, which recalibrates BatchNorm for you and writes a
standalone network.

## Citation

- {PAPER}
- {NB201}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
