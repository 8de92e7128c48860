"""Inside the network: feature maps, first-layer filters and attributions for one image.

Opened on a finished Studio run (`?job=...`, read-only with `view=`: the Studio's "Look inside this
model"), it shows that run's trained network with its own classes and validation images, and what
fine-tuning changed in it, stage by stage."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch
import torch.nn.functional as F

from core import registry
from core.attribution import METHODS, SLOW, attribute_all, overlay, passes
from core.patches import sheets, top_patches, unit_view
from core.features import (capture, channel_stats, feature_layers, filter_mosaic, first_layer_filters,
                           gradcam_layer, mosaic, top_k)
from core.figures import what_changed_figure
from core.images import (MAX_BYTES, PATTERNS, SAMPLES, ImageError, load_image, normalise, preprocess, sample_batch,
                         sample_image)
from core.train.compute import ComputeConfig
from core.train.results import load_upload
from core.weights import (MAX_WEIGHTS_MB, STARTER_ARCH, WeightsError, WeightsUsed, build_with, cache_path,
                          default_start, default_weights, download_size_mb, prefetch)
from pages.common import cached_summary, computing, device, follow_compute, require_router, start_compute
from pages.own_model import linked_run, run_network, run_query, run_summary

require_router()
ss, qp = st.session_state, st.query_params

ALEXNET_ZFNET = ("alexnet_torchvision", "zfnet")   # shown side by side on the filters tab of either
CPU_ATTR_CAP_GMACS = 400   # per attribution method on a CPU: ~5 s on 2 cores (ResNet-18's IG: 175 GMACs, 2 s)
ARCHS = [n for n, s in registry.REGISTRY.items() if s.classifier and s.input_size[0] == 3 and s.num_inputs == 1]
RUN_SEARCH = 64    # a run's validation images that "What excites a channel" searches (with the chosen image)
CHOICES = {"imagenet": "ImageNet (when cached)", "starter": "starter weights (ResNet-18, ours)",
           "random": "random initialisation", "upload": "upload (.safetensors / .pt, with model.json)"}


# The server's largest memory: at most 3 models (VGG-19 is 0.55 GB) shared by every user, each
# dropped 15 minutes after its last use, so a class's peak does not stay for good.
@st.cache_resource(max_entries=3, ttl="15m", show_spinner="Building the model...")
def shared_model(name: str, kind: str) -> tuple[torch.nn.Module, WeightsUsed, threading.Lock]:
    """One model per (architecture, weights: "imagenet", "starter" or "random") for every user. Its
    parameters never change; the lock keeps one user's hooks from seeing another user's forward pass."""
    model, used = build_with(name, kind)
    model.requires_grad_(False)
    return model, used, threading.Lock()


@st.cache_resource(max_entries=2, ttl="15m", show_spinner="Loading your weights...")
def uploaded_model(name: str, digest: str, _files: dict[str, bytes]) -> tuple[torch.nn.Module, WeightsUsed,
                                                                            list[str] | None, threading.Lock]:
    """A model with user-uploaded weights (and a Studio run's model card), keyed by the files' hash."""
    up = load_upload(name, _files)
    up.model.requires_grad_(False)
    return up.model, up.used, up.classes, threading.Lock()


st.title("Inside the network")
run = linked_run()      # a Studio run's network, opened from the Studio's "Look inside this model"
with st.sidebar:
    st.header("Model")
    if run is not None:
        job_id, run_res = run
        arch = run_res.model_info["arch"]
        st.markdown(f"**Your Studio run** `{job_id}`")
        st.caption(f"{registry.get(arch).title}, scenario {run_res.config.scenario}, {len(run_res.classes)} classes: "
                   + ", ".join(run_res.classes[:8]) + (", ..." if len(run_res.classes) > 8 else "") + ".")
        st.button("Back to the lecture's networks", key="in_leave_run",
                  on_click=lambda: [qp.pop(k, None) for k in ("job", "view")])
        st.page_link("pages/explorer.py", label="Its architecture in the explorer", icon=":material/account_tree:",
                     query_params=run_query(job_id))
        wchoice, wfiles = None, []
        st.header("Image")
        source = st.radio("Source", ["validation image", "upload", "camera"], key="in_src_run",
                          help="The run's own validation images (never trained on), or one of yours.")
    else:
        arch = st.selectbox("Architecture", ARCHS, index=ARCHS.index("resnet18"), key="in_arch",
                            format_func=lambda n: registry.get(n).label)
        # Until the user picks, the weights follow the architecture's default (as the Studio's start does):
        # ImageNet when cached, else the starter weights we ship for ResNet-18, never noise by default.
        if not ss.get("in_weights_chosen"):
            ss["in_weights"] = CHOICES[default_start(arch)]
        wchoice = st.radio("Weights", list(CHOICES.values()), key="in_weights",
                           on_change=lambda: ss.update(in_weights_chosen=True),
                           help="The starter weights ship with the dashboard: a ResNet-18 pre-trained on generated "
                                "fractals. Its filters and maps are learnt, but it knows no ImageNet classes.")
        wfiles = []
        if wchoice == CHOICES["upload"]:
            wfiles = st.file_uploader("Weights (and the Studio's model.json)", type=["safetensors", "pt", "pth", "json"],
                                      accept_multiple_files=True, key="in_wfile", max_upload_size=MAX_WEIGHTS_MB,
                                      help="A state dict of this architecture, or a Studio run's download: "
                                           "model.safetensors or head.safetensors together with its model.json. Read "
                                           "with safetensors or torch.load(weights_only=True): nothing is unpickled.")
        st.header("Image")
        source = st.radio("Source", ["sample photo", "test pattern", "upload", "camera"], key="in_src")

spec = registry.get(arch)
weights = default_weights(arch)
classes = None     # a Studio run's class names, when its model card came with the weights
if run is not None:
    model, lock = run_network(job_id, run_res)
    classes = run_res.classes
    wnote = WeightsUsed("user", "user", name=f"Studio run {job_id}: the trained network, {len(classes)} classes")
else:
    try:
        if wfiles:
            files = {f.name: f.getvalue() for f in wfiles}
            digest = hashlib.sha256(b"".join(hashlib.sha256(n.encode() + d).digest() for n, d in sorted(files.items())))
            model, wnote, classes, lock = uploaded_model(arch, digest.hexdigest(), files)
        else:
            kind = ("imagenet" if wchoice == CHOICES["imagenet"] else
                    "starter" if wchoice == CHOICES["starter"] and arch == STARTER_ARCH else "random")
            if wchoice == CHOICES["starter"] and arch != STARTER_ARCH:
                st.info(f"The starter weights are a ResNet-18; {spec.title} is shown with random initialisation. "
                        "Choose ResNet-18 to see them.")
            if wchoice == CHOICES["upload"]:
                st.info("Upload weights in the sidebar; until then the network has random initialisation.")
            model, wnote, lock = shared_model(arch, kind)
    except WeightsError as e:
        st.error(str(e))
        model, wnote, lock = shared_model(arch, "random")
trained = wnote.trained
if wnote.kind == "starter" and not ss.get("in_weights_chosen"):
    st.info(f"ImageNet weights for {spec.title} are not cached on this machine, so this page opens on the starter "
            "weights that ship with the dashboard: learnt filters and maps, no ImageNet classes.")
if wchoice == CHOICES["imagenet"] and not trained:
    if weights is None:
        st.info(f"{spec.title} has no torchvision ImageNet weights: showing random initialisation.")
    else:
        st.warning(f"ImageNet weights for {spec.title} are not cached on this machine (and it may be offline), so "
                   "this is a randomly initialised network: early filters look like noise. Ahead of a lecture, "
                   f"run `python -m core weights prefetch {arch}` on a machine with internet, or copy "
                   f"`{cache_path(weights).name}` to `{cache_path(weights).parent}`.")
        size_mb = download_size_mb(arch)
        st.button(f"Download them now ({size_mb:,.1f} MB)" if size_mb else "Download them now", key="in_download",
                  help="From torchvision's server into the cache above ($TORCH_HOME); needs a network.",
                  on_click=lambda: ss.update(download_requested=True))
        if ss.pop("download_requested", False):
            bar = st.progress(0.0, "connecting...")
            try:
                st.success(prefetch(arch, progress=lambda f, msg: bar.progress(f, msg)) + ". Using them now.")
                shared_model.clear()      # the next build finds the file
                st.rerun()
            except WeightsError as e:
                bar.empty()
                st.error(f"No download: {e}")
st.caption(f"{spec.title} with {wnote.describe()}.")

# --- the image ---------------------------------------------------------------------------------
pixels, img_notes = None, []
if source == "validation image":
    labels = run_res.val_labels
    i_val = st.selectbox(f"Validation image ({len(labels)} of the run's, never trained on)", range(len(labels)),
                         key=f"in_val_{job_id}", format_func=lambda i: f"#{i}: {classes[int(labels[i])]}")
    pixels = run_res.val_images[i_val].permute(1, 2, 0).numpy()      # (S, S, 3) uint8, as the run saw it
    img_notes = [f"true class: {classes[int(labels[i_val])]}"]
elif source == "sample photo":
    pixels = sample_image(st.selectbox("Photo (public domain, bundled with scikit-image)", SAMPLES, key="in_sample"))
elif source == "test pattern":
    pixels = sample_image(st.selectbox("Pattern", PATTERNS, key="in_pattern"))
else:
    up = (st.file_uploader("Image (JPEG, PNG, WebP, BMP, TIFF, GIF)", max_upload_size=MAX_BYTES // 2**20,
                           type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"], key="in_upload")
          if source == "upload" else st.camera_input("Take a picture", key="in_camera"))
    if up is not None:
        try:
            loaded = load_image(up.getvalue())
            pixels, img_notes = loaded.pixels, loaded.notes
            ss["in_last_upload"] = (pixels, img_notes, up.name)
        except ImageError as e:
            st.error(f"{getattr(up, 'name', 'camera')}: {e}")
            if "in_last_upload" in ss:  # keep showing the last image that worked
                pixels, img_notes, last_name = ss["in_last_upload"]
                st.caption(f"Still showing your previous image, {last_name}.")
if pixels is None:
    st.info("Choose an image to look inside the network.")
    st.stop()

# A run's network reads images as the run did: its image size, ImageNet's mean and std (the model card's).
run_size = run_res.config.image_size if run is not None else None
tf = weights.transforms() if weights is not None and run is None else None
resize = int(tf.resize_size[0]) if tf is not None else (run_size or 256)
crop = int(tf.crop_size[0]) if tf is not None else (run_size or spec.input_size[1])
shown_w = 192 if crop < 192 else "content"    # a run's 32-pixel images, enlarged to be seen
pre = preprocess(pixels, resize, crop, *((tuple(tf.mean), tuple(tf.std)) if tf is not None else ()))
x = pre.tensor
c1, c2, c3 = st.columns([1, 1, 1.2])
c1.image(pixels, width=shown_w,
         caption=f"original {pixels.shape[1]}x{pixels.shape[0]}" + (f" ({'; '.join(img_notes)})" if img_notes else ""))
c2.image(pre.crop, width=shown_w, caption=f"resized (short side {resize}) and centre-cropped to {crop}x{crop}")
stats = pd.DataFrame({"channel": ["R", "G", "B"], "mean": x[0].mean((1, 2)).numpy(), "std": x[0].std((1, 2)).numpy(),
                      "min": x[0].amin((1, 2)).numpy(), "max": x[0].amax((1, 2)).numpy()})
c3.markdown(f"**Normalised tensor** 1x3x{crop}x{crop}: (value/255 - mean) / std with ImageNet's "
            f"mean {tuple(round(m, 3) for m in pre.mean)} and std {tuple(round(s, 3) for s in pre.std)}")
c3.dataframe(stats.round(3), hide_index=True)

summary = (run_summary(job_id, (3, crop, crop), run_res) if run is not None else
           cached_summary(arch, tuple(spec.input_size[:1]) + (crop, crop), ()))
model_key = f"run:{job_id}" if run is not None else arch     # whose results the session keeps
categories = (classes if classes is not None else
              weights.meta["categories"] if weights is not None and wnote.kind == "imagenet" else None)
layers = feature_layers(summary)
by_path = {fl.path: fl for fl in layers}

tab_maps, tab_filters, tab_attr, tab_top, *tab_run = st.tabs(
    ["Feature maps", "First-layer filters", "Attributions", "What excites a channel"]
    + (["What fine-tuning changed"] if run is not None else []))

with tab_maps:
    cols = st.columns([3, 1, 1])
    default = next((i for i, fl in enumerate(layers) if "relu" in fl.path.lower() or "ReLU" in fl.label), 0)
    path = cols[0].selectbox("Layer (early layers: edges and colour blobs; later: textures and parts)",
                             [fl.path for fl in layers], index=default, key=f"in_layer_{arch}",
                             format_func=lambda p: f"{by_path[p].stage} · {by_path[p].label}")
    sort = cols[1].toggle("Sort by mean activation", value=True, key="in_sort")
    shown = cols[2].selectbox("Channels", [16, 32, 64, 128], index=1, key="in_nch")
    with lock:
        acts, logits = capture(model, x, [path])
    act = acts[path]
    if act.dim() != 4:
        st.info("This layer's output is not a feature map.")
    else:
        cs = channel_stats(act)
        order = [int(c) for c in (cs.order if sort else range(act.shape[1]))][:shown]
        img, idx = mosaic(act, order, cols=8)
        m1, m2, m3 = st.columns(3)
        m1.metric("Channels", act.shape[1])
        m2.metric("Mean activation", f"{cs.mean:.3f}")
        m3.metric("Exact zeros", f"{100 * cs.zero_fraction:.1f}%", help="After a ReLU: units that are off for this image")
        fig = px.imshow(img, color_continuous_scale="gray", aspect="equal")
        fig.update_traces(customdata=idx, hovertemplate="channel %{customdata}<br>value %{z:.3f}<extra></extra>")
        fig.update_layout(height=520, margin=dict(t=30, b=0, l=0, r=0), coloraxis_colorbar=dict(title="shared scale"),
                          title=f"{len(order)} of {act.shape[1]} channels" + (", most active first" if sort else ""))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        st.plotly_chart(fig, width="stretch", key="in_grid")
        ch = st.selectbox("Channel to enlarge (default: the most active)", range(act.shape[1]), index=order[0],
                          key=f"in_ch_{arch}_{path}")
        big = F.interpolate(act[:, ch:ch + 1], size=(crop, crop), mode="bilinear", align_corners=False)[0, 0]
        big = (big - big.min()) / (big.max() - big.min()).clamp_min(1e-12)
        l1, l2 = st.columns(2)
        l1.image(big.numpy(), caption=f"channel {ch}, {act.shape[2]}x{act.shape[3]} upsampled", clamp=True)
        l2.image(overlay(torch.from_numpy(pre.crop), big).numpy(), caption="overlaid on the input")
    if wnote.kind == "starter":
        st.caption("No top-5 predictions: the starter weights were trained on fractal classes, not ImageNet's.")
    if categories:
        st.subheader("Top-5 predictions" + ("" if classes is None else " (your run's classes)"))
        preds = top_k(logits, categories)
        st.dataframe(pd.DataFrame(preds, columns=["class", "name", "probability"]), hide_index=True)

with tab_filters:
    filt = first_layer_filters(model)
    if filt is None:
        st.info("The first convolution of this network does not read the three colour channels directly.")
    else:
        n, k = filt.shape[0], filt.shape[1]
        st.image(filter_mosaic(filt, cols=12, scale=max(1, 48 // k)),
                 caption=f"{n} filters of {k}x{k}x3, each stretched to its own range. "
                         + ("Trained filters show oriented edges and colour blobs." if trained else
                            "Random filters are noise: the structure of trained ones is learned."))
    if arch in ALEXNET_ZFNET and run is None:
        st.subheader("AlexNet -> ZFNet: the first layer Zeiler & Fergus changed")
        pair = st.columns(2)
        for col, name in zip(pair, ALEXNET_ZFNET):
            m, used, _ = shared_model(name, "imagenet")
            conv = next(x for x in m.modules() if isinstance(x, torch.nn.Conv2d))
            f = first_layer_filters(m)
            col.image(filter_mosaic(f, cols=8, scale=max(1, 48 // f.shape[1])),
                      caption=f"{registry.get(name).title}: {f.shape[0]} filters {conv.kernel_size[0]}x"
                              f"{conv.kernel_size[1]}, stride {conv.stride[0]} ({used.describe()})")
        st.caption("ZFNet's 7x7 filters at stride 2 (AlexNet: 11x11 at stride 4) kept the first layer from the dead and "
                   "aliased filters the paper's visualisations showed. torchvision ships ImageNet weights for AlexNet "
                   "only, so ZFNet's filters here are random (its trained ones are in the paper's Figure 6); AlexNet's "
                   "are trained when its weights are cached, as each caption says.")

with tab_attr:
    preds = top_k(logits, categories, 5)
    c = st.columns([2, 3])
    target = c[0].selectbox("Explain the class", [p[0] for p in preds], key=f"in_target_{arch}",
                            format_func=lambda i: next(f"{n} ({p:.1%})" for j, n, p in preds if j == i))
    methods = c[1].multiselect("Methods", METHODS, ["Saliency", "Grad-CAM"], key="in_methods",
                               help="Integrated Gradients and Occlusion run many forward passes: seconds to minutes on a CPU.")
    st.caption(f"Grad-CAM looks at the stage `{gradcam_layer(summary)}`. Slow methods: {', '.join(sorted(SLOW))}. "
               "Deconvnet is ZFNet's visualisation (Zeiler & Fergus): the gradient passes each ReLU only where it "
               "is positive; guided backprop also needs the ReLU's input to be positive, hence its sharper maps.")
    # On a CPU these run in the server's process, beside every other user: methods that would take
    # more than a few seconds (and gigabytes of gradients) on this model are refused, said why.
    cost = {m: passes(m, crop) * summary.totals.macs / 1e9 for m in methods}
    refused = [m for m in methods if device().kind == "cpu" and cost[m] > CPU_ATTR_CAP_GMACS]
    if refused:
        st.warning("Not run on this CPU server: " + "; ".join(
            f"{m} on {spec.title} needs about {cost[m]:,.0f} GMACs ({passes(m, crop)} passes of "
            f"{summary.totals.macs / 1e9:.1f})" for m in refused)
            + f". The limit is {CPU_ATTR_CAP_GMACS} GMACs per method (a few seconds here, shared by every user): "
              "pick a smaller network (AlexNet, ResNet-18) or Saliency, Deconvnet, Guided backprop and Grad-CAM, "
              "which cost one forward and one backward pass. On a GPU every method runs.")
    allowed = [m for m in methods if m not in refused]
    st.button("Compute attributions", key="in_attr_go", disabled=not allowed,
              on_click=lambda: ss.update(attr_requested=True))
    if ss.pop("attr_requested", False):
        bar = st.progress(0.0, "starting")
        with lock:
            res = attribute_all(model, x, int(target), allowed, gradcam_layer(summary),
                                progress=lambda f, msg: bar.progress(f, msg))
        ss["attr_result"] = (model_key, wnote.describe(), int(target), [(r.method, r.heat.numpy(), r.seconds) for r in res])
    res = ss.get("attr_result")
    if res and res[0] == model_key:
        cols = st.columns(max(1, len(res[3])))
        for col, (meth, heat, secs) in zip(cols, res[3]):
            col.image(overlay(torch.from_numpy(pre.crop), torch.from_numpy(np.asarray(heat))).numpy(),
                      caption=f"{meth}: {secs:.2f} s" + ("" if np.asarray(heat).max() > 0 else
                                                         " (no positive evidence for this class)"))
        st.caption(f"Class {res[2]}, {res[1]}. Bright = pixels that raise the class score most.")
        fig = go.Figure(go.Bar(x=[m for m, _, _ in res[3]], y=[s for _, _, s in res[3]]))
        fig.update_layout(height=260, title="Run time (s)", margin=dict(t=40, b=10))
        st.plotly_chart(fig, key="in_attr_time")

with tab_top:
    st.caption("Zeiler & Fergus' Figure 2: for one channel, the image patches where it responds most, each the "
               "unit's receptive field (from the analysis engine), and the deconvnet projection of that single unit.")
    t = st.columns([3, 1])
    top_layer = t[0].selectbox("Layer", [fl.path for fl in layers], index=len(layers) // 3, key=f"in_top_layer_{arch}",
                               format_func=lambda path: by_path[path].label)
    top_ch = t[1].number_input("Channel", 0, by_path[top_layer].channels - 1, 0, key=f"in_top_ch_{arch}_{top_layer}")
    if run is not None:
        n_val = min(len(run_res.val_labels), RUN_SEARCH)
        names = [f"validation #{i} ({classes[int(run_res.val_labels[i])]})" for i in range(n_val)]
    else:
        names = SAMPLES + PATTERNS
    st.button(f"Search {len(names) + 1} images", key="in_top_go", on_click=lambda: ss.update(top_requested=True),
              help="The run's validation images and the image chosen above." if run is not None else
                   "The bundled photos, the test patterns and the image chosen above.")
    if ss.pop("top_requested", False):
        with st.spinner("Searching and projecting..."), lock:
            if run is not None:
                val = run_res.val_images[:n_val]                            # (n, 3, S, S) uint8
                xs, crops_ = normalise(val, crop), val.permute(0, 2, 3, 1).numpy()
            else:
                xs, crops_ = sample_batch(crop, names)
            xs, crops_ = torch.cat([xs, x]), np.concatenate([crops_, pre.crop[None]])
            found = top_patches(model, summary, top_layer, int(top_ch), xs, crops_, k=9)
        ss["top_result"] = (model_key, wnote.describe(), top_layer, int(top_ch), len(xs), found,
                            list(names) + ["your image"])
    res = ss.get("top_result")
    if res and res[0] == model_key:
        _, wdesc, r_layer, r_ch, n_searched, found, image_names = res
        side = found[0].box[2] if found else 0
        st.markdown(f"**{r_layer}, channel {r_ch}**: the {len(found)} strongest places in {n_searched} images "
                    f"({wdesc}); each patch is the unit's {side}x{side}-pixel receptive field.")
        if found:
            patches, projections = sheets(found)
            g1, g2 = st.columns(2)
            g1.image(patches, width="stretch", caption="the patches")
            g2.image(projections, width="stretch", caption="their deconvnet projections, in the same places")
            st.caption("Row by row: " + ", ".join(f"{image_names[p.image]} ({p.value:.2f})" for p in found) + ". "
                       "Grey where a field leaves the image. Each projection is contrast-stretched (its brightest "
                       "1% clipped, then a square root), so its faint parts show. Random weights give patches with "
                       "no common theme; trained ones repeat one pattern (an edge, a colour, a texture), as in "
                       "the paper.")
    st.markdown("**One unit on this image**: the channel's strongest unit on the image chosen above, projected back "
                "by deconvnet and by guided backprop.")
    st.button("Project this channel's strongest unit", key="in_unit_go",
              on_click=lambda: ss.update(unit_requested=True))
    if ss.pop("unit_requested", False):
        with st.spinner("Projecting..."), lock:
            ss["unit_result"] = (model_key, top_layer, int(top_ch),
                                 unit_view(model, summary, x, pre.crop, top_layer, int(top_ch)))
    ures = ss.get("unit_result")
    if ures and ures[0] == model_key:
        _, u_layer, u_ch, uv = ures
        side = uv.box[2]
        uc = st.columns(4)
        uc[0].image(uv.photo, width="stretch", caption="its field on your image")
        uc[1].image(uv.field, width="stretch", caption=f"the field, {side}x{side}")
        for col, (name, proj, secs) in zip(uc[2:], uv.projections):
            col.image(proj, width="stretch", clamp=True, caption=f"{name}, {secs:.1f} s")
        st.caption(f"{u_layer} channel {u_ch}: its strongest unit, at ({uv.row}, {uv.col}), activation "
                   f"{uv.value:.2f}. The projections cover the unit's field, beside the picture under it, each "
                   "contrast-stretched like those above.")

if run is not None:
    with tab_run[0]:
        st.caption("The lecture: a network's early layers learn generic features (edges, colour blobs) that suit any "
                   "images, its later layers features specific to the task it was trained on; so fine-tuning should "
                   "move the later layers more. Measured on this run, stage by stage: how far training moved the "
                   "weights (||W_after - W_before|| / ||W_before||) and how alike the stage's output stayed (linear "
                   "CKA, Kornblith et al. 2019, between the network the run started from, rebuilt from the same "
                   "weights and seed, and the trained one, on the same validation images).")
        key = f"changed_{job_id}"
        st.button("Measure what fine-tuning changed", key="in_changed_go", disabled=computing(key),
                  on_click=start_compute, args=(key, ComputeConfig.of(
                      "changed", f"what fine-tuning changed in run {job_id}", folder=str(run_res.folder))))
        follow_compute(key)
        wc = ss.get(key)
        if wc is not None:
            st.plotly_chart(what_changed_figure(wc), key="in_changed_chart")
            st.info(wc.verdict())
            st.dataframe(pd.DataFrame([{"stage": s.stage, "parameters": s.params,
                                        "trained": "new head" if s.new else "yes" if s.trained else "frozen",
                                        "weight change": round(s.weight_change, 5), "CKA": round(s.cka, 4)}
                                       for s in wc.stages]), hide_index=True,
                         column_config={"parameters": st.column_config.NumberColumn(format="localized")})
            if wc.filters_before is not None:
                f1, f2 = st.columns(2)
                k = wc.filters_before.shape[1]
                f1.image(filter_mosaic(wc.filters_before, cols=8, scale=max(1, 32 // k)), width="stretch",
                         caption=f"first-layer filters at the start ({wc.started_from})")
                f2.image(filter_mosaic(wc.filters_after, cols=8, scale=max(1, 32 // k)), width="stretch",
                         caption="after training (each filter stretched to its own range)")
                st.caption(f"The first convolution's weights moved {wc.first_conv_change:.3g} of their norm.")
