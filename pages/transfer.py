"""Transfer Learning Studio: a real training run through the job runner, with live curves."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from core import registry
from core.attribution import gradcam_views
from core.features import gradcam_layer
from core.formatting import plural
from core.links import read_job_id
from core.train.advice import SCENARIOS, TABLE, advise
from core.train.data import SHAPE_CLASSES, TORCHVISION_SETS, DatasetError, files_to_zip, load_dataset, split_sizes
from core.train.events import ACTIVE_STATES, Done, Epoch, Event, LRFound, LRPoint, Note, RunInfo, Step
from core.train.jobs import JobError, JobSpec, JobStatus
from core.train.transfer import ENCODERS, TrainConfig, check_input, stage_names
from core.weights import STARTER_ARCH, default_start, imagenet_cached, start_for
from pages.own_model import run_query
from pages.common import (cached_summary, device, job_events, job_outcome, may_view, progress_line, require_router,
                          run_rules, runner, session_id, share_url, shown_job, ticking)

require_router()
ss, qp = st.session_state, st.query_params
LR_DEFAULT = 3e-3
FEW_STEPS = 30   # fewer training steps than this: the page says the run is too short to learn much
DATA_UPLOAD_MB = 20   # per zip or image file: the server's limit before weights uploads (Inside) raised it


@st.cache_data(max_entries=8, show_spinner="Preparing the data...")
def dataset(name: str, size: int, shapes_classes: int, shapes_per_class: int, seed: int, zip_digest: str,
            _zip: bytes | None):
    return load_dataset(name, size, shapes_classes=shapes_classes, shapes_per_class=shapes_per_class, seed=seed,
                        zip_bytes=_zip, download=False)  # downloads happen in the worker, not here


session_id()
jr = runner()


def studio_run(j: JobStatus) -> bool:
    """The Studio's own runs: training and the LR finder (not the Lab's or a computation)."""
    return j.kind in ("train", "lr_find") and isinstance(j.config, TrainConfig)


def restore_sidebar_from_run() -> None:
    """A reload during (or after) a run opens a new session on ?sid=...&job=...: the sidebar then
    shows what that run trained, not the defaults. Once per session, before the widgets exist."""
    if ss.get("tr_restored"):
        return
    ss["tr_restored"] = True
    job = read_job_id(qp.get("job"))
    mine = {j.id: j for j in jr.jobs_of(ss["sid"])}
    if job is None or (job not in mine and not may_view(job)):
        return
    try:
        stt = jr.status(job)
    except JobError:
        return
    if not studio_run(stt):
        return              # another page's run: shown_job says so below
    c: TrainConfig = stt.config
    ss.update(tr_ds=c.dataset, tr_lpc=c.labels_per_class, tr_size=c.image_size, tr_arch=c.arch, tr_w=c.weights,
              tr_scenario=c.scenario)
    if c.dataset == "shapes":
        ss.update(tr_shc=c.shapes_classes, tr_shn=c.shapes_per_class)
    if c.scenario == "finetune":
        ss.update({f"tr_unf_{c.arch}": c.unfreeze_from, "tr_lrb": c.lr_body})
    if c.scenario == "3":
        ss["tr_clf"] = c.classifier
    else:
        ss.update({"tr_ep": c.epochs, "tr_bs": c.batch_size, "tr_lr_value": c.lr, f"tr_aug_{c.scenario}": c.augment})
        ss["tr_lr_version"] = ss.get("tr_lr_version", 0) + 1   # the LR box is made anew with the run's rate


restore_sidebar_from_run()

st.title("Transfer Learning Studio")
st.caption("Train a classifier on a small dataset from a pretrained (or random) encoder, the lecture's way. "
           f"Training runs in a separate process on the {device().label}; this page shows its progress.")

with st.expander("Which scenario? The lecture's advice", expanded=False):
    a1, a2 = st.columns(2)
    similar = a1.toggle("My images are similar to ImageNet (photos of everyday things)", key="adv_sim")
    lots = a2.toggle("I have a lot of labelled data", key="adv_lots")
    rec_key, rec_text = advise(similar, lots)
    st.dataframe(pd.DataFrame(TABLE), hide_index=True)
    st.info(f"{rec_text} Suggested scenario: **{SCENARIOS[rec_key]}**.")
    st.button("Use this scenario", on_click=lambda: ss.update(tr_scenario=rec_key))

# --- configuration ---------------------------------------------------------------------------------
with st.sidebar:
    st.header("Data")
    ds = st.radio("Dataset", ["digits", "shapes", "zip", "folder", *TORCHVISION_SETS], key="tr_ds",
                  format_func={"digits": "handwritten digits (scikit-learn)", "shapes": "generated shapes & textures",
                               "zip": "my images (zip of class folders)", "folder": "my images (a folder)",
                               **{k: f"{v} (downloads; needs a network)" for k, v in TORCHVISION_SETS.items()}}.get)
    zip_bytes, zip_digest = None, ""
    sh_c, sh_n = 6, 100
    if ds == "shapes":
        sh_c = st.slider("classes", 2, len(SHAPE_CLASSES), 6, key="tr_shc")
        sh_n = st.slider("images per class", 10, 500, 100, key="tr_shn")
    elif ds == "zip":
        up = st.file_uploader("Zip of class folders (class_a/img.jpg ...)", type=["zip"], key="tr_zip",
                              max_upload_size=DATA_UPLOAD_MB)
        if up is not None:
            zip_bytes = up.getvalue()
    elif ds == "folder":
        files = st.file_uploader("A folder with one sub-folder per class", accept_multiple_files="directory",
                                 type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"], key="tr_dir",
                                 max_upload_size=DATA_UPLOAD_MB)
        if files:
            # The same safety checks as a zip: pack the files into one and read it back.
            zip_bytes = files_to_zip([(f.name, f.getvalue()) for f in files])
    if zip_bytes is not None:
        zip_digest = hashlib.sha256(zip_bytes).hexdigest()
    lpc = st.select_slider("Training labels per class", [0, 1, 2, 5, 10, 20, 50, 100], 0, key="tr_lpc",
                           format_func=lambda v: "all" if v == 0 else str(v))
    size = st.select_slider("Image size (pixels)", [32, 64, 96, 128], 32, key="tr_size")
    st.header("Model")
    arch = st.selectbox("Encoder", ENCODERS, key="tr_arch", format_func=lambda n: registry.get(n).label)
    imagenet_here = imagenet_cached(arch)
    # The default start: ImageNet when cached, else (for ResNet-18) the starter weights we ship,
    # never a silent "from scratch" on a fresh machine. The starter weights fit only a ResNet-18:
    # another encoder switches to what it can start from, and back to them on ResNet-18.
    if "tr_w" not in ss:
        ss["tr_w"] = default_start(arch)
    if start_for(arch, ss["tr_w"]) != ss["tr_w"]:
        ss["tr_w"] = ss["tr_w_auto"] = start_for(arch, ss["tr_w"])
    elif arch == STARTER_ARCH and ss.get("tr_w_auto") == ss["tr_w"]:
        ss["tr_w"] = "starter"
        del ss["tr_w_auto"]
    weights = st.radio("Start from", ["imagenet", "starter", "random"], key="tr_w",
                       on_change=lambda: ss.pop("tr_w_auto", None),
                       format_func={"imagenet": "ImageNet weights (when cached)",
                                    "starter": "ConvNet Lab starter weights (ResNet-18, fractals)",
                                    "random": "random (from scratch)"}.get)
    if ss.get("tr_w_auto") == weights:
        st.caption(f"The starter weights are a ResNet-18, so {registry.get(arch).title} starts from "
                   + ("ImageNet weights." if weights == "imagenet" else
                      "random weights (ImageNet's are not cached here)."))
    if weights == "starter":
        st.caption("Our own ResNet-18, pre-trained on formula-driven fractal images (no photos), shipped with "
                   "the dashboard: `python -m core pretrain` reproduces it."
                   + ("" if imagenet_here else " ImageNet weights are not cached on this machine, so the Studio "
                      "starts from these."))
    scenario = st.radio("Scenario", list(SCENARIOS), key="tr_scenario", format_func=lambda k: f"{k}: {SCENARIOS[k]}"
                        if k != "finetune" else SCENARIOS[k])
    d = TrainConfig()
    opts: dict = {}
    if scenario == "finetune":
        opts["unfreeze_from"] = st.selectbox("Unfreeze from stage", [""] + stage_names(arch)[:-1],
                                             key=f"tr_unf_{arch}", format_func=lambda n: n or "all stages")
        opts["lr_body"] = st.number_input("LR of the first stage (slice lo)", 1e-6, 1.0, d.lr_body, format="%.0e",
                                          key="tr_lrb")
    if scenario == "3":
        opts["classifier"] = st.radio("Classifier on the features", ["logreg", "knn"], key="tr_clf", format_func={
            "logreg": "logistic regression", "knn": "k-nearest neighbours (k = 5, fewer if fewer images)"}.get)
    else:
        opts["epochs"] = st.slider("Epochs", 1, 30, 5, key="tr_ep")
        opts["batch_size"] = st.select_slider("Batch size", [16, 32, 64, 128, 256], 64, key="tr_bs")
        # The LR finder's "Use" button sets a new default and a new key: the box then shows it,
        # and no value is ever seeded through session state before the widget.
        lr_version = ss.get("tr_lr_version", 0)
        opts["lr"] = st.number_input("Peak learning rate (one-cycle)", 1e-6, 10.0, ss.get("tr_lr_value", LR_DEFAULT),
                                     key=f"tr_lr_{lr_version}", format="%.1e")
        opts["augment"] = st.toggle("Augment (random shifts)", value=scenario == "finetune", key=f"tr_aug_{scenario}",
                                    help="Off: scenarios 1 and 2 compute the frozen features once and train only "
                                         "the head.")

if weights == "imagenet" and not imagenet_here:
    st.warning(f"ImageNet weights for {registry.get(arch).title} are not cached on this machine, so this run "
               f"starts from random weights (training from scratch). Ahead of a lecture: "
               f"`python -m core weights prefetch {arch}`"
               + (", or start from the starter weights." if arch == "resnet18" else "."))
cfg, config_error = None, None
try:
    cfg = TrainConfig(dataset="zip" if ds == "folder" else ds, arch=arch, weights=weights, scenario=scenario,
                      labels_per_class=int(lpc), image_size=int(size), shapes_classes=sh_c, shapes_per_class=sh_n,
                      **opts)
    check_input(cfg)
except ValueError as e:
    config_error = str(e)
    st.error(config_error)

# --- data preview ------------------------------------------------------------------------------------
data, tv_pending = None, False
if ds in ("zip", "folder") and zip_bytes is None:
    st.info("Upload a zip (or a folder) with one sub-folder per class (ImageFolder layout) in the sidebar.")
elif cfg is not None:
    try:
        data = dataset(cfg.dataset, cfg.image_size, sh_c, sh_n, cfg.seed, zip_digest, zip_bytes)
    except DatasetError as e:
        if ds in TORCHVISION_SETS:
            st.info(f"{TORCHVISION_SETS[ds]} is not on this machine yet: the training run will try to download it "
                    "(this needs a network; offline the run stops with a clear message).")
            tv_pending = True
        else:
            st.error(str(e))
if data is not None and cfg is not None:
    for n in data.notes:
        st.warning(n)
    c1, c2 = st.columns([1, 2])
    counts = data.counts()
    c1.markdown(f"**{plural(len(data.labels), 'image')}, {plural(len(counts), 'class', 'classes')}**")
    c1.plotly_chart(go.Figure(go.Bar(x=list(counts), y=list(counts.values()))).update_layout(
        height=240, margin=dict(t=10, b=10), xaxis=dict(title="class", type="category", tickangle=-45, dtick=1),
        yaxis_title="images"), key="tr_counts")
    first = [int(torch.nonzero(data.labels == i)[0]) for i in range(len(data.classes))][:12]
    c2.image([data.images[i].permute(1, 2, 0).numpy() for i in first], width=64,
             caption=[data.classes[int(data.labels[i])] for i in first])
    n_tr, n_val = split_sizes(data.labels, cfg.val_fraction, cfg.labels_per_class, cfg.seed)
    st.caption(f"Stratified split: {plural(n_tr, 'training image')} "
               f"({'all' if not lpc else f'at most {lpc}'} per class), {n_val} for validation "
               f"({cfg.val_fraction:.0%} of each class, at least one).")
    if cfg.scenario != "3":
        per_epoch = math.ceil(n_tr / cfg.batch_size)
        if per_epoch * cfg.epochs < FEW_STEPS:
            st.info(f"Only {plural(per_epoch * cfg.epochs, 'training step')} ({plural(cfg.epochs, 'epoch')} x "
                    f"{plural(per_epoch, 'batch', 'batches')}): too few to learn much. Few labels need more epochs or "
                    f"a smaller batch; the README's starter-weights table used 10 epochs at batch 32 "
                    f"({plural(10 * math.ceil(n_tr / 32), 'step')}).")

# --- jobs ---------------------------------------------------------------------------------------------
mine = jr.jobs_of(ss["sid"])
active = next((j for j in mine if j.state in ACTIVE_STATES), None)
b1, b2, b3 = st.columns(3)


def _submit(kind: str) -> None:
    try:
        ss["tr_job"] = jr.submit(ss["sid"], JobSpec(kind, cfg, zip_bytes))
        qp["job"] = ss["tr_job"]
    except JobError as e:
        ss["tr_error"] = str(e)


blocked = cfg is None or (data is None and not tv_pending) or active is not None
b1.button("Train", type="primary", disabled=blocked, on_click=_submit, args=("train",), key="tr_go")
b2.button("Find a learning rate", disabled=blocked or scenario == "3",
          on_click=_submit, args=("lr_find",), key="tr_lrfind")
if active is not None:
    b3.button("Cancel", on_click=jr.cancel, args=(active.id,), key="tr_cancel")
run_rules()
if "tr_error" in ss:
    st.error(ss.pop("tr_error"))

shown, viewer = shown_job(mine, studio_run, ss.get("tr_job"))   # a share link is read-only: look, never cancel
job_id = shown.id if shown else None


def describe_config(c: TrainConfig) -> str:
    """One line that says what a run trained, for a run shown under a different sidebar."""
    data_name = {"digits": "digits", "shapes": f"shapes ({c.shapes_classes} classes)", "zip": "your images"}.get(
        c.dataset, TORCHVISION_SETS.get(c.dataset, c.dataset))
    parts = [data_name, registry.get(c.arch).title, f"scenario {SCENARIOS[c.scenario]}",
             f"{c.image_size} px", f"labels per class: {c.labels_per_class or 'all'}"]
    if c.scenario != "3":
        parts += [plural(c.epochs, "epoch"), f"batch {c.batch_size}", f"peak LR {c.lr:.1e}"]
    return " · ".join(parts)


def curves(events: list[Event]) -> go.Figure:
    steps = [e for e in events if isinstance(e, Step)]
    epochs = [e for e in events if isinstance(e, Epoch)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("training loss per step", "validation per epoch",
                                                        "learning rate per stage"),
                        specs=[[{}, {"secondary_y": True}, {}]])
    fig.add_scatter(x=[e.step for e in steps], y=[e.loss for e in steps], name="train loss", row=1, col=1)
    fig.add_scatter(x=[e.epoch for e in epochs], y=[e.val_loss for e in epochs], name="val loss",
                    mode="lines+markers", row=1, col=2)
    fig.add_scatter(x=[e.epoch for e in epochs], y=[e.metrics["acc"] for e in epochs], name="val accuracy",
                    mode="lines+markers", row=1, col=2, secondary_y=True)
    groups = len(steps[0].lrs) if steps else 0
    for g in range(groups):
        fig.add_scatter(x=[e.step for e in steps], y=[e.lrs[g] for e in steps], row=1, col=3,
                        name="LR" if groups == 1 else f"LR, stage {g + 1} of {groups}")
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(title_text="val loss", row=1, col=2)
    fig.update_yaxes(title_text="val accuracy", tickformat=".0%", range=[0, 1.02], row=1, col=2, secondary_y=True)
    fig.update_yaxes(title_text="learning rate", type="log" if groups > 1 else "linear", row=1, col=3)
    fig.update_layout(height=360, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def use_lr(value: float) -> None:
    ss["tr_lr_value"], ss["tr_lr_version"] = value, ss.get("tr_lr_version", 0) + 1
    ss["tr_lr_applied"] = True


def live() -> None:
    if not job_id:
        return
    stt = jr.status(job_id)
    ev = job_events(job_id)
    if stt.state == "queued":
        st.info(f"Queued: position {stt.position}. This machine runs "
                f"{plural(jr.limits().max_concurrent, 'job')} at a time.")
    elif stt.state == "running":
        progress_line(ev)
    cfg_run: TrainConfig = stt.config
    if cfg_run != cfg:
        st.caption(f"Showing run {stt.id}: {describe_config(cfg_run)} (the sidebar has changed since).")
    for n in (e for e in ev if isinstance(e, Note)):
        (st.warning if n.warn else st.info)(n.message)
    if stt.kind == "lr_find":
        found = next((e for e in ev if isinstance(e, LRFound)), None)
        pts = [e for e in ev if isinstance(e, LRPoint)]
        lrs, losses = (found.lrs, found.losses) if found else ([p.lr for p in pts], [p.loss for p in pts])
        if lrs:
            fig = go.Figure(go.Scatter(x=lrs, y=losses, mode="lines"))
            if found:
                fig.add_vline(x=found.suggestion, line_dash="dash",
                              annotation_text=f"suggested {found.suggestion:.1e}")
            st.plotly_chart(fig.update_layout(xaxis_type="log", height=320, title="Loss vs learning rate",
                                              xaxis_title="learning rate", yaxis_title="smoothed loss"),
                            key="tr_lrplot")
        if found:
            # From the event itself: the job's state may still read "running" for a moment.
            st.success(f"LR finder finished: {plural(len(found.lrs), 'learning rate')} tried, suggested "
                       f"{found.suggestion:.1e}.")
            st.button(f"Use {found.suggestion:.1e} as the peak learning rate", key="tr_use_lr",
                      on_click=use_lr, args=(float(f"{found.suggestion:.1e}"),))
            if ss.pop("tr_lr_applied", False):
                st.rerun(scope="app")  # redraw the sidebar's box now, not at the next full run
    elif any(isinstance(e, (Step, Epoch)) for e in ev) and not (cfg_run.scenario == "3"):
        st.plotly_chart(curves(ev), key="tr_curves")
    info = next((e for e in ev if isinstance(e, RunInfo)), None)
    if info:
        if info.weights.fell_back:
            st.warning(f"This run started from {info.weights.sentence()}.")
        st.caption(f"{registry.get(cfg_run.arch).title} with {info.weights.describe()}: {info.trainable:,} trainable "
                   f"and {info.frozen:,} frozen parameters; {plural(info.n_train, 'training image')} / "
                   f"{plural(info.n_val, 'validation image')}.")
    if stt.kind == "train" or stt.state != "done":   # the LR finder says it is done above
        job_outcome(stt.state, stt.message)
    if stt.state not in ACTIVE_STATES and ss.get("tr_shown") != job_id:
        ss["tr_shown"] = job_id
        st.rerun()  # once, so the results below render


st.fragment(live, run_every=ticking(bool(job_id) and jr.status(job_id).state in ACTIVE_STATES))()
if job_id and not viewer and jr.status(job_id).kind == "train":
    # outside the live fragment: redrawn every second, an open popover showed an empty box mid-run
    with st.popover("Share this run (read-only)", icon=":material/share:"):
        st.code(share_url("transfer", job_id), language=None, wrap_lines=True)
        st.caption("Whoever opens this link sees this run, live while it trains and its results after; they cannot "
                   "cancel it. Your own link (with sid=) also lets its holder cancel your runs: keep it to yourself.")

# --- results --------------------------------------------------------------------------------------------
res = jr.results(job_id) if job_id and jr.status(job_id).kind == "train" else None
if res is not None:
    st.subheader("Results")
    s = res.summary
    m1, m2, m3 = st.columns(3)
    m1.metric("Validation accuracy", f"{s['val_acc']:.1%}")
    m2.metric("Validation loss", f"{s['val_loss']:.3f}")
    m3.metric("Time", f"{s['seconds']:.1f} s")
    c1, c2 = st.columns(2)
    cm = np.array(s["confusion"])
    c1.plotly_chart(go.Figure(go.Heatmap(z=cm, x=s["classes"], y=s["classes"], colorscale="Blues",
                                         text=cm, texttemplate="%{text}"))
                    .update_layout(height=380, title="Confusion matrix", xaxis_title="predicted",
                                   yaxis_title="true", yaxis_autorange="reversed",
                                   xaxis=dict(type="category", dtick=1), yaxis=dict(type="category", dtick=1)),
                    key="tr_cm")
    pairs = res.most_confused()
    c2.markdown("**Most confused**\n\n" + ("\n".join(f"- {t} taken for {p}: {n}x" for t, p, n in pairs)
                                            if pairs else "No mistakes on the validation set."))
    top = res.top_losses(8)
    st.markdown("**Top losses** (the validation images the model got most wrong: true → predicted, loss)")
    st.image([res.val_images[i].permute(1, 2, 0).numpy() for i in top], width=72,
             caption=[f"{s['classes'][int(res.val_labels[i])]}→{s['classes'][s['val_pred'][i]]} "
                      f"({s['val_losses'][i]:.2f})" for i in top])
    if res.has_model and st.button("Grad-CAM on four validation images", key="tr_cam"):
        size = int(res.model_info["config"]["image_size"])
        views = gradcam_views(res.trained_model(), res.val_images[top[:4]], res.val_labels[top[:4]].tolist(),
                              [s["val_pred"][i] for i in top[:4]], s["classes"],
                              gradcam_layer(cached_summary(res.model_info["arch"], (3, size, size), ())), size)
        st.image([v.image for v in views], width=128,
                 caption=[f"true {v.true}, predicted {v.predicted} (Grad-CAM at {v.stage})" for v in views])
    with st.container(horizontal=True):        # each button as wide as its file name; a row wraps, never cuts
        for name, what in res.downloads.items():
            st.download_button(name, res.file_bytes(name), name, icon=":material/download:", help=what,
                               key=f"tr_dl_{name}")
    if res.has_model:
        with st.container(horizontal=True):
            st.page_link("pages/inside.py", label="Look inside this model", icon=":material/visibility:",
                         query_params=run_query(job_id))
            st.page_link("pages/explorer.py", label="Its architecture in the explorer", icon=":material/account_tree:",
                         query_params=run_query(job_id))
        st.caption("Inside the network opens on this run's trained network with its own classes and validation "
                   "images, and measures what fine-tuning changed in it, stage by stage; the explorer shows the "
                   "architecture with its new head.")
    elif res.model_info["config"]["scenario"] == "3":
        st.caption("Scenario 3 trains no network weights: the encoder stays as it started (every stage unchanged), "
                   "and the classifier on its features is scikit-learn's. There is no trained network to look inside.")
    if "head.safetensors" in res.downloads:
        st.caption("The encoder stayed frozen, so only the trained head is kept (the model card names the encoder's "
                   "weights); Grad-CAM rebuilds the whole model from both.")

# --- this session's runs ----------------------------------------------------------------------------------
rows = []
for j in jr.jobs_of(ss["sid"]):
    if j.kind != "train":
        continue
    info = next((e for e in job_events(j.id) if isinstance(e, RunInfo)), None)
    done = next((e for e in job_events(j.id) if isinstance(e, Done)), None)
    c: TrainConfig = j.config
    rows.append({"run": j.id, "state": j.state, "dataset": c.dataset, "encoder": c.arch,
                 "weights used": info.weights.kind if info else "-", "scenario": SCENARIOS[c.scenario],
                 "labels/class": c.labels_per_class or "all", "peak LR": None if c.scenario == "3" else c.lr,
                 "val accuracy": round(done.metrics["acc"], 4) if done else None,
                 "seconds": round(done.seconds, 1) if done else None})
if rows:
    st.subheader("This session's runs")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
