"""Property-based fuzzing of the readers and the spec parser/validator (hypothesis).

Property: ANY input either parses into a valid table / spec, or raises cnnkit's own error
(``CnnkitError``). Anything else (KeyError, TypeError, AttributeError, pandas or torch
errors) is a bug. Inputs are drawn "mostly valid with random damage": each field is
usually well-formed but may be replaced by any JSON value, so the search reaches deep
into each reader instead of stopping at the first type check.

``TARGETS`` (name -> (strategy, check)) is shared with ``bench/perf/fuzz.py``, which runs the
same properties for many more examples. CI keeps ``max_examples`` modest.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit.data.sources.coco import coco_table
from cnnkit.data.sources.csv import load_csv, read_csv_table
from cnnkit.data.sources.dlc import read_dlc
from cnnkit.data.sources.via import parse_via_csv, parse_via_json, via_table
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import CnnkitError

CI_EXAMPLES = int(os.environ.get("CNNKIT_FUZZ_EXAMPLES", "60"))

# -- building blocks ----------------------------------------------------------------------------
_leaf = (st.none() | st.booleans() | st.integers(-(10**6), 10**6)
         | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6))
ANY_JSON = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=3)
                        | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=12)


def damaged(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually ``valid`` (about 9 in 10); sometimes any JSON value."""
    # (one_of would treat the branches alike and shrink towards damage; this shrinks towards valid)
    return st.sampled_from(range(10)).flatmap(lambda i: ANY_JSON if i == 9 else valid)


COORD = st.sampled_from(range(10)).flatmap(
    lambda i: st.sampled_from(["3", "x", None, math.inf, math.nan]) if i == 9 else st.floats(-5, 50) | st.integers(-5, 50))
NAMES = st.sampled_from(["a", "b", "left_eye", "right_eye", "a", "b", "", " ", "a_x"])
FILES = st.sampled_from(["im0.png", "im1.png", "sub/im2.png", "", "../x.png", "C:\\im3.png"])


def _via2_region(via1: bool) -> st.SearchStrategy[Any]:
    point = st.fixed_dictionaries({"name": st.just("point"), "cx": COORD, "cy": COORD})
    other = st.fixed_dictionaries({"name": st.sampled_from(["point", "rect", "polygon", "circle"])},
                                  optional={"cx": COORD, "cy": COORD, "x": COORD, "y": COORD})
    shape = st.sampled_from(range(4)).flatmap(lambda i: other if i == 3 else point)
    attrs = st.dictionaries(st.sampled_from(["landmark", "name", "type"]), damaged(NAMES), max_size=2)
    region = st.fixed_dictionaries({}, optional={"shape_attributes": damaged(shape),
                                                 "region_attributes": damaged(attrs)})
    regions = st.lists(damaged(region), max_size=4)
    if via1:
        return regions.map(lambda rs: {str(i): r for i, r in enumerate(rs)})
    return regions


def _via2_entry(via1: bool) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({"filename": damaged(FILES), "regions": damaged(_via2_region(via1))},
                                 optional={"size": COORD})


def _via2_project() -> st.SearchStrategy[Any]:
    option = st.dictionaries(NAMES, st.text(max_size=3), max_size=3)
    attribute = st.fixed_dictionaries({"type": damaged(st.sampled_from(["dropdown", "radio", "text"]))},
                                      optional={"options": damaged(option)})
    return st.fixed_dictionaries(
        {"_via_img_metadata": damaged(st.dictionaries(st.text(max_size=4), damaged(_via2_entry(False)),
                                                      max_size=4))},
        optional={"_via_attributes": damaged(st.fixed_dictionaries(
                      {}, optional={"region": damaged(st.dictionaries(NAMES, damaged(attribute), max_size=2))})),
                  "_via_settings": damaged(st.fixed_dictionaries(
                      {}, optional={"core": damaged(st.fixed_dictionaries(
                          {}, optional={"default_filepath": damaged(st.text(max_size=4))}))}))},
    )


