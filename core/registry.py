"""The explicit registry of architectures: one plain dict from a name to an `ArchSpec`.

The same registry feeds the dashboard's picker, the CLI (`python -m core archs`) and the
parametrised tests. Registering a name twice raises. Nothing is built at import time: a spec
holds a builder, and `ArchSpec.build()` calls it. The order is the lecture's.
"""

from __future__ import annotations

import difflib
from functools import partial

from torchvision import models as tvm

from core.models import classic, encdec, mobilenet_v1, modules, resnets
from core.spec import ArchSpec, OptionSpec, UnknownArchitectureError

REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    """Adds a spec to the registry. Raises ValueError when the name is taken."""
    if spec.name in REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ArchSpec:
    """Looks a name up; an unknown name raises with the known names and the closest matches."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchitectureError(
            f"Unknown architecture {name!r}.{hint} Known: {', '.join(REGISTRY)}"
        ) from None


def names() -> list[str]:
    """All registered names, in registration order (the order of the lecture)."""
    return list(REGISTRY)


def _tv(builder_name: str, **fixed) -> partial:
    """A torchvision builder without weights (weights are loaded elsewhere, when asked for)."""
    return partial(getattr(tvm, builder_name), weights=None, **fixed)


IMAGENET = (3, 224, 224)


# --- the architectures ----------------------------------------------------------------------------

register(ArchSpec(
    name="lenet5", title="LeNet-5", family="Classic", builder=classic.lenet5,
    input_size=(1, 32, 32), year=1998,
    paper="LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition",
    description="LeCun's digit reader: two convolution-subsampling pairs with 5x5 filters at stride 1 and "
                "2x2 subsampling at stride 2, then fully connected layers, reading 32x32 digits.",
    classifier="fc5",
))

register(ArchSpec(
    name="alexnet", title="AlexNet (lecture, one tower)", family="AlexNet / ZFNet",
    builder=classic.alexnet, input_size=(3, 227, 227), year=2012,
    paper="Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks",
    description="Five convolutions with big early filters (11x11 at stride 4), max pooling, Local "
                "Response Normalisation and three huge fully connected layers; the first ReLU network "
                "to win ImageNet.",
    classifier="fc8",
    options={"two_towers": OptionSpec(False, "group CONV2/4/5 in two halves, as the paper's two-GPU model"),
             "lrn": OptionSpec(True, "keep the Local Response Normalisation layers (no parameters)")},
))

register(ArchSpec(
    name="alexnet_torchvision", title="AlexNet (torchvision)", family="AlexNet / ZFNet",
    builder=_tv("alexnet"), input_size=IMAGENET, year=2014, torchvision_name="alexnet",
    paper="Krizhevsky, One weird trick for parallelizing convolutional neural networks (torchvision's variant)",
    description="torchvision's AlexNet: 64-192-384-256-256 filters, no LRN, an adaptive 6x6 average "
                "pool before the classifier so any input size above 63x63 works.",
    classifier="classifier.6",
))

register(ArchSpec(
    name="zfnet", title="ZFNet", family="AlexNet / ZFNet", builder=classic.zfnet,
    input_size=IMAGENET, year=2013,
    paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks",
    description="AlexNet retuned after looking inside it: CONV1 becomes 7x7 at stride 2 (instead of "
                "11x11 at stride 4) so the first layer keeps more detail.",
    classifier="fc8",
    options={"filters": OptionSpec("lecture", "CONV3-5 widths: the slide's 512-1024-512 or the "
                                   "paper figure's 384-384-256", choices=("lecture", "paper"))},
))

for _depth in (11, 13, 16, 19):
    for _bn in (False, True):
        _name = f"vgg{_depth}" + ("_bn" if _bn else "")
        register(ArchSpec(
            name=_name, title=f"VGG-{_depth}" + (" with BatchNorm" if _bn else ""), family="VGG",
            builder=_tv(_name), input_size=IMAGENET, year=2014, torchvision_name=_name,
            paper="Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition",
            description="Only 3x3 convolutions (stride 1, pad 1) and 2x2 max pooling (stride 2), "
                        "stacked deep; three FC layers at the end hold most of the parameters.",
            classifier="classifier.6",
        ))

register(ArchSpec(
    name="googlenet", title="GoogLeNet (Inception v1)", family="GoogLeNet / Inception",
    builder=_tv("googlenet", init_weights=True), input_size=IMAGENET, year=2014,
    torchvision_name="googlenet", train_mode_option="aux_logits",
    paper="Szegedy et al., Going Deeper with Convolutions",
    description="Nine stacked Inception modules: 1x1, 3x3 and 5x5 convolutions and pooling side by "
                "side, with 1x1 reductions in front, and global average pooling instead of big FC layers.",
    classifier="fc",
    options={"aux_logits": OptionSpec(False, "include the two auxiliary classifiers used during "
                                      "training (analysed with a training-mode forward pass)")},
))

register(ArchSpec(
    name="inception_module", title="Inception module (lecture example)", short="Inception module (lecture)", family="GoogLeNet / Inception",
    builder=modules.inception_module, input_size=(256, 28, 28), year=2014,
    paper="Szegedy et al., Going Deeper with Convolutions",
    description="One Inception module on a 28x28x256 input, as on the slides: naive (854M "
                "multiply-accumulates, 672 output channels) or with 1x1 reductions (271.4M by our count, "
                "480 channels; the slide's 358M is discussed in the notes).",
    options={"reductions": OptionSpec(False, "insert the 1x1 dimension-reduction convolutions")},
))

register(ArchSpec(
    name="bottleneck_1x1", title="1x1 bottleneck (lecture example)", short="1x1 bottleneck (lecture)", family="GoogLeNet / Inception",
    builder=modules.bottleneck_1x1, input_size=(480, 14, 14), year=2014,
    paper="Lin, Chen & Yan, Network In Network; Szegedy et al., Going Deeper with Convolutions",
    description="The slide's 5x5 convolution from 480 to 48 channels at 14x14: 112.9M "
                "multiply-accumulates directly, 1.5M + 3.8M = 5.3M after a 1x1 reduction to 16 channels.",
    options={"reduce": OptionSpec(False, "reduce to 16 channels with a 1x1 convolution first")},
))

for _depth in (18, 34, 50, 101, 152):
    _name = f"resnet{_depth}"
    register(ArchSpec(
        name=_name, title=f"ResNet-{_depth}", family="ResNet", builder=resnets.RESNET_BUILDERS[_name],
        input_size=IMAGENET, year=2015, torchvision_name=_name,
        paper="He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition",
        description=("Residual blocks of two 3x3 convolutions" if _depth < 50
                     else "Bottleneck blocks (1x1 reduce, 3x3, 1x1 expand)")
                    + " with shortcuts (identity, or a 1x1 projection where the shape changes), a 7x7 stem, "
                      "global average pooling and a single FC layer.",
        classifier="fc",
        # Only bottleneck blocks have a 1x1 to move the stride to: ResNet-18/34 have no such option.
        options={"stride_in": OptionSpec("3x3", "where a downsampling bottleneck strides: 3x3 "
                                         "(torchvision v1.5) or 1x1 (the paper)", choices=("3x3", "1x1"))}
        if _depth >= 50 else {},
    ))

register(ArchSpec(
    name="plain34", title="Plain-34 (no shortcuts)", family="ResNet", builder=resnets.plain34,
    input_size=IMAGENET, year=2015,
    paper="He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition (Figure 4, left)",
    description="ResNet-34's layout with every skip connection removed: the deeper plain network "
                "that trains worse than the 18-layer one (28.54% vs 27.94% top-1 error).",
    classifier="fc",
))

register(ArchSpec(
    name="mobilenet_v1", title="MobileNet v1", family="MobileNet", builder=mobilenet_v1.mobilenet_v1,
    input_size=IMAGENET, year=2017,
    paper="Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    description="A 3x3 stem and 13 depthwise-separable blocks (a 3x3 per-channel filter, then a 1x1 "
                "that mixes channels), about 8-9x cheaper than standard 3x3 convolutions.",
    classifier="fc",
    options={"width_mult": OptionSpec(1.0, "width multiplier alpha: scales every layer's channels",
                                      min_value=0.125, max_value=2.0)},
))

for _name, _title, _year, _paper in (
    ("mobilenet_v2", "MobileNet v2", 2018, "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks"),
    ("mobilenet_v3_small", "MobileNet v3 Small", 2019, "Howard et al., Searching for MobileNetV3"),
    ("mobilenet_v3_large", "MobileNet v3 Large", 2019, "Howard et al., Searching for MobileNetV3"),
):
    register(ArchSpec(
        name=_name, title=_title, family="MobileNet", builder=_tv(_name), input_size=IMAGENET,
        year=_year, paper=_paper, torchvision_name=_name,
        description=("Inverted residual blocks: a 1x1 expansion, a depthwise 3x3 and a linear 1x1 "
                     "projection, with a shortcut when the shape allows (ResNet ideas in MobileNet)."
                     if _name == "mobilenet_v2" else
                     "MobileNet v2's blocks found by architecture search, with squeeze-and-excitation "
                     "and hard-swish activations."),
        classifier="classifier." + ("1" if _name == "mobilenet_v2" else "3"),
    ))

register(ArchSpec(
    name="conv_autoencoder", title="Convolutional autoencoder (lecture, Keras)", short="Conv. autoencoder (lecture)", family="Encoder-decoder",
    builder=encdec.conv_autoencoder, input_size=(1, 28, 28), year=2006,
    paper="Hinton & Salakhutdinov, Reducing the Dimensionality of Data with Neural Networks (the idea); "
          "the layers are the lecture's Keras model",
    description="Convolutions squeeze a 28x28 digit into 49 numbers; transposed convolutions grow "
                "it back to 28x28. Trained to reproduce its input.",
    options={"listing": OptionSpec("first", "which of the slides' two Keras listings: the first ('same' "
                                   "padding everywhere) or the second (no activation on the first two "
                                   "transposed convolutions, 'valid' padding on the last two layers)",
                                   choices=("first", "second"))},
))

register(ArchSpec(
    name="unet", title="U-Net", family="Encoder-decoder", builder=encdec.unet,
    input_size=(1, 128, 128), year=2015, side_rule=encdec.unet_side_rule,
    paper="Ronneberger, Fischer & Brox, U-Net: Convolutional Networks for Biomedical Image Segmentation",
    description="An encoder-decoder whose decoder concatenates the encoder's maps of the same size "
                "(skip connections), so fine detail survives the bottleneck; built for segmentation.",
    options={"n_filters": OptionSpec(16, "filters of the first block (doubling at each level)",
                                     min_value=1, max_value=128),
             "batchnorm": OptionSpec(True, "BatchNorm after every convolution"),
             "padding": OptionSpec("same", "same: the lecture's Keras U-Net (n_filters, batchnorm apply); valid: "
                                           "the paper's network (unpadded convolutions, crop-and-copy, 64 filters, "
                                           "no BatchNorm, 2x2 up-convolutions, 2 classes; try 1x572x572)",
                                   choices=("same", "valid"))},
))

register(ArchSpec(
    name="siamese", title="Siamese network (Koch et al.)", short="Siamese (Koch et al.)", family="Siamese", builder=classic.siamese,
    input_size=(1, 105, 105), year=2015, num_inputs=2,
    paper="Koch, Zemel & Salakhutdinov, Siamese Neural Networks for One-shot Image Recognition",
    description="Two copies of one encoder (shared weights) embed two images; a layer on |h1 - h2| "
                "scores how likely they show the same class. Learns similarity, not classes.",
    classifier="head",
))
