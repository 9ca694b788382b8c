"""An HTML page as the report tests read it: its tables as rows of cell texts, its images
(each must decode as a PNG of some size), tags that must balance; and the numbers in a cell,
compared with the JSON values they show."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

VOID = {"meta", "img", "br"}


class Page(HTMLParser):
    """Tables as lists of rows of cell texts, the images' sources, and unbalanced tags."""

    def __init__(self):
        super().__init__()
        self.open, self.tables, self.images, self.cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag in VOID:
            return
        self.open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def read_page(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.open == [], f"unclosed tags {page.open}"
    for source in page.images:
        kind, data = source.split(",", 1)
        assert kind == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.load()
            assert image.width > 100 and image.height > 100
    return page


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", cell)]


def close(cell: str, *values, digits=3):
    shown = numbers(cell)
    expected = [v for v in values if v is not None]
    assert len(shown) == len(expected), (cell, values)
    for s, v in zip(shown, expected):
        assert s == pytest.approx(v, abs=0.51 * 10 ** -digits), (cell, values)
