"""The manual builds as `make docs` builds it: `mkdocs build --strict` (every warning an error:
a broken link or anchor, a page missing from the nav, a docstring mkdocstrings cannot render),
without the network, into a fresh folder. Every page of the nav is written, the API reference
holds real docstrings (read here from the source, so an empty page cannot pass), and no page
loads anything from another site."""

from __future__ import annotations

import ast
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python" / "cxrfast"
# A proxy nobody listens on: anything the build tried to fetch would fail, not quietly succeed.
NO_NETWORK = "http://127.0.0.1:9"


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _html_of(page: str) -> str:
    """docs/x.md -> x/index.html, docs/a/index.md -> a/index.html (MkDocs' directory URLs)."""
    stem = page.removesuffix(".md")
    return f"{stem}.html" if stem == "index" or stem.endswith("/index") else f"{stem}/index.html"


def _first_sentence(source: Path, name: str) -> str:
    """The first line of the docstring of the function or class `name` in `source`."""
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            doc = ast.get_docstring(node)
            assert doc, f"{source}: {name} has no docstring"
            return doc.splitlines()[0].strip()
    raise AssertionError(f"{source} defines no {name}")


def _text(page: Path) -> str:
    """The page's words: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


def _words(text: str) -> str:
    return " ".join(text.replace("`", "").split())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HTTP_PROXY": NO_NETWORK, "HTTPS_PROXY": NO_NETWORK,
           "http_proxy": NO_NETWORK, "https_proxy": NO_NETWORK, "NO_PROXY": "", "no_proxy": ""}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_every_page_of_the_nav_is_built(site):
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = _nav_pages(nav)
    assert len(pages) >= 20 and "api/index.md" in pages
    missing = [page for page in pages if not (site / _html_of(page)).is_file()]
    assert not missing, f"pages of the nav that were not built: {missing}"


@pytest.mark.parametrize(("page", "source", "name"), [
    ("api/io.md", "io/dicom.py", "read_dicom"),
    ("api/eval.md", "eval/delong.py", "delong_test"),
    ("api/nn-losses.md", "nn/sparse_encoder.py", "SparseEncoder"),
])
def test_the_api_reference_holds_the_docstrings(site, page, source, name):
    sentence = _words(_first_sentence(PACKAGE / source, name))
    assert len(sentence) > 30, sentence
    assert sentence in _words(_text(site / _html_of(page))), f"{page} lacks the docstring of {name}: {sentence!r}"


def test_the_pages_load_nothing_from_other_sites(site):
    # Links to other sites are fine (a reader follows them); scripts, styles, fonts and images
    # fetched from one are not: the manual must work offline.
    fetched = re.compile(r"<(?:script|img|iframe|source)\b[^>]*\ssrc=\"(?:https?:)?//|"
                         r"<link\b[^>]*\shref=\"(?:https?:)?//|@import\s+url\(\"?(?:https?:)?//")
    offenders = [str(p.relative_to(site)) for p in site.rglob("*.html") if fetched.search(p.read_text())]
    assert not offenders, f"pages that fetch from another site: {offenders}"


def test_the_report_screenshots_are_shown(site):
    page = (site / "evaluation" / "index.html").read_text()
    for image in ("report-evaluation.png", "report-comparison.png"):
        assert image in page and (site / image).is_file(), image
