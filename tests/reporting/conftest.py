"""Fixtures for the report tests: an HTML page parser (standard library) and tiny trained runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

SMALL = [["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["bn"], ["relu"],
         ["res_33", {"depths": [16, 16], "stride": 2}], ["global_avg_pool"]]


@dataclass
class Page:
    """What the tests read from a report: sections, images, links, tables, cards."""

    sections: list[str] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # every src and href
    tables: dict[str, list[list[list[str]]]] = field(default_factory=dict)  # section id -> tables -> rows -> cells
    cards: dict[str, str] = field(default_factory=dict)  # label -> shown value
    scripts: int = 0
    text: str = ""

    def table(self, section: str, index: int = 0) -> list[dict[str, str]]:
        """A section's table as dicts keyed by its header row."""
        rows = self.tables[section][index]
        return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._section = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._card: list[str] | None = None
        self._card_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("src", "href"):
            if key in a:
                self.page.urls.append(a[key])
        if tag == "section":
            self._section = a.get("id", "")
            self.page.sections.append(self._section)
        elif tag == "img":
            self.page.images.append(a)
        elif tag == "script":
            self.page.scripts += 1
        elif tag == "table":
            self.page.tables.setdefault(self._section, []).append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and "card" in a.get("class", "").split():
            self._card, self._card_parts = [], []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.page.tables[self._section][-1].append(self._row)
            self._row = None
        elif tag in ("b", "span") and self._card is not None:
            self._card_parts.append("".join(self._card).strip())
            self._card = []
        elif tag == "div" and self._card is not None:
            if len(self._card_parts) == 2:
                self.page.cards[self._card_parts[1]] = self._card_parts[0]
            self._card = None

    def handle_data(self, data: str) -> None:
        self.page.text += data
        if self._cell is not None:
            self._cell.append(data)
        if self._card is not None:
            self._card.append(data)


@pytest.fixture
def parse_page() -> Callable[[Path], Page]:
    def parse(path: Path) -> Page:
        parser = _Parser()
        parser.feed(Path(path).read_text(encoding="utf-8"))
        parser.close()
        return parser.page

    return parse


def number(text: str) -> float:
    """A number as the page shows it ('1,234', '0.5', '12.5 %', '–' for NaN)."""
    text = text.replace(",", "").replace("%", "").strip()
    return float("nan") if text in ("–", "") else float(text)


@pytest.fixture
def as_number() -> Callable[[str], float]:
    return number


@pytest.fixture
def small_spec() -> list[Any]:
    return SMALL


@pytest.fixture(scope="session")
def landmark_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 1-epoch landmark run on 20 demo images (8 points, 3 left/right pairs): a few seconds."""
    from cnnkit.data.sources import read_annotations
    from cnnkit.demo.synth import make_demo_dataset
    from cnnkit.train.fit import fit

    root = tmp_path_factory.mktemp("landmark_run")
    table = read_annotations(make_demo_dataset(root / "data", n_images=20, seed=3), flip_pairs="auto")
    train, val, test = table.split((0.6, 0.2, 0.2), seed=0)
    run = fit(SMALL, train, val, out_dir=root / "run", head="gap", size=(40, 40), epochs=1, batch_size=8,
              quiet=True, device="cpu", plots=False)
    return {"run": run, "test": test, "root": root}
