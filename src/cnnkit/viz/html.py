"""Pieces of a self-contained HTML page: escaped text, tables, embedded images, sections.

Takes strings, numbers, bytes and DataFrames only. Everything a page needs is inline: images
are ``data:`` URIs, the style sheet is a ``<style>`` block, and there is no script, font or
link to the network, so the file reads the same offline and as an e-mail attachment.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f4f5f8;margin:0}
main{max-width:1100px;margin:0 auto;padding:0 18px 40px}
header{background:#1d2330;color:#fff;padding:18px 0 14px}
header div{max-width:1100px;margin:0 auto;padding:0 18px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;color:#c5cbd8;font-size:13px}
nav{max-width:1100px;margin:10px auto 0;padding:0 18px;font-size:13px}
nav a{color:#2f5fb3;margin-right:12px;text-decoration:none}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;margin:16px 0;padding:14px 18px}
h2{font-size:18px;margin:0 0 8px}
p.note{color:#59607a;font-size:13px;margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}
.card{background:#f4f5f8;border-radius:6px;padding:8px 12px;min-width:104px}
.card b{display:block;font-size:22px}.card span{color:#59607a;font-size:12px}
.card.good b{color:#1e7a3a}.card.bad b{color:#b3261e}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:3px 10px;border-bottom:1px solid #e3e5ec;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f5f8;position:sticky;top:0}
.scroll{max-height:420px;overflow:auto;display:inline-block}
img{max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;background:#f4f5f8;border-radius:6px;padding:6px;font-size:12px}
figure.thumb{width:216px}figcaption{color:#3b4256;overflow-wrap:anywhere}
details summary{cursor:pointer;color:#2f5fb3}
"""


@dataclass(frozen=True)
class Section:
    """One block of the page: ``id`` is the anchor (``#id``), ``body`` trusted HTML built here."""

    id: str
    title: str
    body: str


def esc(text: Any) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for embedding bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(data: bytes, alt: str, *, mime: str = "image/png", width: int | None = None) -> str:
    """An ``<img>`` whose source is the bytes themselves."""
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{data_uri(data, mime)}" alt="{esc(alt)}"{size}>'


def fmt(value: Any, digits: int = 4) -> str:
    """A number as shown on the page: ``digits`` significant digits, ints as ints, NaN as a dash."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.{digits}g}"
    return str(value)


def note(text: str) -> str:
    """A small grey explanatory paragraph (the text is escaped)."""
    return f'<p class="note">{esc(text)}</p>'


def cards(items: Sequence[tuple[str, Any, str]]) -> str:
    """Big numbers in boxes: (label, value, tone) with tone '', 'good' or 'bad'."""
    boxes = [f'<div class="card {esc(tone)}"><b>{esc(fmt(value))}</b><span>{esc(label)}</span></div>'
             for label, value, tone in items]
    return f'<div class="cards">{"".join(boxes)}</div>'


def table(frame: pd.DataFrame, *, digits: int = 4, scroll: bool = False) -> str:
    """A DataFrame as an HTML table (no index); numbers right-aligned and rounded by ``fmt``."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    head = "".join(f'<th class="{"n" if n else ""}">{esc(c)}</th>' for c, n in zip(frame.columns, numeric,
                                                                                      strict=True))
    rows = []
    for values in frame.itertuples(index=False, name=None):
        cells = "".join(f'<td class="{"n" if n else ""}">{esc(fmt(v, digits))}</td>'
                        for v, n in zip(values, numeric, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    out = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def key_values(items: Mapping[str, Any]) -> str:
    """A two-column table of settings; values are shown as given (escaped)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in items.items())
    return f"<table><tbody>{rows}</tbody></table>"


def figure(image_html: str, caption: str = "", *, css_class: str = "") -> str:
    """An image with an optional caption (escaped); ``css_class='thumb'`` for grid thumbnails."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="{esc(css_class)}">{image_html}{cap}</figure>'


def grid(items: Sequence[str]) -> str:
    """Figures side by side, wrapping."""
    return f'<div class="grid">{"".join(items)}</div>'


def collapsed(summary: str, body: str) -> str:
    """Content hidden behind a click (no script: ``<details>``)."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, a contents line, then the sections in order."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><div><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></div></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")
