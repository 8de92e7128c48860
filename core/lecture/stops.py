"""The lecture path as data: the lecture's sections in the slides' order, one `Stop` per point.

A stop names the slide it stands for, says its point in our words, names the component that
shows it (a kind from `core.lecture.panels` and its arguments: the same core functions the full
pages call), links to the full page with the exact state, and carries presenter notes. Slugs are
stable: the address `/lecture?stop=<slug>` reaches a stop from a slide deck, and a class that
follows the lecturer will be kept on the lecturer's stop by its slug.

Training stops show finished runs (`runs` names their `RunPlan`s); `run_plans()` gives each plan's
job with the settings of the Studio's and the Lab's defaults, or tiny ones for tests
($CONVNETLAB_LECTURE_RUNS=tiny).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from core import registry
from core.design import DESIGN_TABS
from core.lab import autoencoder, depth, siamese, unet
from core.lab.common import options, task_of
from core.train.transfer import TrainConfig
from core.weights import STARTER_ARCH, default_start

SECTIONS = ("Transfer learning", "Model Zoo", "AlexNet", "ZFNet", "VGG", "GoogLeNet", "ResNet", "MobileNet",
            "Autoencoder", "U-Net", "Siamese networks")


@dataclass(frozen=True)
class Component:
    """What a stop shows: a kind of `core.lecture.panels.BUILDERS` and its keyword arguments."""

    kind: str
    args: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


def component(kind: str, **args: Any) -> Component:
    return Component(kind, tuple(sorted(args.items())))


@dataclass(frozen=True)
class Stop:
    """One stop of the lecture path.

    Attributes:
        slug: stable id, in the address (`/lecture?stop=inception-module`).
        section: one of SECTIONS.
        title: the slide's title.
        point: the slide's point in one or two sentences, in our words.
        component: what shows it.
        link: the full page with the exact state ("" for a training stop whose page takes the run's
            settings: `full_link` builds it from them).
        notes: presenter notes (Markdown): what to click, what to ask, the numbers to expect.
        runs: the run plans (keys of `run_plans()`) whose finished runs a training stop shows.
        weights: architectures whose ImageNet weights the stop uses when they are cached.
        related: (label, link) of further pages that show the point.
    """

    slug: str
    section: str
    title: str
    point: str
    component: Component
    link: str
    notes: str
    runs: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    related: tuple[tuple[str, str], ...] = ()

    @property
    def training(self) -> bool:
        return bool(self.runs)

    @property
    def live(self) -> bool:
        """A training stop whose runs the class can watch train ("compare" shows other stops' runs)."""
        return self.training and self.component.kwargs.get("view") != "compare"


# --- links to the full pages ----------------------------------------------------------------------

def explorer_link(arch: str, layer: int | None = None, size: tuple[int, int, int] | None = None,
                  **opts: Any) -> str:
    """The explorer's address for a state, in the explorer's own parameters (pages/explorer.py)."""
    spec = registry.get(arch)
    params = {"arch": arch}
    if layer is not None:
        params["layer"] = str(layer)
    if size is not None and tuple(size) != tuple(spec.input_size):
        params["size"] = "x".join(map(str, size))
    for k, v in opts.items():
        if v != spec.options[k].default:
            params[f"o_{k}"] = str(v)
    return "/explorer?" + urlencode(params)


def design_link(tab: str) -> str:
    """The Design Lab opened on one tab (its tabs are bound to `?tab=`)."""
    if tab not in DESIGN_TABS:
        raise ValueError(f"the Design Lab has no tab {tab!r}")
    return "/design?tab=" + quote(tab)


def lab_link(cfg: Any) -> str:
    """The Training Lab on a task with the options of `cfg` that differ from the defaults."""
    params = {"task": task_of(cfg)}
    for f in options(type(cfg)):
        value = getattr(cfg, f.name)
        if value != f.default:
            params[f.name] = str(value)
    return "/lab?" + urlencode(params)


STUDIO_FIELDS = ("dataset", "arch", "weights", "scenario", "labels_per_class", "image_size", "epochs", "batch_size",
                 "lr", "lr_body", "unfreeze_from", "augment", "classifier", "shapes_classes", "shapes_per_class")


def studio_link(cfg: TrainConfig) -> str:
    """The Transfer Learning Studio with a run's settings, in TrainConfig's names (the scenario
    always; the rest where they differ from TrainConfig's defaults)."""
    d = TrainConfig()
    params = {"scenario": cfg.scenario}
    for name in STUDIO_FIELDS:
        value = getattr(cfg, name)
        if name != "scenario" and value != getattr(d, name):
            params[name] = str(value)
    return "/transfer?" + urlencode(params)


# --- the runs of the training stops -----------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """One run a training stop shows: a job of the dashboard's runner and its settings."""

    name: str
    title: str
    kind: str          # job kind: "train", "lr_find" or "lab"
    config: Any        # TrainConfig or a lab task's Config

    def link(self) -> str:
        return lab_link(self.config) if self.kind == "lab" else studio_link(self.config)


PROFILES = ("default", "tiny")
PROFILE_ENV = "CONVNETLAB_LECTURE_RUNS"
STUDIO_EPOCHS = 5          # the Studio's default (its sidebar), not TrainConfig's 3


def run_profile() -> str:
    """The run settings of this server: $CONVNETLAB_LECTURE_RUNS, "default" (the pages' defaults)
    unless it says "tiny" (a few seconds each: tests)."""
    raw = os.environ.get(PROFILE_ENV, "default")
    return raw if raw in PROFILES else "default"


def run_plans(profile: str | None = None) -> dict[str, RunPlan]:
    """Every run the training stops show, with the Studio's and the Lab's default settings (the
    Studio starts ResNet-18 from ImageNet weights when cached, else from our starter weights), or
    tiny settings for tests."""
    profile = profile or run_profile()
    if profile not in PROFILES:
        raise ValueError(f"unknown run profile {profile!r}; choose from {', '.join(PROFILES)}")
    tiny = profile == "tiny"
    studio = dict(dataset="digits", arch=STARTER_ARCH, weights=default_start(STARTER_ARCH), epochs=STUDIO_EPOCHS,
                  batch_size=64, lr=3e-3)
    if tiny:
        studio |= dict(dataset="shapes", shapes_classes=3, shapes_per_class=12, epochs=1, batch_size=16)

    def train(scenario: str, **more: Any) -> TrainConfig:
        return TrainConfig(**{**studio, "scenario": scenario, "augment": scenario == "finetune", **more})

    labs = {"autoencoder": autoencoder.Config(), "unet": unet.Config(), "siamese": siamese.Config(),
            "depth": depth.Config()}
    if tiny:
        labs = {"autoencoder": autoencoder.Config(epochs=1, batch_size=128),
                "unet": unet.Config(images=40, size=16, n_filters=2, epochs=1),
                "siamese": siamese.Config(characters=16, drawers=3, unseen=6, ways="5", trials=20, embedding=8,
                                          epochs=1),
                "depth": depth.Config(depths="8,14", width=2, data="shapes", per_class=10, size=8, epochs=1)}
    finetune = train("finetune")
    plans = [RunPlan("scenario-1", "Scenario 1: the last FC layer", "train", train("1")),
             RunPlan("scenario-2", "Scenario 2: an MLP head", "train", train("2")),
             RunPlan("scenario-3", "Scenario 3: features + logistic regression", "train", train("3")),
             RunPlan("lr-finder", "The LR finder", "lr_find", finetune),
             RunPlan("fine-tune", "Fine-tuning with discriminative LRs", "train", finetune),
             RunPlan("autoencoder", "The lecture's autoencoder", "lab", labs["autoencoder"]),
             RunPlan("unet", "U-Net vs autoencoder", "lab", labs["unet"]),
             RunPlan("siamese", "Siamese one-shot", "lab", labs["siamese"]),
             RunPlan("depth", "Plain vs residual", "lab", labs["depth"])]
    return {p.name: p for p in plans}


def full_link(stop: Stop, plans: dict[str, RunPlan] | None = None) -> str:
    """The full page with the stop's exact state: its `link`, or for a training stop the page of
    its last run with that run's settings."""
    if stop.link:
        return stop.link
    return (plans or run_plans())[stop.runs[-1]].link()


# --- the stops ------------------------------------------------------------------------------------

def _stops() -> tuple[Stop, ...]:
    ex = explorer_link
    return (
        # Transfer learning ------------------------------------------------------------------
        Stop("transfer-scenario-1", "Transfer learning", "Transfer learning: Scenario 1",
             "Myth: you need a lot of data to train a ConvNet. Keep an encoder trained on a large dataset frozen, "
             "replace only its last fully connected layer, and train that layer alone on the new classes.",
             component("training", view="studio"), "",
             "- The run above is finished: ResNet-18 on scikit-learn's handwritten digits, encoder frozen, a new "
             "10-way FC layer trained on cached features (no augmentation: the encoder runs once).\n"
             "- Point at *trainable vs frozen parameters*: 5,130 trainable (512 x 10 + 10) against about 11.2M frozen.\n"
             "- Expect about 94% validation accuracy from our starter weights (ImageNet's, when cached, do better).\n"
             "- Ask: *why does a frozen encoder work at all on digits it has never seen?* (generic features).\n"
             "- **Train it live** repeats the run through the job runner (tens of seconds); the Studio link opens "
             "the same settings with every option.",
             runs=("scenario-1",), weights=(STARTER_ARCH,)),
        Stop("transfer-scenario-2", "Transfer learning", "Transfer learning: Scenario 2",
             "For a bigger or more different dataset, replace more than the last layer: a small MLP head (more FC "
             "layers, freshly initialised) on the frozen encoder adds capacity without touching the features.",
             component("training", view="studio"), "",
             "- Same data and encoder as scenario 1; the head is now two FC layers with a ReLU between them.\n"
             "- Ask: *more trainable parameters, same frozen features: when does that help, when does it "
             "overfit?* Expect about 96%, against scenario 1's 94% (the 2x2 table stop shows all runs side by "
             "side).",
             runs=("scenario-2",), weights=(STARTER_ARCH,)),
        Stop("transfer-scenario-3", "Transfer learning", "Transfer learning: Scenario 3",
             "Remove the FC layers and treat the rest as a fixed feature extractor: one forward pass per image, "
             "then a classic classifier (logistic regression or k-nearest neighbours) on the codes.",
             component("training", view="studio"), "",
             "- No training loop at all: the encoder computes a 512-number code per image once, scikit-learn fits "
             "the classifier in about a second.\n"
             "- The slide's disadvantage: the features stay fixed, nothing is trained end to end. Yet expect about "
             "98% here: on digits, frozen features and logistic regression are already strong.\n"
             "- Ask: *AlexNet's codes would be 4,096 numbers; why 512 here?* (ResNet-18's global average pool).",
             runs=("scenario-3",), weights=(STARTER_ARCH,)),
        Stop("generic-to-specific", "Transfer learning", "Transfer learning and fine-tuning",
             "Early layers learn generic features (edges, colour blobs) that suit almost any task; later layers "
             "become specific to the classes they were trained on. That is why the early layers are frozen first.",
             component("feature_maps", arch=STARTER_ARCH, image="chelsea",
                       layers=("conv1", "layer2", "layer4")), "/inside",
             "- Feature maps of one photo at three depths: conv1 (edges and blobs, 112x112), layer2 (textures, "
             "28x28), layer4 (parts, 7x7), the slide's Conv 1 / Conv 3 / Conv 5.\n"
             "- The weights are ImageNet's when cached, else our starter weights (learnt on fractals): the caption "
             "says which.\n- In *Inside the network* pick the *Feature maps* tab and step through the layers.",
             weights=(STARTER_ARCH,)),
        Stop("fastai-recipe", "Transfer learning", "Fast.ai approach",
             "Jeremy Howard's recipe: train a new head on the frozen encoder, unfreeze, run the learning-rate "
             "finder, pick a range, and fine-tune every layer with discriminative learning rates, "
             "`slice(lo, hi)`: small for early layers, larger for the head.",
             component("training", view="fastai"), "",
             "- First the LR finder's loss against the learning rate (log axis) and its suggestion (about 7e-4 "
             "here), then the fine-tuning run with the Studio's `slice(3e-4, 3e-3)` over the stages: about 97.5%.\n"
             "- The *learning rate per stage* is in the Studio's third chart: one line per stage.\n"
             "- Ask: *why a smaller rate for conv1 than for the head?* (keep the generic features).\n"
             "- Our fine-tune trains head and body together from the start; fast.ai trains the head first (the "
             "scenario 1 stop) and then unfreezes.",
             runs=("lr-finder", "fine-tune"), weights=(STARTER_ARCH,)),
        Stop("transfer-table", "Transfer learning", "Transfer learning and fine-tuning: which scenario?",
             "How much data you have and how similar it is to ImageNet decide: little and similar, replace the "
             "top layer; little and different, replace more FC layers; a lot, fine-tune a few or many layers too.",
             component("training", view="compare"), "/transfer",
             "- The lecture's 2x2 table, and the finished runs of this path side by side (same data, same encoder).\n"
             "- Ask the class where *digits from ImageNet* sit in the table (very different, little data per class).\n"
             "- In the Studio, *Which scenario?* has the same table as two switches and a *Use this scenario* button.",
             runs=("scenario-1", "scenario-2", "scenario-3", "fine-tune"), weights=(STARTER_ARCH,)),
        Stop("transfer-is-the-norm", "Transfer learning", "Transfer learning is the norm",
             "Object detection (Fast R-CNN) and image captioning (CNN + RNN) both start from a CNN pretrained on "
             "ImageNet: its stages up to the last feature map are reused, only the heads are new.",
             component("stages", arch=STARTER_ARCH), ex(STARTER_ARCH),
             "- The table is ResNet-18 by stage: everything up to `layer4` (a 7x7x512 map) is what a detector or a "
             "captioner reuses; `fc` is the 1000-class head they throw away.\n"
             "- Ask: *what fraction of the parameters is reused?* (about 96%: 11.18M of 11.69M).\n"
             "- Fast R-CNN pools regions of that map; the captioner feeds the pooled 512 numbers to an RNN.",
             related=(("Object detection", "/lab?task=detect"), ("Image captioning", "/lab?task=caption"))),
        # Model Zoo ---------------------------------------------------------------------------
        Stop("model-zoo", "Model Zoo", "Model Zoo",
             "Frameworks ship pretrained models so you do not train your own: torchvision alone has 80 ImageNet "
             "classifiers. Accuracy against operations, blob size = parameters, is how you pick one.",
             component("zoo"), "/zoo",
             "- Every blob is a torchvision model with its ImageNet top-1 and GMACs (its GFLOPS are multiply-"
             "accumulates); the lecture's families are coloured and named.\n"
             "- Ask: *which is the best trade-off for a phone?* (MobileNet v3, EfficientNet) *for a server?*\n"
             "- On the Zoo page, *Measured latency* times chosen models on this machine (a cancellable job)."),
        Stop("design-from-scratch", "Model Zoo", "When to design your model from scratch?",
             "Pretrained models have high capacity for 1,000 classes; a problem with a few classes can do with a "
             "network far smaller, faster to train and less prone to overfitting.",
             component("own_stack"), design_link("Build your own stack"),
             "- A small stack of our own (the Design Lab's default) against ResNet-18: compare the parameters.\n"
             "- In the Design Lab's *Build your own stack* tab, edit rows live: each row shows its output shape, "
             "parameters, MACs and receptive field.\n"
             "- The slide's advice in between: a pretrained encoder with a small decoder of your own."),
        # AlexNet -------------------------------------------------------------------------------
        Stop("lenet-5", "AlexNet", "Review: LeNet-5",
             "The first CNN (1998): CONV-POOL-CONV-POOL-FC-FC, 5x5 filters at stride 1, 2x2 subsampling at "
             "stride 2, about 60 thousand parameters.",
             component("summary", arch="lenet5"), ex("lenet5", 0),
             "- 32x32 input, 61,706 parameters in our model (the paper quotes about 60,000).\n"
             "- Ask the class to compute conv1's output (28x28x6) before showing the table.\n"
             "- In the explorer, step with Next; *Quiz mode* hides each card until the class answers."),
        Stop("alexnet-conv1", "AlexNet", "AlexNet architecture: the first layer (CONV1)",
             "CONV1 applies 96 filters of 11x11x3 at stride 4 to a 227x227x3 image: (227 - 11)/4 + 1 = 55, so the "
             "output is 55x55x96, with 11x11x3x96 + 96 = 34,944 parameters.",
             component("layer_card", arch="alexnet", layer=0), ex("alexnet", 0),
             "- Ask first: *what is the output volume?* then *how many parameters?* (slide: 35K).\n"
             "- The paper says 224x224; only 227 makes the arithmetic work.\n"
             "- In the explorer, turn on *Quiz mode*: the class types 55x55x96 or 34,944 and gets it checked."),
        Stop("alexnet-pool1", "AlexNet", "AlexNet architecture: the second layer (POOL1)",
             "POOL1 takes 3x3 windows at stride 2: (55 - 3)/2 + 1 = 27, so 27x27x96, and zero parameters: "
             "pooling only takes maxima.",
             component("layer_card", arch="alexnet", layer=2), ex("alexnet", 2),
             "- Ask: *how many parameters in POOL1?* Answer: zero.\n"
             "- The windows overlap (3 wide, stride 2): AlexNet's overlapping pooling."),
        Stop("alexnet-fc6", "AlexNet", "Reshape before FC6",
             "The fully connected FC6 needs a vector: POOL3's 6x6x256 map is reshaped to 9,216 values, so FC6 has "
             "9,216 x 4,096 = 37,748,736 weights, 60% of the network.",
             component("layer_card", arch="alexnet", layer=16), ex("alexnet", 16),
             "- Ask: *where are most of AlexNet's parameters?* (FC6, 37.75M of 62.38M).\n"
             "- The explorer's *Per-layer chart* shows it: activations early, parameters late."),
        Stop("alexnet-parameters", "AlexNet", "Number of parameters",
             "Layer by layer, AlexNet has 62,378,344 parameters, 249 MB at 4 bytes each; the convolutions hold "
             "3.7M of them, the three FC layers 58.6M.",
             component("param_table", arch="alexnet"), ex("alexnet"),
             "- The table is the slide's, row by row, from our engine; the total matches: 62,378,344.\n"
             "- With the paper's two towers (explorer option *two towers*) it is 60,965,224.\n"
             "- Ask: *how would you shrink this network?* (fewer FC weights: GoogLeNet's answer)."),
        # ZFNet -------------------------------------------------------------------------------------
        Stop("zfnet", "ZFNet", "ZFNet architecture",
             "ZFNet is AlexNet with a smaller first layer (7x7 at stride 2 instead of 11x11 at stride 4) and wider "
             "CONV3-5 (512, 1024, 512 filters instead of 384, 384, 256).",
             component("compare_layers", archs=("alexnet", "zfnet"), layers=("conv1", "conv3", "conv4", "conv5")),
             ex("zfnet", 0),
             "- The changed layers side by side: output shapes and parameters.\n"
             "- Ask: *what does stride 2 instead of 4 do to CONV1's output?* (a finer map: 110x110 vs 55x55).\n"
             "- Total parameters grow from 62.4M to 107.6M, mostly in the wider CONV4."),
        Stop("zfnet-visualising", "ZFNet", "Visualizing and Understanding Convolutional Networks",
             "Zeiler and Fergus visualised what each layer had learned and saw AlexNet's 11x11 stride-4 first "
             "layer leave dead and aliased filters; a 7x7 stride-2 first layer fixed it, and became the standard "
             "(ResNet's conv1 is 7x7 at stride 2).",
             component("filters", archs=("alexnet_torchvision", STARTER_ARCH)), "/inside",
             "- Left: AlexNet's 64 first-layer filters (torchvision's AlexNet: ImageNet weights when cached, else "
             "random); right: ResNet-18's 7x7 filters (ImageNet when cached, else our starter weights).\n"
             "- Inside the network shows the projections themselves: *What excites a channel* (Zeiler and Fergus' "
             "Figure 2) and the deconvnet under *Attributions*.",
             weights=("alexnet_torchvision", STARTER_ARCH)),
        # VGG ---------------------------------------------------------------------------------------
        Stop("vgg-small-filters", "VGG", "VGGNet: why use smaller filters?",
             "Three stacked 3x3 convolutions see 7x7 pixels, like one 7x7 layer, with fewer weights (3x3x3x3 = 81 "
             "vs 7x7x3 = 147 on the slide; 27C² vs 49C² in the paper) and three non-linearities instead of one.",
             component("stack_vs_large", n=3, k=3, big=7, channels=3), design_link("3x3 stacks vs 7x7"),
             "- The grid: the centre unit's field after layer 1, 2, 3: 3, 5, 7 pixels.\n"
             "- Ask: *how many 3x3 layers see 11x11, AlexNet's first filter?* (5).\n"
             "- In the Design Lab every number is editable (try C = 512: 2.36M vs 12.8M weights)."),
        Stop("vgg-memory", "VGG", "VGG-16: memory and number of parameters",
             "VGG-16 has 138M parameters (553 MB) and needs about 61 MB of activations per image forward, twice "
             "that with backward: most memory sits in the early layers, most parameters in the first FC layer.",
             component("summary", arch="vgg16", chart=True), ex("vgg16"),
             "- The slide's 24M x 4 bytes = 96 MB is a slip: its own rows add up to 60.95 MB (the note says so).\n"
             "- Ask: *which layer holds the most parameters?* (the first FC, 102.8M) *the most memory?* (the 224x224 "
             "convolutions).\n- The explorer's *Training memory* tab scales this to a batch and an optimiser."),
        # GoogLeNet -----------------------------------------------------------------------------------
        Stop("one-by-one", "GoogLeNet", "The 1x1 convolution",
             "A 1x1 convolution is a dimension reduction: squeezing 480 channels to 16 before a 5x5 convolution "
             "cuts it from 112.9M to 1.5M + 3.8M = 5.3M operations.",
             component("bottleneck"), design_link("1x1 bottleneck"),
             "- Ask first: *how many operations for the 5x5 convolution, 14x14x480 -> 14x14x48?* (112.9M).\n"
             "- Then with the 1x1 reduction to 16 channels: 1.5M + 3.8M = 5.3M, 21 times fewer."),
        Stop("inception-module", "GoogLeNet", "Inception module",
             "Parallel 1x1, 3x3 and 5x5 convolutions and a 3x3 max pool, concatenated: naively 854M operations and a "
             "depth that only grows (256 -> 672); 1x1 reductions bring it to 271M and 480 channels.",
             component("inception"), ex("inception_module"),
             "- Ask the slide's Q3: *output size after concatenation?* (28x28x672 naive).\n"
             "- With reductions each of the slide's six rows matches, but they add up to 271.4M, not the slide's "
             "358M; the note shows the two readings that give exactly 358,055,936.\n"
             "- The diagram is drawn from the model: click any box in the explorer to step there."),
        Stop("global-average-pooling", "GoogLeNet", "Global Average Pooling",
             "An FC layer from a 7x7x1024 map to 1,024 outputs needs 51.4M weights; averaging each map to one number "
             "needs none, and GoogLeNet's top-1 got about 0.6% better.",
             component("gap"), design_link("GAP vs FC"),
             "- The slide says 51.3M; 7x7x1024x1024 = 51,380,224.\n"
             "- Ask: *why is averaging less prone to overfitting?* (no weights to fit)."),
        Stop("googlenet", "GoogLeNet", "GoogLeNet details",
             "22 layers of stacked Inception modules with global average pooling instead of large FC layers: "
             "6.6M parameters in torchvision's GoogLeNet, against AlexNet's 62.4M.",
             component("summary", arch="googlenet", compare="alexnet"), ex("googlenet"),
             "- The slide's \"5 million, 12x less than AlexNet\" is the paper's count; torchvision's model has "
             "6,624,904 parameters (9.4x less), the notes say where it differs.\n"
             "- The auxiliary classifiers are training-only: off here (option *aux logits* in the explorer)."),
        # ResNet --------------------------------------------------------------------------------------
        Stop("degradation", "ResNet", "ResNet: stacking deeper plain layers",
             "A deeper plain network trains worse than a shallower one, on the training set too, so it is not "
             "overfitting but an optimisation problem; with identity shortcuts, depth helps again.",
             component("training", view="depth"), "",
             "- The finished run: plain-20 and plain-56 against ResNet-20 and ResNet-56 (the paper's CIFAR networks, "
             "parameter-free shortcuts, same parameters per twin) on digits.\n"
             "- Ask the slide's question: *what is strange about these curves?* (plain-56 is worse in training).\n"
             "- Below: the paper's Table 2 on ImageNet, plain 28.54% vs ResNet 25.03% top-1 error at 34 layers.",
             runs=("depth",)),
        Stop("residual-block", "ResNet", "Residual block",
             "Instead of fitting h(x) directly, a block fits the residual F(x) = h(x) - x and adds x back; when the "
             "shapes differ, the shortcut is a projection (type 2), else x is added as it is (type 1).",
             component("residual"), design_link("Plain vs residual"),
             "- Left: a 64-channel basic block (ResNet-34, identity shortcut); right: a 256-channel bottleneck block "
             "(ResNet-50: 1x1 down to 64, 3x3, 1x1 back up to 256), which cost about the same.\n"
             "- Ask: *when does the shortcut need weights?* (when the channels or the stride change)."),
        Stop("resnet-variants", "ResNet", "ResNet variants",
             "ResNet-18 to ResNet-152: basic blocks up to 34 layers, bottleneck blocks from 50 on, with "
             "1.8 / 3.7 / 4.1 / 7.8 / 11.5 GMACs (the paper's table: 1.8 / 3.6 / 3.8 / 7.6 / 11.3).",
             component("compare_archs", archs=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")),
             ex("resnet50", stride_in="1x1"),
             "- torchvision puts the stride in the 3x3 convolution of a bottleneck block; the paper put it in the "
             "first 1x1, which is cheaper: 3.86 / 7.57 / 11.28 GMACs (explorer option *stride in* = 1x1).\n"
             "- Ask: *why is ResNet-50 barely more expensive than ResNet-34?* (bottlenecks)."),
        # MobileNet ------------------------------------------------------------------------------------
        Stop("depthwise-separable", "MobileNet", "Depthwise separable convolution",
             "A depthwise convolution (one 3x3 filter per channel) followed by a 1x1 pointwise convolution: "
             "86,400 operations become 675 + 9,600 = 10,275, a ratio of 1/N + 1/D_K².",
             component("separable"), design_link("Depthwise-separable"),
             "- The slide's example, then MobileNet's 14x14x512 layer: 8.8x fewer operations.\n"
             "- The Design Lab also *measures* both layers on this machine: depthwise layers move more memory per "
             "operation, so time falls less than the MAC ratio."),
        Stop("mobilenet-v1", "MobileNet", "MobileNet: network architecture",
             "MobileNet v1 stacks depthwise-separable layers with BatchNorm and ReLU after each convolution: 4.2M "
             "parameters and 569M MACs, against VGG-16's 138M and 15.5G.",
             component("summary", arch="mobilenet_v1", compare="vgg16"), ex("mobilenet_v1"),
             "- Ask: *MobileNet v2 added something. Can you guess what?* (ResNet blocks: inverted residuals).\n"
             "- The explorer's option *width mult* thins every layer (the paper's alpha)."),
        # Autoencoder -----------------------------------------------------------------------------------
        Stop("autoencoder", "Autoencoder", "Convolutional autoencoder",
             "An encoder squeezes the image to a small code at the bottleneck; a decoder with transposed "
             "convolutions rebuilds it. The lecture's Keras model: 140,850 parameters, 256 of them non-trainable.",
             component("training", view="autoencoder"), "",
             "- The finished run: the slide's model (bottleneck 49 = 7x7x1) on scikit-learn's digits, with the "
             "reconstructions of eight validation digits.\n"
             "- Expect a mean squared error of about 0.010 per pixel at bottleneck 49 (0.038 at 2).\n"
             "- Keras counts BatchNorm's moving mean and variance as 256 non-trainable parameters; PyTorch keeps them "
             "as buffers: 140,594 parameters + 256.\n"
             "- In the Lab, try bottleneck 2: blurrier digits, and the code space is the code itself.",
             runs=("autoencoder",)),
        Stop("transposed-convolution", "Autoencoder", "Transposed convolution: up-sampling 2x2 to 5x5",
             "Each input value scatters a copy of the kernel, scaled by that value, into the output at stride steps; "
             "overlaps add up. With a 3x3 kernel at stride 2, 2x2 becomes (2 - 1) x 2 + 3 = 5, so 5x5.",
             component("transposed_conv"), lab_link(autoencoder.Config()),
             "- Four scaled copies of the kernel, then their sum.\n"
             "- It is the gradient of a strided convolution, not its inverse: \"deconvolution\" is a misnomer.\n"
             "- In the Lab's autoencoder, the expander *Transposed convolution, by hand* makes every cell editable."),
        # U-Net -----------------------------------------------------------------------------------------
        Stop("unet", "U-Net", "U-Net",
             "An autoencoder loses fine detail at its bottleneck; U-Net's skip connections hand the decoder the "
             "encoder's full-resolution maps, so one-pixel curves survive.",
             component("training", view="unet"), "",
             "- The finished run: U-Net and the same network with its four concatenations fed zeros, trained the "
             "same way on blobs and one-pixel curves.\n"
             "- Ask: *which network finds the thin curves?* The autoencoder keeps the blobs and loses the curves.",
             runs=("unet",)),
        Stop("unet-concatenation", "U-Net", "U-Net: the concatenation layers",
             "At each level of the expanding path, the up-sampled map is concatenated with the encoder's map of the "
             "same size: u6 (512 channels) and c4 (512, cropped to 56x56) become 1,024 channels.",
             component("layer_card", arch="unet", layer=26, size=(1, 572, 572), padding="valid"),
             ex("unet", 26, (1, 572, 572), padding="valid"),
             "- The paper's U-Net: 572x572 in, 388x388 out, 31,030,658 parameters; unpadded convolutions, so the "
             "encoder's map is cropped before the copy.\n"
             "- Step to `cat7`, `cat8`, `cat9` in the explorer: the same at every level."),
        # Siamese networks ----------------------------------------------------------------------------------
        Stop("siamese-one-shot", "Siamese networks", "Siamese networks and one-shot learning",
             "Instead of classifying faces, a Siamese network learns a similarity between two images; a new "
             "employee then needs one reference photo and no retraining.",
             component("training", view="siamese"), "",
             "- The finished run: one shared encoder trained on pairs of generated glyphs, tested on 5-way and "
             "20-way one-shot trials with classes it never saw, against raw pixels and chance.\n"
             "- Ask: *what does the network learn if not the classes?* (a distance).\n"
             "- In the Lab, *A new employee* adds a class from one drawing, yours included.",
             runs=("siamese",)),
        Stop("siamese-architecture", "Siamese networks", "Siamese networks: architecture",
             "Koch et al.'s network: two copies of one convolutional encoder (shared weights) on 105x105 images, "
             "an L1 distance between the two codes and a sigmoid for p(same).",
             component("summary", arch="siamese"), ex("siamese"),
             "- 38,951,745 parameters, most in the 9,216 -> 4,096 FC layer of the encoder.\n"
             "- Ask: *why must the two branches share weights?* (the same image must give the same code)."),
    )


STOPS: tuple[Stop, ...] = _stops()
_BY_SLUG = {s.slug: s for s in STOPS}
if len(_BY_SLUG) != len(STOPS):
    raise ValueError("two lecture stops share a slug")


def slugs() -> list[str]:
    return [s.slug for s in STOPS]


def get(slug: str) -> Stop:
    """A stop by its slug (KeyError for an unknown one)."""
    return _BY_SLUG[slug]


def index_of(slug: str) -> int:
    return slugs().index(slug)
