"""The handout: the lecture path as one static HTML page that opens from a file, with no server and
no network.

`export(folder)` writes `index.html`, `plotly.min.js` (plotly's own copy, once, beside it: no CDN)
and the pictures under `img/`. Every stop keeps its text, numbers, tables, charts (plotly's HTML,
interactive offline), the finished runs' curves and pictures, its presenter notes, and links back
to the live dashboard's stop and full page under a configurable base URL. Panels come from the
prepared state when it fits, else they are computed here (`core.lecture.panels`).
"""

from __future__ import annotations

import html
import io
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import plotly
import plotly.io as pio
from PIL import Image

from core.formatting import fmt_int
from core.lecture.panels import (Block, Callout, Chart, Graph, Images, Metrics, Panel, Row, Table, Text,
                                 stop_panel)
from core.lecture.prepare import load_panel, load_runs, state
from core.lecture.stops import SECTIONS, STOPS, Stop, full_link, run_plans

DEFAULT_BASE_URL = "http://localhost:8501"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
Progress = Callable[[float, str], None]

CSS = """
body { font-family: system-ui, sans-serif; font-size: 17px; line-height: 1.5; color: #111; margin: 0 auto;
       max-width: 1100px; padding: 0 24px 60px; }
h1 { margin-top: 32px; } h2 { margin-top: 56px; border-top: 3px solid #c0392b; padding-top: 12px; }
.where { color: #555; font-size: 15px; } .point { font-size: 19px; }
.metrics { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.metric { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 180px; }
.metric .label { color: #555; font-size: 14px; } .metric .value { font-size: 26px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 15px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } th { background: #f4f6f8; }
td:first-child, th:first-child { text-align: left; }
.callout { border-left: 5px solid #1f77b4; background: #eef5fb; padding: 8px 14px; margin: 12px 0; }
.callout.warning { border-color: #e6a700; background: #fff8e1; }
.callout.success { border-color: #2ca02c; background: #edf7ed; }
.row { display: flex; gap: 16px; flex-wrap: wrap; } .row > div { flex: 1 1 420px; min-width: 0; }
figure { display: inline-block; margin: 4px; text-align: center; font-size: 13px; color: #555; }
.caption { color: #555; font-size: 15px; }
details { margin: 12px 0; } summary { cursor: pointer; font-weight: 600; }
pre { white-space: pre-wrap; font-size: 12px; background: #f4f6f8; padding: 8px; }
nav ol { columns: 2; }
"""