def _via3_project() -> st.SearchStrategy[Any]:
    ids = st.sampled_from(["1", "2", "3"])
    file = st.fixed_dictionaries({"fname": damaged(FILES)}, optional={"src": damaged(FILES), "loc": ANY_JSON})
    view = st.fixed_dictionaries({"fid_list": damaged(st.lists(ids, max_size=2))})
    xy = st.one_of(st.lists(COORD, max_size=4), st.tuples(st.sampled_from([1, 1, 2, 7, 99]), COORD, COORD).map(list))
    meta = st.fixed_dictionaries({"vid": damaged(ids)}, optional={
        "xy": damaged(xy), "z": damaged(st.lists(COORD, max_size=2)),
        "av": damaged(st.dictionaries(ids, damaged(NAMES), max_size=2))})
    attr = st.fixed_dictionaries({"aname": damaged(NAMES), "type": damaged(st.sampled_from([1, 3, 4]))},
                                 optional={"options": damaged(st.dictionaries(ids, NAMES, max_size=3))})
    return st.fixed_dictionaries({
        "project": damaged(st.fixed_dictionaries({}, optional={"vid_list": damaged(st.lists(ids, max_size=3))})),
        "file": damaged(st.dictionaries(ids, damaged(file), max_size=3)),
        "view": damaged(st.dictionaries(ids, damaged(view), max_size=3)),
        "metadata": damaged(st.dictionaries(st.text(max_size=3), damaged(meta), max_size=4)),
    }, optional={"attribute": damaged(st.dictionaries(ids, damaged(attr), max_size=2)), "config": ANY_JSON})


VIA_JSON = st.one_of(_via2_project(), st.dictionaries(st.text(max_size=4), damaged(_via2_entry(True)), max_size=3),
                     st.dictionaries(st.text(max_size=4), damaged(_via2_entry(False)), max_size=3),
                     _via3_project(), ANY_JSON)

COCO_JSON = st.fixed_dictionaries({
    "images": damaged(st.lists(damaged(st.fixed_dictionaries(
        {"id": damaged(st.integers(0, 3)), "file_name": damaged(FILES)})), max_size=3)),
    "annotations": damaged(st.lists(damaged(st.fixed_dictionaries(
        {"image_id": damaged(st.integers(0, 3)), "category_id": damaged(st.integers(0, 2)),
         "keypoints": damaged(st.lists(COORD, min_size=3, max_size=6))}, optional={"id": ANY_JSON})), max_size=4)),
    "categories": damaged(st.lists(damaged(st.fixed_dictionaries(
        {"id": damaged(st.integers(0, 2)), "keypoints": damaged(st.lists(NAMES, min_size=1, max_size=3))},
        optional={"name": ANY_JSON})), min_size=1, max_size=2)),
})

CELL = st.one_of(st.sampled_from(["", "nan", "inf", "-1", "3.5", "1e400", "[0, 1]", "[1,0,0]", "(1, 0)", "ants",
                                  '"a,b"', '"', "im0.png", "x;y", "\t", "NA", "True"]),
                 st.floats(-1e3, 1e3).map(repr), st.text(max_size=4))
HEADERS = st.sampled_from(["image", "filename", "Path", "a_x", "a_y", "b_x", "b_y", "x0", "y0", "x1", "y1",
                           "label", "class", "split", "", "a_x"])


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    sep = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.lists(HEADERS, min_size=0, max_size=6))
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=len(header) + 1), max_size=5))
    text = "\n".join(sep.join(r) for r in [header, *rows])
    return draw(st.sampled_from(["", "\ufeff"])) + text + draw(st.sampled_from(["", "\n", "\r\n"]))


@st.composite
def via_csv_text(draw: st.DrawFn) -> str:
    header = draw(st.sampled_from(["#filename,file_size,file_attributes,region_count,region_id,"
                                   "region_shape_attributes,region_attributes", "filename,region_shape_attributes"]))
    cells = st.one_of(CELL, st.just('"{""name"":""point"",""cx"":3,""cy"":4}"'),
                      st.just('"{""landmark"":""a""}"'), st.just('"{}"'), st.just('"[1]"'))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=8).map(",".join), max_size=4))
    return "\n".join([header, *rows]) + "\n"


@st.composite
def dlc_text(draw: st.DrawFn) -> str:
    parts = draw(st.lists(NAMES, min_size=0, max_size=3))
    n_index = draw(st.sampled_from([1, 3]))
    lead = [[""] * (n_index - 1)]
    rows = [["scorer", *lead[0], *["me"] * (2 * len(parts))]]
    if draw(st.booleans()):
        rows.append(["individuals", *lead[0], *["mouse1"] * (2 * len(parts))])
    rows.append(["bodyparts", *lead[0], *[p for p in parts for _ in (0, 1)]])
    rows.append(["coords", *lead[0], *draw(st.lists(st.sampled_from(["x", "y", "likelihood", ""]),
                                                     min_size=2 * len(parts), max_size=2 * len(parts)))])
    for _ in range(draw(st.integers(0, 3))):
        rows.append([draw(FILES), *([""] * (n_index - 1)), *draw(st.lists(CELL, max_size=2 * len(parts) + 1))])
    if draw(st.booleans()):  # damage: drop or shuffle header rows
        rows = draw(st.permutations(rows))
    return "\n".join(",".join(r) for r in rows) + "\n"


