"""Page pieces (escaping, tables, embedded images) and the report's thumbnails and charts."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from cnnkit.viz import html as H
from cnnkit.viz.report_figures import bars_png, confusion_png, overlay_jpeg


def test_text_is_escaped_everywhere() -> None:
    frame = pd.DataFrame({"<name>": ["<script>x</script>"], "n": [1.23456789]})
    out = H.table(frame)
    assert "<script>" not in out and "&lt;script&gt;" in out and "&lt;name&gt;" in out
    assert ">1.235<" in out  # 4 significant digits, right-aligned numeric cell
    page = H.page('a "title"', "<sub>", [H.Section("s1", "One & two", H.note("<i>"))])
    assert '<section id="s1"><h2>One &amp; two</h2>' in page and "&lt;i&gt;" in page
    assert "<script" not in page and "http" not in page


def test_numbers_and_uris() -> None:
    assert [H.fmt(v) for v in (float("nan"), 3, 1234567, True, 0.000123456)] == ["–", "3", "1,234,567", "yes",
                                                                                 "0.0001235"]
    data = b"\x89PNG..."
    uri = H.data_uri(data, "image/png")
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == data


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)


def test_overlay_draws_where_the_points_are() -> None:
    black = np.zeros((300, 400, 3), dtype=np.uint8)  # crosses and rings are ~4 px: min(size) / 70
    true = np.array([[60.0, 90.0], [np.nan, np.nan]])
    pred = np.array([[240.0, 180.0], [120.0, 210.0]])
    img = _decode(overlay_jpeg(black, true, pred, likelihood=np.array([0.9, 0.1]), quality=95))
    assert img.shape == (300, 400, 3)
    red = img[182:186, 242:246].reshape(-1, 3).max(axis=0)  # lower-right arm: away from the yellow link
    assert red[0] > 150 and red[1] < 110, red
    orange = img[212:216, 122:126].reshape(-1, 3).max(axis=0)
    assert orange[0] > 150 and 90 < orange[1] < 200, orange  # the unsure prediction
    ring = img[85:95, 54:58].reshape(-1, 3).max(axis=0)  # left edge of the green ring round (60, 90)
    assert ring[1] > 150 and ring[0] < 110, ring
    assert img[10:40, 300:390].max() < 40  # nothing drawn elsewhere


def test_chart_sizes_grow_with_items_but_stay_bounded() -> None:
    few = Image.open(io.BytesIO(bars_png(["a", "b"], np.array([1.0, 2.0]), xlabel="px")))
    many = Image.open(io.BytesIO(bars_png([f"p{i}" for i in range(68)], np.arange(68.0), xlabel="px")))
    assert few.size[1] < many.size[1] <= 1100
    big = Image.open(io.BytesIO(confusion_png(np.eye(100, dtype=int), [str(i) for i in range(100)])))
    assert max(big.size) <= 900
