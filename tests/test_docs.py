"""The README as a map: it stays short, every page under docs/ is reachable from it, and every relative
link and image in the README, docs/ and bench/README.md points at a file that exists (and, with an
#anchor into a Markdown file, at a heading that exists, by GitHub's slug rules).

Pure Python on the Markdown text: no import of the project's code, no network."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 10_000  # bytes

# Inline links and images: [text](target) / ![alt](target "title"); the text may span lines.
INLINE = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)"
                    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)")
# Reference definitions: [label]: target
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
# Raw HTML images and links.
HTML = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    files = [README, *sorted(DOCS.glob("*.md"))]
    bench = ROOT / "bench" / "README.md"
    if bench.exists():
        files.append(bench)
    return files


def prose(text: str) -> str:
    """The text with code taken out (fenced blocks, indented blocks, inline code spans): a `[x](y)`
    inside code is not a link. Line count is kept so that messages can name lines."""
    out: list[str] = []
    fence: str | None = None
    prev_blank_or_code = True
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            out.append("")
            continue
        if m:
            fence = m.group(1)
            out.append("")
            continue
        indented = line.startswith(("    ", "\t"))
        if indented and prev_blank_or_code and line.strip():
            out.append("")  # an indented code block (not a list item's continuation)
            prev_blank_or_code = True
            continue
        prev_blank_or_code = not line.strip()
        out.append(line)
    body = "\n".join(out)
    # Inline code spans: a run of backticks up to the same run.
    return re.sub(r"(`+)(?:(?!\1).)+?\1", lambda s: re.sub(r"[^\n]", " ", s.group(0)), body, flags=re.DOTALL)


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image in a Markdown file, code excluded."""
    text = prose(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for rx, group in ((INLINE, 3), (REFDEF, 1), (HTML, 1)):
        for m in rx.finditer(text):
            target = m.group(group).strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((text.count("\n", 0, m.start()) + 1, target))
    return found


def local_links(path: Path) -> list[tuple[int, str, Path, str]]:
    """(line, target, resolved file, anchor) of every relative link: external schemes skipped."""
    out = []
    for line, target in links(path):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        resolved = path if not file_part else (ROOT / file_part.lstrip("/") if file_part.startswith("/")
                                               else path.parent / file_part)
        out.append((line, target, resolved.resolve(), unquote(anchor)))
    return out


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: Markdown markup dropped, lowercase, punctuation dropped (letters,
    digits, underscores, hyphens and spaces stay), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and underscores (unicode too)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (repeats get -1, -2, ... as on
    GitHub) and explicit `<a name|id="...">`."""
    raw = path.read_text(encoding="utf-8")
    text = prose(raw)
    seen: dict[str, int] = {}
    out: set[str] = set()
    lines = text.split("\n")
    for k, line in enumerate(lines):
        m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$", line)
        heading = m.group(2) if m else None
        if heading is None and k + 1 < len(lines) and line.strip() \
                and re.match(r"^ {0,3}(=+|-+)\s*$", lines[k + 1]) and not line.lstrip().startswith(("-", "*")):
            heading = line.strip()  # a setext heading
        if heading is None:
            continue
        # Slug from the raw line (code spans keep their text on GitHub), same position.
        m_raw = re.match(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$", raw.split("\n")[k])
        slug = github_slug(m_raw.group(2) if m_raw else raw.split("\n")[k].strip())
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    out.update(re.findall(r"<a\s+(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", raw, re.IGNORECASE))
    return out


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- the tests -----------------------------------------------------------------------------------------


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_LIMIT, (f"README.md is {size:,} bytes, over {README_LIMIT:,}: move the detail "
                                  "to a page under docs/ and link it")


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_relative_links_resolve(path: Path):
    broken = [f"{rel(path)}:{line}: {target} -> {resolved} does not exist"
              for line, target, resolved, _ in local_links(path) if not resolved.exists()]
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_anchors_match_headings(path: Path):
    bad = []
    for line, target, resolved, anchor in local_links(path):
        if not anchor or resolved.suffix.lower() != ".md" or not resolved.is_file():
            continue
        if anchor not in anchors(resolved):
            bad.append(f"{rel(path)}:{line}: {target}: no heading in {rel(resolved)} has the slug {anchor!r}")
    assert not bad, "anchors without a heading:\n" + "\n".join(bad)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {resolved for _, _, resolved, _ in local_links(README)}
    pages = [p.resolve() for p in sorted(DOCS.rglob("*")) if p.is_file()]
    assert pages, "docs/ is empty"
    missing = [rel(p) for p in pages if p not in linked]
    assert not missing, "not linked from README.md: " + ", ".join(missing)


# --- the checker checks itself, on made-up text -----------------------------------------------------------


def test_slugs_follow_github():
    assert github_slug("The two commands") == "the-two-commands"
    assert github_slug("`bench_summary.py`: the analysis engine vs torchinfo") == \
        "bench_summarypy-the-analysis-engine-vs-torchinfo"
    assert github_slug("GPU: `gpu_check.sh` on an NVIDIA H200 (2026-11-26)") == \
        "gpu-gpu_checksh-on-an-nvidia-h200-2026-11-26"
    assert github_slug("The Training Lab's default runs") == "the-training-labs-default-runs"
    assert github_slug("A [linked](x.md) heading") == "a-linked-heading"


def test_the_checker_finds_links_and_ignores_code(tmp_path: Path):
    md = tmp_path / "a.md"
    md.write_text("# Top\n\nSee [b](b.md#top), ![pic](img/p.png \"title\") and [web](https://x.org).\n"
                  "A [link over\ntwo lines](c.md).\n\n    [not](code.md)\n\n```\n[not](fenced.md)\n```\n"
                  "Inline `[not](span.md)`; [here](#top); [ref]: d.md\n", encoding="utf-8")
    targets = [t for _, t in links(md)]
    assert sorted(targets) == sorted(["b.md#top", "img/p.png", "https://x.org", "c.md", "#top"])
    assert "top" in anchors(md)
