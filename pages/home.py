"""Home: what ConvNet Lab is, where it runs, and which pretrained weights are on this machine."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import registry
from pages.common import require_router, device, weights

require_router()

st.title("ConvNet Lab")
st.markdown(
    "An interactive companion to the lecture **ConvNet Architectures**: LeNet-5, AlexNet, ZFNet, VGG, "
    "GoogLeNet/Inception, ResNet, MobileNet, autoencoders, U-Net and Siamese networks. Pick an "
    "architecture and step through it layer by layer: output size, parameters, operations, memory "
    "and receptive field, with the arithmetic written out the way the slides do it."
)

c1, c2, c3 = st.columns(3)
c1.metric("Architectures", len(registry.names()))
dev = device()
c2.metric("Device", dev.kind.upper(), help=dev.name)
status = weights()
c3.metric("Weights cached", f"{sum(s.cached for s in status)} of {len(status)}",
          help="Pretrained ImageNet weights already on this machine (nothing is downloaded while you work).")

PAGES = [("pages/lecture.py", "Lecture path", ":material/co_present:",
          "the lecture's sections in order, each point with its live component, presenter notes and a handout"),
         ("pages/explorer.py", "Architecture Explorer", ":material/account_tree:",
          "step through any architecture layer by layer, with the slides' arithmetic and a quiz"),
         ("pages/inside.py", "Inside the network", ":material/visibility:",
          "feature maps, first-layer filters and captum attributions for a photo or your own image"),
         ("pages/transfer.py", "Transfer Learning Studio", ":material/model_training:",
          "train on digits, shapes or your images with the lecture's scenarios, live curves"),
         ("pages/design.py", "Design Lab", ":material/science:",
          "3x3 stacks vs 7x7, depthwise-separable, 1x1 bottlenecks, GAP, residuals, receptive fields"),
         ("pages/zoo.py", "Model Zoo", ":material/scatter_plot:",
          "accuracy vs operations for every torchvision model, and measured latency")]
for path, label, icon, what in PAGES:
    a, b = st.columns([1, 3])
    a.page_link(path, label=label, icon=icon)
    b.markdown(what)
st.caption("Tip for lecturers: every choice in the explorer is in the address bar, so a link such as "
           "`/explorer?arch=alexnet&layer=0` opens exactly that layer.")

st.subheader("Counting conventions")
st.markdown(
    "- **MACs** (multiply-accumulates) are what the lecture calls *ops*, torchinfo *Mult-Adds*, "
    "torchvision *GFLOPS* and the ResNet paper *FLOPs (multiply-adds)*.\n"
    "- **FLOPs = 2 x MACs**, the convention of PyTorch's `torch.utils.flop_counter`.\n"
    "- **Memory** is fp32 (4 bytes a value) in decimal units (1 MB = 1,000,000 bytes), as on the slides."
)

st.subheader("Architectures")
st.dataframe(pd.DataFrame([{"name": s.name, "architecture": s.title, "family": s.family, "year": s.year,
                            "input (C x H x W)": "x".join(map(str, s.input_size)), "paper": s.paper}
                           for s in registry.REGISTRY.values()]), hide_index=True, width="stretch")

st.subheader("Pretrained weights")
if any(s.cached for s in status):
    st.success("Cached ImageNet weights: " + ", ".join(s.arch for s in status if s.cached))
else:
    st.info("No ImageNet weights are cached on this machine, and this machine may have no internet. "
            "Everything works without them (the explorer needs shapes, not weights; Inside the network "
            "falls back to random weights). Ahead of a lecture, run `python -m core weights prefetch NAME ...` "
            "on a machine with internet, or place torchvision's files at the paths below.")
st.dataframe(pd.DataFrame([{"architecture": s.arch, "weights": s.weights, "cached": s.cached,
                            "file (MB)": round(s.file_mb, 1), "ImageNet top-1 (%)": s.acc1,
                            "expected at": s.path} for s in status]), hide_index=True, width="stretch")
