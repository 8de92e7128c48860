"""The Model Zoo: every classification model torchvision ships, from its weights metadata.

Parameters, GMACs (torchvision's `_ops`, which its docs label "GFLOPS" but count
multiply-accumulates), ImageNet accuracy and file size are read offline from
`Weights.DEFAULT.meta`. The receptive field at the last feature map comes from our analysis
engine; computing it for 80 models takes a while, so `python -m core zoo --write` stores it in
`assets/zoo_rf.json` and the page reads that file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torchvision.models import get_model, get_model_weights, list_models

from core.analysis import analyze_model, last_spatial_layer

RF_FILE = Path(__file__).resolve().parents[1] / "assets" / "zoo_rf.json"

# Family prefix -> (family name, year of its paper). Longest prefix wins.
FAMILIES = {
    "alexnet": ("AlexNet", 2012), "vgg": ("VGG", 2014), "googlenet": ("GoogLeNet", 2014),
    "inception": ("Inception v3", 2015), "resnet": ("ResNet", 2015), "resnext": ("ResNeXt", 2017),
    "wide_resnet": ("Wide ResNet", 2016), "squeezenet": ("SqueezeNet", 2016),
    "densenet": ("DenseNet", 2017), "mobilenet_v2": ("MobileNet v2", 2018),
    "mobilenet_v3": ("MobileNet v3", 2019), "shufflenet": ("ShuffleNet v2", 2018),
    "mnasnet": ("MnasNet", 2019), "efficientnet": ("EfficientNet", 2019),
    "efficientnet_v2": ("EfficientNet v2", 2021), "regnet": ("RegNet", 2020),
    "vit": ("Vision Transformer", 2020), "swin": ("Swin Transformer", 2021),
    "swin_v2": ("Swin Transformer v2", 2022), "convnext": ("ConvNeXt", 2022), "maxvit": ("MaxViT", 2022),
}
# Families the lecture covers: highlighted in the chart.
LECTURE_FAMILIES = {"AlexNet", "VGG", "GoogLeNet", "ResNet", "MobileNet v2", "MobileNet v3"}
TRANSFORMERS = {"Vision Transformer", "Swin Transformer", "Swin Transformer v2", "MaxViT"}


def family(name: str) -> tuple[str, int]:
    """(family, year) of a torchvision model name."""
    best = max((p for p in FAMILIES if name.startswith(p)), key=len, default=None)
    return FAMILIES[best] if best else ("other", 0)


@dataclass(frozen=True)
class ZooModel:
    """One torchvision classification model with its DEFAULT weights' metadata."""

    name: str
    family: str
    year: int
    params: int
    gmacs: float
    acc1: float
    acc5: float
    file_mb: float
    in_lecture: bool
    rf: int | None          # receptive field (pixels) at the last feature map; None: attention
    rf_whole: bool          # that map already depends on the whole image (e.g. squeeze-excitation)
    resolution: int         # side of the square crop the weights use; `gmacs` is for one such image


def weights_resolution(weights: torchvision.models.WeightsEnum) -> int:
    """The side of the square crop a model's weights are evaluated at (their transforms'
    `crop_size`): 224 for most, 299 for Inception v3, 518 for ViT-H/14. torchvision counts its
    `_ops` at this size."""
    crop = weights.transforms.keywords["crop_size"]
    return int(crop[0] if isinstance(crop, (list, tuple)) else crop)


def classification_models() -> list[str]:
    """The names torchvision lists as classification models."""
    return list_models(module=torchvision.models)


def last_feature_map_rf(name: str, size: int = 224) -> tuple[int, bool] | None:
    """Receptive field of the last spatial (more than 1x1) map of a torchvision CNN, from the
    analysis engine on the meta device; None for transformers."""
    if family(name)[0] in TRANSFORMERS:
        return None
    kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    try:
        with torch.device("meta"):
            model = get_model(name, weights=None, **kwargs)
    except NotImplementedError:
        # RegNet's initialiser copies values, which meta tensors cannot hold: build it for real.
        model = get_model(name, weights=None, **kwargs).to("meta")
    layers, *_ = analyze_model(model, (3, size, size))
    last = last_spatial_layer(layers)
    return last.rf, last.whole_input


def load_rf_file(path: Path = RF_FILE) -> dict[str, list]:
    """name -> [rf, whole] as written by `write_rf_file`; empty when the file is missing or bad."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_rf_file(path: Path = RF_FILE) -> dict[str, list]:
    """Computes the receptive field of every CNN in torchvision and stores it as JSON."""
    data = {}
    for name in classification_models():
        res = last_feature_map_rf(name)
        data[name] = list(res) if res else None
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def zoo_models() -> list[ZooModel]:
    """Every classification model with weights metadata, read offline."""
    rfs = load_rf_file()
    out = []
    for name in classification_models():
        w = get_model_weights(name).DEFAULT
        fam, year = family(name)
        m = w.meta
        acc = m.get("_metrics", {}).get("ImageNet-1K", {})
        rf = rfs.get(name)
        out.append(ZooModel(name=name, family=fam, year=year, params=int(m["num_params"]),
                            gmacs=float(m["_ops"]), acc1=float(acc.get("acc@1", float("nan"))),
                            acc5=float(acc.get("acc@5", float("nan"))), file_mb=float(m["_file_size"]),
                            in_lecture=fam in LECTURE_FAMILIES, rf=rf[0] if rf else None,
                            rf_whole=bool(rf[1]) if rf else False, resolution=weights_resolution(w)))
    return out


def zoo_rows() -> list[dict]:
    """`zoo_models` as plain dicts (for tables and CSV)."""
    return [asdict(m) for m in zoo_models()]