def inline(s: str) -> str:
    """One line of our Markdown as HTML: `code`, **bold**, *italic*, everything else escaped."""
    s = html.escape(s, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", s)


def markdown(text: str) -> str:
    """The small Markdown our texts use: paragraphs, "- " lists, **bold**, *italic*, `code`, ####."""
    out, items = [], []
    for line in text.split("\n") + [""]:
        if line.startswith("- "):
            items.append(f"<li>{inline(line[2:])}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.startswith("#### "):
            out.append(f"<h4>{inline(line[5:])}</h4>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out)


class _Writer:
    """Writes one stop's blocks, numbering its charts and pictures."""

    def __init__(self, folder: Path, slug: str) -> None:
        self.folder, self.slug, self.n = folder, slug, 0

    def _next(self) -> str:
        self.n += 1
        return f"{self.slug}-{self.n}"

    def block(self, b: Block) -> str:
        if isinstance(b, Text):
            return markdown(b.md)
        if isinstance(b, Metrics):
            return '<div class="metrics">' + "".join(
                f'<div class="metric" title="{html.escape(h)}"><div class="label">{html.escape(label)}</div>'
                f'<div class="value">{html.escape(v)}</div></div>' for label, v, h in b.items) + "</div>"
        if isinstance(b, Table):
            return (b.frame.to_html(index=False, header=not b.matrix, escape=True, border=0)
                    + self._caption(b.caption))
        if isinstance(b, Chart):
            div = pio.to_html(b.figure, include_plotlyjs=False, full_html=False, div_id=f"chart-{self._next()}",
                              config={"displaylogo": False, "responsive": True})
            return div + self._caption(b.caption)
        if isinstance(b, Images):
            figs = []
            for img, cap in zip(b.images, b.captions):
                name = f"img/{self._next()}.png"
                Image.fromarray(np.asarray(img, dtype=np.uint8)).save(self.folder / name)
                figs.append(f'<figure><img src="{name}" width="{b.width}" alt="{html.escape(cap)}">'
                            f"<figcaption>{html.escape(cap)}</figcaption></figure>")
            return "<div>" + "".join(figs) + "</div>" + self._caption(b.caption)
        if isinstance(b, Callout):
            return f'<div class="callout {b.kind}">{markdown(b.text)}</div>'
        if isinstance(b, Graph):
            return (f"<details><summary>Diagram (Graphviz source; the live stop draws it)</summary>"
                    f"<pre>{html.escape(b.dot)}</pre></details>" + self._caption(b.caption))
        if isinstance(b, Row):
            return '<div class="row">' + "".join(
                "<div>" + "".join(self.block(x) for x in col) + "</div>" for col in b.columns) + "</div>"
        raise TypeError(f"unknown block {type(b).__name__}")

    @staticmethod
    def _caption(text: str) -> str:
        return f'<p class="caption">{inline(text)}</p>' if text else ""


def panel_for(stop: Stop) -> Panel:
    """The stop's prepared panel when it fits, else computed now."""
    return load_panel(stop) or stop_panel(stop, load_runs(stop) if stop.training else None)


def export(folder: str | Path, base_url: str = DEFAULT_BASE_URL, progress: Progress = lambda f, m: None) -> Path:
    """Writes the handout into `folder` (created; its index.html, img/ and plotly.min.js replaced).

    Returns:
        The path of index.html.
    """
    out = Path(folder)
    (out / "img").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PLOTLY_JS, out / "plotly.min.js")
    base = base_url.rstrip("/")
    prepared = state()
    plans = run_plans(prepared["profile"]) if prepared else run_plans()
    parts, toc = [], []
    for section in SECTIONS:
        toc.append(f"<li><strong>{html.escape(section)}</strong><ol>" + "".join(
            f'<li><a href="#{s.slug}">{html.escape(s.title)}</a></li>' for s in STOPS if s.section == section)
            + "</ol></li>")
    for k, stop in enumerate(STOPS):
        progress(k / len(STOPS), f"stop {stop.slug}")
        w = _Writer(out, stop.slug)
        body = "\n".join(w.block(b) for b in panel_for(stop))
        live = f"{base}/lecture?stop={stop.slug}"
        full = base + full_link(stop, plans)
        parts.append(
            f'<section id="{stop.slug}"><h2>{html.escape(stop.title)}</h2>'
            f'<p class="where">{html.escape(stop.section)} · stop {k + 1} of {len(STOPS)} · '
            f'<a href="{html.escape(live)}">live stop</a> · <a href="{html.escape(full)}">open in the full page</a></p>'
            f'<div class="point">{markdown(stop.point)}</div>{body}'
            f"<details><summary>Presenter notes</summary>{markdown(stop.notes)}</details></section>")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(prepared["when"])) if prepared else "not prepared"
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ConvNet Architectures: the lecture '
            f'path</title><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<script src="plotly.min.js"></script><style>{CSS}</style></head><body>'
            f"<h1>ConvNet Architectures: the lecture path</h1>"
            f'<p class="where">{len(STOPS)} stops from ConvNet Lab ({html.escape(base)}); runs prepared: '
            f"{html.escape(when)}. MACs are multiply-accumulates (FLOPs = 2 x MACs); memory in fp32, "
            f"1 MB = {fmt_int(10**6)} bytes.</p><nav><ol>{''.join(toc)}</ol></nav>"
            + "\n".join(parts) + "</body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    progress(1.0, "written")
    return index


def export_zip(base_url: str = DEFAULT_BASE_URL, progress: Progress = lambda f, m: None) -> bytes:
    """The handout as a zip (folder `convnetlab-handout/`), for a download."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="convnetlab-handout-") as tmp:
        export(Path(tmp), base_url, progress)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    z.write(p, Path("convnetlab-handout") / p.relative_to(tmp))
        return buf.getvalue()


def handout_job(base_url: str, device: str, progress: Progress) -> bytes:
    """The handout zip as a computation job (`core.train.compute`): the lecture page's download."""
    return export_zip(base_url, progress)
