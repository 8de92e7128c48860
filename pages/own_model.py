"""A model of your own on the pages: a finished Studio run opened by its link (`job=`, read-only with
`view=`), an uploaded ONNX file, and timm's architectures by name. Cached, as pages/common's helpers:
Streamlit's caches are shared by every user, so nothing here is mutated after it is made."""

from __future__ import annotations

import hashlib
import threading

import streamlit as st
import torch

from core import timm_archs
from core.analysis import Summary, summarize_module
from core.diagram import Diagram, diagram, first_layers
from core.links import read_job_id
from core.onnx_import import OnnxNet, read_onnx, summarize_onnx
from core.train.jobs import JobError
from core.train.results import Results
from pages.common import may_view, runner


@st.cache_data(show_spinner="Listing timm's architectures...")
def timm_names() -> list[str]:
    """Every `timm:` name (importing timm once per server: seconds)."""
    return timm_archs.names()


def linked_run() -> tuple[str, Results] | None:
    """The Studio run this page was opened on: `job=` of one of this session's runs, or any run with a
    valid read-only `view=` token (pages/common.share_link_query). None without such a link; a link that
    does not hold, or a run without a network, is said in one line and the page goes on without it."""
    qp = st.query_params
    job = read_job_id(qp.get("job"))
    if job is None:
        return None
    jr = runner()
    if job not in {j.id for j in jr.jobs_of(st.session_state["sid"])} and not may_view(job):
        if qp.get("view") is not None:
            st.warning("This share link is not valid: its job= and view= do not belong together (the link may be cut "
                       "off or mistyped). Ask whoever shared it to copy it again.")
        return None
    try:
        stt = jr.status(job)
    except JobError:
        st.warning("The run in this link is no longer on this server.")
        return None
    if stt.kind != "train":
        return None            # a Lab run or a computation: not a network to look inside
    if stt.state != "done":
        st.info(f"Run {job} has not finished ({stt.state}): its network opens here once it is done.")
        return None
    res = jr.results(job)
    if res is None or not res.has_model:
        st.info(f"Run {job} saved no network: scenario 3 trains a scikit-learn classifier on the frozen encoder's "
                "features, so its encoder is the one it started from, unchanged.")
        return None
    return job, res


def run_query(job_id: str) -> dict[str, str]:
    """The query that opens a run on another page: `job=` and, when this page was opened read-only,
    the same `view=` token (the session's own runs need none: `sid=` is added by every page)."""
    view = st.query_params.get("view")
    return {"job": job_id, **({"view": view} if view and may_view(job_id) else {})}


@st.cache_resource(max_entries=2, ttl="15m", show_spinner="Loading the run's network...")
def run_network(job_id: str, _res: Results) -> tuple[torch.nn.Module, threading.Lock]:
    """The run's trained network (eval mode) for every user who opens it; the lock keeps one user's
    hooks from seeing another's forward pass."""
    model = _res.trained_model()
    model.requires_grad_(False)
    return model, threading.Lock()


@st.cache_data(max_entries=16, show_spinner="Analysing the run's network...")
def run_summary(job_id: str, size: tuple[int, int, int], _res: Results) -> Summary:
    """The engine's summary of the run's network (its encoder with the new head), on the meta device."""
    spec = _res.network_spec(job_id)
    return summarize_module(spec.build_meta(), spec.name, spec.title, size)


@st.cache_data(max_entries=8, show_spinner="Drawing the diagram...")
def run_diagram(job_id: str, size: tuple[int, int, int], depth: int, _res: Results) -> tuple[Diagram, dict[str, int]]:
    d = diagram(_res.network_spec(job_id).build_meta(), size, depth)
    return d, first_layers(d, [r.module for r in run_summary(job_id, size, _res).layers])


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@st.cache_resource(max_entries=2, ttl="15m", show_spinner="Reading the ONNX file...")
def onnx_net(digest: str, name: str, _data: bytes) -> OnnxNet:
    """An uploaded file converted once (core.onnx_import.read_onnx; OnnxError for a file it refuses)."""
    return read_onnx(_data, name)


@st.cache_data(max_entries=16, show_spinner="Analysing the ONNX graph...")
def onnx_summary(digest: str, size: tuple[int, int, int], _net: OnnxNet) -> Summary:
    return summarize_onnx(_net, size)


@st.cache_data(max_entries=8, show_spinner="Drawing the diagram...")
def onnx_diagram(digest: str, size: tuple[int, int, int], depth: int, _net: OnnxNet) -> tuple[Diagram, dict[str, int]]:
    d = diagram(_net.model, size, depth, _net.inputs, device="cpu")
    return d, first_layers(d, [r.module for r in onnx_summary(digest, size, _net).layers])
