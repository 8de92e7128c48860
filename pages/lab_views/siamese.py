"""Training Lab: a Siamese network and one-shot learning (layout only; see core.lab.siamese)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.images import ImageError, load_image
from core.lab import new_employee as ne
from core.lab import siamese as sm
from core.lab.common import LabResults
from core.lab.glyphs import glyphs
from core.train.events import Event, Snapshot
from pages.lab_views.charts import curves, live_figure, readable
from pages.lab_views.widgets import knob_widgets

INTRO = ("A Siamese network learns a similarity function instead of a classifier: two images go through one "
         "encoder (shared weights) and it says whether they show the same class. Trained on some classes, it "
         "then recognises classes it has never seen from a single example each: N-way one-shot learning, "
         "the lecture's \"new employee\".")
WAYS = [2, 3, 5, 10, 20, 30, 50]
METHODS = {"siamese": "Siamese network", "classifier": "classifier features (nearest neighbour)",
           "pixels": "pixels (nearest neighbour)", "untrained": "Siamese network before training", "chance": "chance (1/N)"}


def controls(d: dict[str, Any]) -> dict[str, Any]:
    knobs = sm.Config.KNOBS
    out = knob_widgets(sm.Config, d, ["data", "loss"], "sia", more_settings=False)
    if out["data"] == "glyphs":
        out |= knob_widgets(sm.Config, d, ["characters", "drawers"], "sia", more_settings=False)
    if out["data"] == "digits":      # ten classes: 2 to 8 held out, its own widget so glyphs' 40 does not carry over
        linked = int(d["unseen"]) if isinstance(d["unseen"], int) and 2 <= d["unseen"] <= 8 else 5
        out["unseen"] = st.slider("Unseen digits (the last ones)", 2, 8, linked, key="sia_unseen_d",
                                  help=knobs["unseen"].help or None)
    else:
        out |= knob_widgets(sm.Config, d, ["unseen"], "sia", more_settings=False)
    # N-way tests: the usual N up to the unseen classes, and any N a link asked for
    try:
        linked = list(sm.parse_ways(d["ways"]))
    except ValueError:
        linked = []
    options = sorted({w for w in WAYS + linked if w <= out["unseen"]}) or [2]
    wanted = [w for w in linked if w in options]
    picked = st.multiselect(knobs["ways"].label, options, wanted or [options[-1] if options[-1] <= 5 else 5],
                            key=f"sia_ways_{out['unseen']}", help=knobs["ways"].help)
    out["ways"] = ",".join(str(w) for w in sorted(picked)) or str(options[0])
    out |= knob_widgets(sm.Config, d, ["epochs", "lr"], "sia")
    return out


@st.cache_data(max_entries=4)
def _sample_glyphs(characters: int, drawers: int, seed: int) -> np.ndarray:
    return glyphs(characters, drawers, seed).images[:, 0].numpy()


def explain(cfg: sm.Config | None) -> None:
    with st.expander("How it works: twins, pairs and the one-shot test", expanded=False):
        st.markdown(
            "- **Twins.** Both images go through *the same* encoder (one set of weights, called twice): "
            "convolutions and max-pooling, then a dense layer, Koch et al.'s design scaled to 28x28.\n"
            "- **Pairs, not labels.** Every training image, as an anchor, is paired with another drawing of its class "
            "(a *same* pair) and with every anchor of another class in its batch (*different* pairs). The network "
            "never learns *which* class an image is, only whether two images match.\n"
            "- **One-shot test.** N classes it never saw, one drawing of each by one hand (the support set); a query "
            "drawn by another hand. The answer is the most similar support image. Chance is 1/N.\n"
            "- **Honest baselines, same trials.** Nearest neighbour on raw pixels; nearest neighbour on the features "
            "of an ordinary classifier (the same encoder plus a softmax over the training classes, same recipe).")
        if cfg is not None and cfg.data == "glyphs":
            imgs = _sample_glyphs(6, min(cfg.drawers, 8), cfg.seed)
            n = min(cfg.drawers, 8)
            st.image([imgs[c * n + k] for c in range(6) for k in range(n)], width=40)
            st.caption(f"Six generated characters, each in {n} handwritings (one row per character).")


def _trial(support: np.ndarray, query: np.ndarray, scores: np.ndarray, answer: int, label: str) -> None:
    """One trial: the query, then the support set with the similarity under each image."""
    best = int(np.argmax(scores))
    caps = [f"{s:.2f}{' ✓' if i == answer else ''}{' ←' if i == best else ''}" for i, s in enumerate(scores)]
    c1, c2 = st.columns([1, 12], vertical_alignment="top")
    c1.image(np.clip(query.astype(np.float32), 0, 1), width=44, caption=label)
    c2.image([np.clip(s.astype(np.float32), 0, 1) for s in support], width=44, caption=caps)


def live(events: list[Event], cfg: sm.Config) -> None:
    ways = sm.parse_ways(cfg.ways)
    if any(e.kind in ("step", "epoch") for e in events):
        st.plotly_chart(live_figure("sia_curves", events, lambda: curves(
            events, f"one_shot_{ways[-1]}", f"{ways[-1]}-way one-shot accuracy", percent=True,
            loss_title="pair loss / cross-entropy", metric_range=(0, 1))), key="sia_curves")
        st.caption("Right: one-shot accuracy on unseen classes after each epoch (200 watch trials), the Siamese "
                   "network and the classifier's features on the same trials.")
    snap = next((e for e in reversed(events) if isinstance(e, Snapshot) and e.series == "siamese"), None)
    if snap:
        _trial(snap.arrays["support"], snap.arrays["query"], snap.arrays["scores"], int(snap.arrays["answer"][0]),
               "query")
        st.caption(f"One {ways[0]}-way trial after epoch {snap.epoch}: the query, then the support set with the "
                   "network's similarity (✓ the right class, ← the network's pick).")


def _bars(final: dict) -> go.Figure:
    ways = list(final["one_shot"])
    rows = {"siamese": final["one_shot"], "classifier": final["baselines"]["classifier"],
            "pixels": final["baselines"]["pixels"], "untrained": final["untrained"], "chance": final["chance"]}
    fig = go.Figure([go.Bar(name=METHODS[m], x=[f"{n}-way" for n in ways], y=[v[n] for n in ways],
                            text=[f"{v[n]:.0%}" for n in ways], textposition="outside") for m, v in rows.items()])
    fig.update_layout(barmode="group", height=400, yaxis=dict(tickformat=".0%", range=[0, 1.1], title="accuracy"),
                      title=f"One-shot accuracy on {final['unseen_classes']} unseen classes", margin=dict(t=50, b=10),
                      legend=dict(orientation="h", y=-0.15), uniformtext=dict(minsize=12, mode="show"))
    return readable(fig)


def _upload(label: str, key: str, camera: bool = False) -> np.ndarray | None:
    """An uploaded (or photographed) drawing as a 28x28 image, or None; errors shown, not raised."""
    f = st.camera_input(label, key=key) if camera else st.file_uploader(label, type=None, key=key)
    if f is None:
        return None
    try:
        return ne.prepare(load_image(f.getvalue()).pixels)
    except (ImageError, ValueError) as e:
        st.error(f"{f.name}: {e}")
        return None


def results(res: LabResults) -> None:
    final, a = res.final, res.arrays
    st.subheader("One-shot accuracy")
    st.plotly_chart(_bars(final), key="sia_bars")
    st.caption(f"{final['train_classes']} training classes, {final['unseen_classes']} unseen; every method answers "
               f"the same {res.config['trials']} trials per N.")
    n = list(final["one_shot"])[-1]
    ours, pix, clf = final["one_shot"][n], final["baselines"]["pixels"][n], final["baselines"]["classifier"][n]
    verdict = (f"At {n}-way, training on pairs took the network from {final['untrained'][n]:.0%} (its random "
               f"start) to {ours:.0%}, against {pix:.0%} for raw pixels and {1 / int(n):.0%} for chance. ")
    if clf > ours:
        verdict += (f"A classifier's features do better here ({clf:.0%}): with a label for every training image it "
                    "gets more out of the same data than same/different answers do. Both need no retraining for a "
                    "new class: they compare, they do not classify.")
    else:
        verdict += f"A classifier's features, compared the same way, reach {clf:.0%}."
    if ours <= pix:
        verdict += (" The network did not beat raw pixels in this run: with few training classes it learns what "
                    "separates *those* classes, not classes in general (more classes help).")
    st.markdown(verdict)
    if res.config["loss"] == "binary":
        st.caption("The untrained binary head has random weights: its \"similarity\" can even prefer the most "
                   "different image (below chance).")

    st.subheader("Trials, by method")
    ways = [int(w) for w in a["ways"]]
    c1, c2 = st.columns(2)
    n = c1.selectbox("Test", ways, format_func=lambda w: f"{w}-way", key="sia_show_n")
    method = c2.radio("Scores of", ["siamese", "classifier", "pixels"], format_func=METHODS.get, key="sia_show_m",
                      horizontal=True)
    imgs = a["test_images"].astype(np.float32) / 255
    for k in range(len(a[f"query_{n}"])):
        _trial(imgs[a[f"support_{n}"][k]], imgs[a[f"query_{n}"][k]], a[f"scores_{method}_{n}"][k],
               int(a[f"answer_{n}"][k]), f"query {k + 1}")
    st.caption("Scores: " + {"siamese": "p(same)" if res.config["loss"] == "binary" else "minus the distance",
                             "classifier": "cosine similarity of the classifier's features",
                             "pixels": "minus the Euclidean distance between the images"}[method]
               + "; ✓ the right class, ← the pick.")

    st.subheader("A new employee: one example, no retraining")
    classes = np.unique(a["test_labels"])
    staff_n = min(5, len(classes) - 1)
    staff = list(range(staff_n))
    threshold = ne.verification_threshold(res)
    score_name = "p(same)" if res.config["loss"] == "binary" else "minus the distance"
    st.markdown(f"The \"staff\" are {staff_n} unseen classes, one drawing of each on file. A newcomer joins with "
                "**one** example: pick an unseen class, or upload (or photograph) a drawing of your own.")
    if threshold is None:
        st.caption("This run was trained before runs kept a verification threshold: every drawing goes to its most "
                   "similar reference, even a drawing of nobody on file. Train again to see \"none of these\".")
    else:
        v = res.final["verify"]
        st.markdown(f"**A match needs a similarity ({score_name}) of at least {threshold:.2f}**; below it the answer "
                    f"is *none of these*. The threshold best separates same from different pairs of the training "
                    f"classes (drawings held out of training against training drawings): there it accepted "
                    f"{v['same_accepted']:.0%} of {v['same_pairs']:,} same pairs and turned away "
                    f"{v['different_rejected']:.0%} of {v['different_pairs']:,} different ones.")
    how = st.radio("Newcomer", ["pick", "upload", "camera"], key="sia_new_how", horizontal=True,
                   format_func={"pick": "an unseen class", "upload": "upload a drawing",
                                "camera": "take a photo"}.get)
    if how == "pick":
        choices = list(range(staff_n, len(classes)))
        new = st.selectbox("Newcomer class", choices, key="sia_new_pick",
                           format_func=lambda c: f"unseen class {c + 1}")
        gal = ne.new_employee(res, staff, int(new), threshold=threshold, strangers=True)
    else:
        st.caption("Dark ink on light paper or light on dark both work: the image is turned grey, cropped to the ink "
                   "and scaled to 28x28.")
        ref = _upload("One example of the new class", "sia_new_up", camera=how == "camera")
        if ref is None:
            return
        gal = ne.new_employee(res, staff, ref, threshold=threshold)
    names = [f"staff {k + 1}" for k in range(staff_n)] + ["newcomer"]
    st.image([np.clip(r, 0, 1) for r in gal.references], width=80, caption=names)
    recall = gal.recall()
    known = gal.truth >= 0
    staff_ok = float((gal.predicted[known] == gal.truth[known]).mean()) if known.any() else float("nan")
    if how == "pick":
        c1, c2 = st.columns(2)
        c1.metric("Newcomer recognised", f"{recall[-1]:.0%}",
                  help="The newcomer's other drawings that go to the newcomer: each is compared with the staff and "
                       "the newcomer's one example.")
        if threshold is not None:
            c2.metric("Strangers turned away", f"{gal.turned_away():.0%}",
                      help="Drawings of the other unseen classes (nobody on file) answered \"none of these\".")
    st.caption(f"Every other drawing of the staff{' and the newcomer' if how == 'pick' else ''}: "
               f"{staff_ok:.0%} go to the right reference among {len(gal.references)}"
               f"{'' if how == 'pick' else f' (the newcomer took {np.mean(gal.predicted[known] == staff_n):.0%} of them)'}"
               + ("" if threshold is None else
                  f"; {np.mean(gal.predicted[known] == ne.UNKNOWN):.0%} are turned away as none of these") + ".")
    if how != "pick":
        q = _upload("A query to classify", "sia_new_q")
        if q is not None:
            net = ne.load_model(res)
            scores = ne.classify(net, gal.references, q[None])[0]
            st.image([q], width=80, caption=["query"])
            fig = go.Figure(go.Bar(x=names, y=scores))
            if threshold is not None:
                fig.add_hline(y=threshold, line_dash="dash", annotation_text=f"threshold {threshold:.2f}",
                              annotation_position="top left")
            fig.update_layout(height=300, margin=dict(t=40, b=10), title="Similarity of the query to each reference",
                              yaxis_title=score_name)
            st.plotly_chart(readable(fig), key="sia_new_scores")
            pick = int(ne.decide(scores[None], threshold)[0])
            best = int(np.argmax(scores))
            if pick == ne.UNKNOWN:
                st.warning(f"**None of these**: the query is unknown. Its closest reference, {names[best]}, has a "
                           f"similarity of {scores[best]:.2f}, below the threshold {threshold:.2f}.")
            else:
                st.success(f"The query goes to **{names[pick]}** (similarity {scores[pick]:.2f}"
                           + ("" if threshold is None else f", threshold {threshold:.2f}") + ").")
