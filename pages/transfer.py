"""Transfer Learning Studio: a real training run in a worker process, with live curves."""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from core import registry
from core.analysis import summarize
from core.attribution import attribute, overlay
from core.data import SHAPE_CLASSES, TORCHVISION_SETS, DatasetError, files_to_zip
from core.jobs import ACTIVE, JobError, JobRunner
from core.results import load_results
from core.training import ENCODERS, SCENARIOS, TrainConfig, advise, build_transfer_model, load_dataset, normalise
from pages.common import device, require_router

require_router()
ss, qp = st.session_state, st.query_params


@st.cache_resource
def runner() -> JobRunner:
    """One runner per server: one job at a time on the CPU (it uses every core), two on a GPU."""
    dev = device()
    return JobRunner(max_concurrent=2 if dev.kind == "cuda" else 1, device="cuda" if dev.kind == "cuda" else "cpu")


@st.cache_data(max_entries=8, show_spinner="Preparing the data...")
def dataset(cfg: TrainConfig, zip_digest: str, _zip: bytes | None):
    return load_dataset(cfg, _zip, download=False)  # downloads happen in the worker, not here


# The session's identity lives in the URL, so a reload finds its jobs again.
if "sid" not in ss:
    ss["sid"] = qp.get("sid") or uuid.uuid4().hex[:12]
qp["sid"] = ss["sid"]
jr = runner()

st.title("Transfer Learning Studio")
st.caption("Train a classifier on a small dataset from a pretrained (or random) encoder, the lecture's way. "
           f"Training runs in a separate process on the {device().label}; this page shows its progress.")

