"""The reliability plot writes a PNG of the promised size, atomically, from reliability tables."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnkit.errors import DataError
from cnnkit.trajectories.reliability import reliability_table
from cnnkit.viz.reliability import plot_reliability


def test_plot_reliability_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    predicted = rng.uniform(0, 10, 500)
    raw = reliability_table(predicted, 2 * predicted + rng.normal(0, 1, 500))
    fixed = reliability_table(predicted, predicted + rng.normal(0, 1, 500))
    out = plot_reliability({"raw": raw, "calibrated": fixed}, tmp_path / "rel.png", threshold_px=10.0)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (500, 500)
        pixels = np.asarray(im.convert("RGB")).astype(int)
    assert (np.abs(pixels - [255, 0, 0]).sum(axis=-1) < 60).any()  # the red threshold line is drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel.png"]  # no temporary left behind
    plot_reliability(raw, tmp_path / "one.png")  # a single table, no labels
    assert (tmp_path / "one.png").stat().st_size > 0


def test_plot_reliability_refuses_a_table_without_its_columns(tmp_path) -> None:
    import pandas as pd

    with pytest.raises(DataError, match=r"reliability table 'x': missing columns \['observed_p90_px'\]"):
        plot_reliability({"x": pd.DataFrame(columns=["n", "predicted_px", "observed_px"])}, tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()