KINDS = st.sampled_from(["conv", "bn", "relu", "max_pool", "avg_pool", "global_avg_pool", "flatten", "drop_out",
                         "fc", "res_131", "res_33", "cnov", "Conv", ""])
OPTION_NAMES = st.sampled_from(["filter_size", "layer_depth", "strides", "stride", "padding", "bias", "decay", "eps",
                                "kernel", "prop", "keep_prob", "n", "depths", "layer_dept", "kernel_size"])
SMALL = st.one_of(st.integers(-1, 5), st.sampled_from([0.5, 1.5, True, "SAME", "VALID", "same", None, [1, 2, 2, 1],
                                                      [2, 2], [1, 1, 1], [4, 4, 8], [4, 4], "3"]))
SPEC = st.lists(st.one_of(
    st.tuples(KINDS).map(list),
    st.tuples(KINDS, st.dictionaries(OPTION_NAMES, damaged(SMALL), max_size=3)).map(list),
    ANY_JSON), max_size=5)


# -- checks -------------------------------------------------------------------------------------
def assert_valid_table(table: AnnotationTable) -> None:
    """What every reader promises about a table it returns."""
    assert isinstance(table, AnnotationTable)
    df = table.df
    assert "image" in df.columns and df.columns.is_unique
    assert len(set(table.landmarks)) == len(table.landmarks)
    pts = table.points()
    assert pts.shape == (len(table), len(table.landmarks), 2) and pts.dtype == np.float64
    if table.classes:
        assert table.labels().shape == (len(table),)


def _expect_table_or_error(make: Callable[[], AnnotationTable]) -> str:
    try:
        table = make()
    except CnnkitError:
        return "error"
    assert_valid_table(table)
    return "table"


def check_via_json(doc: Any) -> str:
    return _expect_table_or_error(lambda: via_table(parse_via_json(doc, "fuzz.json"), source="fuzz.json"))


def check_coco(doc: Any) -> str:
    return _expect_table_or_error(lambda: coco_table(doc, source="fuzz.json"))


def _with_file(text: str, suffix: str, read: Callable[[Path], AnnotationTable]) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_text(text, encoding="utf-8")
        return _expect_table_or_error(lambda: read(path))


def check_csv(text: str) -> str:
    return _with_file(text, ".csv", lambda p: read_csv_table(load_csv(p), source=str(p)))


def check_via_csv(text: str) -> str:
    return _with_file(text, ".csv", lambda p: via_table(parse_via_csv(p), source=str(p)))


def check_dlc(text: str) -> str:
    return _with_file(text, ".csv", lambda p: read_dlc(p)[0])


def check_spec(raw: Any) -> str:
    from cnnkit.layers.registry import kind_infos
    from cnnkit.model.builder import build_model
    from cnnkit.spec.parse import parse_spec
    from cnnkit.spec.validate import validate_spec

    try:
        specs = validate_spec(parse_spec(raw), kind_infos(), (3, 16, 16))
        assert all(s.kind in kind_infos() for s in specs)
        net = build_model(raw, size=(16, 16), outputs=4)  # small ints only: building is cheap
    except CnnkitError:
        return "error"
    import torch

    with torch.no_grad():
        out = net(torch.zeros(2, 3, 16, 16))
    assert tuple(out.shape) == (2, 4)
    return "spec"


TARGETS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]] = {
    "via_json": (VIA_JSON, check_via_json),
    "via_csv": (via_csv_text(), check_via_csv),
    "coco": (COCO_JSON, check_coco),
    "csv": (csv_text(), check_csv),
    "dlc": (dlc_text(), check_dlc),
    "spec": (SPEC, check_spec),
}


def _ci(name: str) -> Callable[[], None]:
    strategy, check = TARGETS[name]

    @settings(max_examples=CI_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    return run


@pytest.mark.filterwarnings("ignore::UserWarning")  # readers warn about ignored regions etc.: fine here
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_parses_or_raises_cnnkit_error(name: str) -> None:
    _ci(name)()