with st.expander("Which scenario? The lecture's advice", expanded=False):
    a1, a2 = st.columns(2)
    similar = a1.toggle("My images are similar to ImageNet (photos of everyday things)", key="adv_sim")
    lots = a2.toggle("I have a lot of labelled data", key="adv_lots")
    rec_key, rec_text = advise(similar, lots)
    st.dataframe(pd.DataFrame({"": ["Very little data", "A lot of data"],
                               "Very similar dataset": ["Replace top layer (last FC)",
                                                        "Replace top layer + fine-tune a few layers"],
                               "Very different dataset": ["Replace more FC layers",
                                                          "Replace more FC layers + fine-tune many layers"]}),
                 hide_index=True)
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
        up = st.file_uploader("Zip of class folders (class_a/img.jpg ...)", type=["zip"], key="tr_zip")
        if up is not None:
            zip_bytes = up.getvalue()
            zip_digest = hashlib.sha256(zip_bytes).hexdigest()
    elif ds == "folder":
        files = st.file_uploader("A folder with one sub-folder per class", accept_multiple_files="directory",
                                 type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"], key="tr_dir")
        if files:
            # The same safety checks as a zip: pack the files into one and read it back.
            zip_bytes = files_to_zip([(f.name, f.getvalue()) for f in files])
            zip_digest = hashlib.sha256(zip_bytes).hexdigest()
    lpc = st.select_slider("Training labels per class", [0, 1, 2, 5, 10, 20, 50, 100], 0, key="tr_lpc",
                           format_func=lambda v: "all" if v == 0 else str(v))
    size = st.select_slider("Image size (pixels)", [32, 64, 96, 128], 32, key="tr_size")
    st.header("Model")
    arch = st.selectbox("Encoder", ENCODERS, key="tr_arch", format_func=lambda n: registry.get(n).title)
    weights = st.radio("Start from", ["imagenet", "starter", "random"], key="tr_w",
                       format_func={"imagenet": "ImageNet weights (when cached)",
                                    "starter": "ConvNet Lab starter weights (ResNet-18, fractals)",
                                    "random": "random (from scratch)"}.get)
    if weights == "starter":
        st.caption("Our own ResNet-18, pre-trained on formula-driven fractal images (no photos), shipped with "
                   "the dashboard: `python -m core pretrain` reproduces it.")
    if "tr_scenario" not in ss:
        ss["tr_scenario"] = "1"
    scenario = st.radio("Scenario", list(SCENARIOS), key="tr_scenario", format_func=lambda k: f"{k}: {SCENARIOS[k]}"
                        if k != "finetune" else SCENARIOS[k])
    unfreeze, clf, lr_body = "", "logreg", 3e-4
    if scenario == "finetune":
        with torch.device("meta"):
            stage_names = [n for n, m in registry.get(arch).build().named_children()
                           if any(True for _ in m.parameters())]
        unfreeze = st.selectbox("Unfreeze from stage", [""] + stage_names[:-1], key=f"tr_unf_{arch}",
                                format_func=lambda n: n or "all stages")
        lr_body = st.number_input("LR of the first stage (slice lo)", 1e-6, 1.0, 3e-4, format="%.0e", key="tr_lrb")
    if scenario == "3":
        clf = st.radio("Classifier on the features", ["logreg", "knn"], key="tr_clf",
                       format_func={"logreg": "logistic regression", "knn": "k-nearest neighbours (k = 5, fewer if fewer images)"}.get)
    else:
        epochs = st.slider("Epochs", 1, 30, 5, key="tr_ep")
        bs = st.select_slider("Batch size", [16, 32, 64, 128, 256], 64, key="tr_bs")
        if "tr_lr" not in ss:
            ss["tr_lr"] = 3e-3
        lr = st.number_input("Peak learning rate (one-cycle)", 1e-6, 10.0, key="tr_lr", format="%.0e")
        augment = st.toggle("Augment (random shifts)", value=scenario == "finetune", key=f"tr_aug_{scenario}",
                            help="Off: scenarios 1 and 2 compute the frozen features once and train only the head.")

if weights == "imagenet":
    from core.weights import cache_path, default_weights

    w = default_weights(arch)
    if w is not None and not cache_path(w).is_file():
        st.warning(f"ImageNet weights for {registry.get(arch).title} are not cached on this machine, so this run "
                   f"starts from random weights (training from scratch). Ahead of a lecture: "
                   f"`python -m core weights prefetch {arch}`.")
if weights == "starter" and arch != "resnet18":
    st.error("The starter weights are a ResNet-18: choose ResNet-18 as the encoder (or another starting point).")
    st.stop()
if ds == "folder":
    ds = "zip"  # a folder travels as a zip from here on
cfg = TrainConfig(dataset=ds, arch=arch, weights=weights, scenario=scenario, labels_per_class=int(lpc),
                  image_size=int(size), shapes_classes=sh_c, shapes_per_class=sh_n, classifier=clf,
                  unfreeze_from=unfreeze, lr_body=float(lr_body),
                  **({} if scenario == "3" else dict(epochs=int(epochs), batch_size=int(bs), lr=float(lr),
                                                      augment=bool(augment))))

try:
    from core.training import check_input

    check_input(cfg)
    size_error = None
except ValueError as e:
    size_error = str(e)
    st.error(size_error)

# --- data preview ------------------------------------------------------------------------------------
data, tv_pending = None, False
if ds == "zip" and zip_bytes is None:
    st.info("Upload a zip (or a folder) with one sub-folder per class (ImageFolder layout) in the sidebar.")
else:
    try:
        data = dataset(TrainConfig(dataset=ds, image_size=cfg.image_size, shapes_classes=sh_c,
                                   shapes_per_class=sh_n, seed=cfg.seed), zip_digest, zip_bytes)
    except (DatasetError, ValueError) as e:
        if ds in TORCHVISION_SETS:
            st.info(f"{TORCHVISION_SETS[ds]} is not on this machine yet: the training run will try to download it "
                    "(this needs a network; offline the run stops with a clear message).")
            tv_pending = True
        else:
            st.error(str(e))
if data is not None:
    for n in data.notes:
        st.warning(n)
    c1, c2 = st.columns([1, 2])
    counts = data.counts()
    c1.plotly_chart(go.Figure(go.Bar(x=list(counts), y=list(counts.values()))).update_layout(
        height=260, margin=dict(t=30, b=10), title=f"{len(data.labels)} images, {len(counts)} classes"), key="tr_counts")
    first = [int(torch.nonzero(data.labels == i)[0]) for i in range(len(data.classes))][:12]
    c2.image([data.images[i].permute(1, 2, 0).numpy() for i in first], width=64,
             caption=[data.classes[int(data.labels[i])] for i in first])
    n_val = sum(max(1, round(v * cfg.val_fraction)) for v in counts.values())
    n_tr = sum(min(v - max(1, round(v * cfg.val_fraction)), lpc or 10**9) for v in counts.values())
    st.caption(f"Stratified split: {n_tr} training images ({'all' if not lpc else f'at most {lpc}'} per class), "
               f"{n_val} for validation (20% of each class, at least one).")

# --- jobs ---------------------------------------------------------------------------------------------
mine = jr.jobs_of(ss["sid"])
active = next((j for j in mine if j.state in ACTIVE), None)
b1, b2, b3 = st.columns(3)


def _submit(kind: str) -> None:
    try:
        ss["tr_job"] = jr.submit(ss["sid"], cfg, kind, zip_bytes)
        qp["job"] = ss["tr_job"]
    except JobError as e:
        ss["tr_error"] = str(e)


blocked = (data is None and not tv_pending) or active is not None or size_error is not None
b1.button("Train", type="primary", disabled=blocked, on_click=_submit, args=("train",), key="tr_go")
b2.button("Find a learning rate", disabled=blocked or scenario == "3",
          on_click=_submit, args=("lr_find",), key="tr_lrfind")
if active is not None:
    b3.button("Cancel", on_click=lambda: jr.cancel(active.id), key="tr_cancel")
if "tr_error" in ss:
    st.error(ss.pop("tr_error"))

job_id = ss.get("tr_job") or qp.get("job") or (mine[-1].id if mine else None)
if job_id and job_id not in {j.id for j in mine}:
    job_id = None  # a link to someone else's (or a finished server's) job


def _curves(events: list[dict]) -> go.Figure:
    steps = [e for e in events if e["type"] == "step" and e.get("loss") == e.get("loss")]
    epochs = [e for e in events if e["type"] == "epoch"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("training loss per step", "validation per epoch",
                                                        "learning rate"))
    fig.add_scatter(x=[e["step"] for e in steps], y=[e["loss"] for e in steps], name="train loss", row=1, col=1)
    fig.add_scatter(x=[e["epoch"] for e in epochs], y=[e["val_loss"] for e in epochs], name="val loss",
                    mode="lines+markers", row=1, col=2)
    fig.add_scatter(x=[e["epoch"] for e in epochs], y=[e["val_acc"] for e in epochs], name="val accuracy",
                    mode="lines+markers", row=1, col=2)
    fig.add_scatter(x=[e["step"] for e in steps], y=[e["lr"] for e in steps], name="LR", row=1, col=3)
    fig.update_layout(height=330, margin=dict(t=40, b=10), legend=dict(orientation="h"))
    return fig


@st.fragment(run_every=1.0)
def live() -> None:
    if not job_id:
        return
    stt = jr.status(job_id)
    ev = jr.events(job_id)
    if stt.state == "queued":
        st.info(f"Queued: position {stt.position}. This machine runs {jr.max_concurrent} job(s) at a time.")
    steps = [e for e in ev if e["type"] == "step"]
    if steps:
        last = steps[-1]
        frac = min(1.0, last["step"] / max(1, last["total_steps"]))
        st.progress(frac, f"{stt.kind}: step {last['step']} of {last['total_steps']}"
                    + (f" · {last['images_per_s']:.0f} img/s · ETA {last['eta']:.0f} s" if "eta" in last else ""))
    if stt.kind == "lr_find":
        found = next((e for e in ev if e["type"] == "lr_find"), None)
        pts = found or {"lrs": [e["lr"] for e in steps], "losses": [e["loss"] for e in steps], "suggestion": None}
        fig = go.Figure(go.Scatter(x=pts["lrs"], y=pts["losses"], mode="lines"))
        if pts["suggestion"]:
            fig.add_vline(x=pts["suggestion"], line_dash="dash", annotation_text=f"suggested {pts['suggestion']:.1e}")
        st.plotly_chart(fig.update_layout(xaxis_type="log", height=320, title="Loss vs learning rate",
                                          xaxis_title="learning rate", yaxis_title="smoothed loss"), key="tr_lrplot")
        if found:
            st.button(f"Use {found['suggestion']:.1e}", on_click=lambda: ss.update(tr_lr=float(found["suggestion"])),
                      key="tr_use_lr")
    elif steps or any(e["type"] == "epoch" for e in ev):
        st.plotly_chart(_curves(ev), key="tr_curves")
    info = next((e for e in ev if e["type"] == "info" and "weights" in e), None)
    if info:
        st.caption(f"{stt.config.arch} with {info['weights'].split(':')[0]}: {info['trainable']:,} trainable and "
                   f"{info['frozen']:,} frozen parameters; {info['train']} training / {info['val']} validation images.")
    if stt.state == "done" and stt.kind == "train":
        st.success(f"Done: {stt.message}.")
    elif stt.state == "diverged":
        st.error(f"Diverged: {stt.message}")
    elif stt.state == "failed":
        st.error(f"The run failed: {stt.message}")
    elif stt.state == "cancelled":
        st.warning("Cancelled.")
    if stt.state not in ACTIVE and ss.get("tr_shown") != job_id:
        ss["tr_shown"] = job_id
        st.rerun()  # once, so the results below render


live()

# --- results --------------------------------------------------------------------------------------------
if job_id and jr.status(job_id).state == "done" and jr.status(job_id).kind == "train":
    res = load_results(jr.status(job_id).out_dir)
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
                                       yaxis_title="true", yaxis_autorange="reversed"), key="tr_cm")
        pairs = res.most_confused()
        c2.markdown("**Most confused**\n\n" + ("\n".join(f"- {t} taken for {p}: {n}x" for t, p, n in pairs)
                                                if pairs else "No mistakes on the validation set."))
        top = res.top_losses(8)
        st.markdown("**Top losses** (the validation images the model got most wrong)")
        st.image([res.val_images[i].permute(1, 2, 0).numpy() for i in top], width=72,
                 caption=[f"{s['classes'][int(res.val_labels[i])]}→{s['classes'][s['val_pred'][i]]} "
                          f"({s['val_losses'][i]:.2f})" for i in top])
        if (res.folder / "model.safetensors").is_file():
            if st.button("Grad-CAM on four validation images", key="tr_cam"):
                from safetensors.torch import load_file

                rc = TrainConfig(**res.model_info["config"])
                tm = build_transfer_model(TrainConfig(**{**res.model_info["config"], "weights": "random"}),
                                          len(s["classes"]))
                tm.model.load_state_dict(load_file(str(res.folder / "model.safetensors")))
                sm = summarize(rc.arch, (3, rc.image_size, rc.image_size))
                maps = [r for r in sm.layers if len(r.output_shape) == 3 and r.output_shape[1] >= 4]
                stage = maps[-1].module.split(".")[0] if maps else sm.layers[0].module.split(".")[0]
                imgs = []
                for i in top[:4]:
                    x = normalise(res.val_images[i:i + 1], rc.image_size)
                    a = attribute(tm.model, x, int(s["val_pred"][i]), "Grad-CAM", stage)
                    big = torch.nn.functional.interpolate(res.val_images[i:i + 1].float(), size=(128, 128))[0]
                    heat = torch.nn.functional.interpolate(a.heat[None, None], size=(128, 128), mode="bilinear")[0, 0]
                    imgs.append(overlay(big.permute(1, 2, 0).to(torch.uint8), heat).numpy())
                st.image(imgs, width=128, caption=[f"stage {stage}, predicted class"] * len(imgs))
        d1, d2, d3 = st.columns(3)
        if (res.folder / "model.safetensors").is_file():
            d1.download_button("Model (safetensors)", (res.folder / "model.safetensors").read_bytes(),
                               "model.safetensors", icon=":material/download:")
        d2.download_button("Model card (JSON: classes, preprocessing)", (res.folder / "model.json").read_text(),
                           "model.json", icon=":material/download:")
        d3.download_button("Metrics (CSV)", (res.folder / "metrics.csv").read_text(), "metrics.csv",
                           icon=":material/download:")

# --- this session's runs ----------------------------------------------------------------------------------
rows = []
for j in jr.jobs_of(ss["sid"]):
    if j.kind != "train":
        continue
    r = load_results(j.out_dir) if j.state == "done" else None
    rows.append({"run": j.id, "state": j.state, "dataset": j.config.dataset, "encoder": j.config.arch,
                 "weights": j.config.weights, "scenario": SCENARIOS[j.config.scenario],
                 "labels/class": j.config.labels_per_class or "all",
                 "val accuracy": round(r.summary["val_acc"], 4) if r else None,
                 "seconds": round(r.summary["seconds"], 1) if r else None})
if rows:
    st.subheader("This session's runs")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
