"""Tests for cnnkit.spec.validate: every kind of problem, all reported at once. Torch-free kinds."""

from __future__ import annotations

import pytest

from cnnkit.errors import SpecError
from cnnkit.spec.parse import parse_spec
from cnnkit.spec.validate import (
    REQUIRED,
    KindInfo,
    Option,
    check_from_default,
    check_hw,
    check_int_list,
    check_padding,
    to_hw,
    validate_spec,
)


def _halve(shape: tuple[int, int, int], *, width: int, stride: int) -> tuple[int, int, int]:
    return (width, shape[1] // stride, shape[2] // stride)


KINDS = {
    "squash": KindInfo(
        "squash",
        {
            "width": Option(8, None, ("filters",)),
            "stride": Option(2, lambda v: None if isinstance(v, int) and v >= 1 else "an integer >= 1"),
        },
        _halve,
    ),
    "keep": KindInfo("keep", {"prop": Option(REQUIRED, lambda v: None if 0 < v <= 1 else "(0, 1]")}, None),
}


def test_defaults_filled_and_aliases_canonical() -> None:
    out = validate_spec(parse_spec([["squash", {"filters": 4}]]), KINDS, (3, 8, 8))
    assert dict(out[0].params) == {"width": 4, "stride": 2}


def test_all_problems_in_one_error() -> None:
    raw = [
        ["squsah"],
        ["squash", {"widht": 3}],
        ["squash", {"stride": 0}],
        ["keep"],
        ["squash", {"width": 3, "filters": 4}],
    ]
    with pytest.raises(SpecError) as err:
        validate_spec(parse_spec(raw), KINDS, (3, 8, 8))
    p = err.value.problems
    assert len(p) == 5
    assert p[0].startswith("layer 0: unknown layer type 'squsah'. Did you mean 'squash'?")
    assert p[1].startswith("layer 1 (squash): unknown option 'widht'. Did you mean 'width'? Allowed options:")
    assert p[2] == "layer 2 (squash): option 'stride' expected an integer >= 1. Received: 0."
    assert p[3].startswith("layer 3 (keep): missing required option 'prop'")
    assert "given twice" in p[4]
    assert str(err.value).startswith("5 problems in the spec:")


def test_spatial_size_shrinking_to_zero() -> None:
    raw = [["squash", {"stride": 2}], ["squash", {"stride": 4}], ["squash", {"stride": 4}]]
    with pytest.raises(SpecError) as err:
        validate_spec(parse_spec(raw), KINDS, (3, 8, 8))
    assert err.value.problems == [
        "layer 2 (squash): output size (C, H, W) = (8, 0, 0) from input (8, 1, 1); a dimension shrinks "
        "to zero. Use a larger input size, 'SAME' padding or fewer strides."
    ]


def test_shape_function_value_error_is_reported() -> None:
    def refuse(shape: tuple[int, int, int], **_: object) -> tuple[int, int, int]:
        raise ValueError("option 'x' expected something")

    kinds = {"r": KindInfo("r", {}, refuse)}
    with pytest.raises(SpecError, match=r"layer 0 \(r\): option 'x' expected something"):
        validate_spec(parse_spec([["r"]]), kinds, (1, 4, 4))


def test_shapes_not_followed_past_kinds_without_shape_function() -> None:
    raw = [["keep", {"prop": 0.5}], ["squash", {"stride": 100}]]
    out = validate_spec(parse_spec(raw), KINDS, (3, 8, 8))
    assert [s.kind for s in out] == ["keep", "squash"]


def test_empty_spec() -> None:
    with pytest.raises(SpecError, match="the spec is empty"):
        validate_spec((), KINDS, (3, 8, 8))


def test_value_helpers() -> None:
    assert to_hw(3) == (3, 3) and to_hw([1, 2, 3, 1]) == (2, 3) and to_hw((4, 5)) == (4, 5)
    assert check_hw([1, 2, 2, 1]) is None and check_hw(2) is None and check_hw([2, 2]) is None
    assert "batch and channel entries must be 1" in (check_hw([2, 2, 2, 2]) or "")
    assert check_hw(0) and check_hw("2") and check_hw(True) and check_hw([1, 0, 1, 1])
    assert check_padding("same") is None and check_padding("VALID") is None and check_padding(1) is None
    assert check_padding("full") and check_padding(-1)
    assert check_int_list(3)([1, 2, 3]) is None and check_int_list(3)([1, 2]) and check_int_list(3)(3)
    assert check_int_list(2)(5) is None


def test_check_inferred_from_default() -> None:
    as_int = check_from_default(3)
    as_float = check_from_default(0.5)
    as_bool = check_from_default(False)
    assert as_int is not None and as_float is not None and as_bool is not None
    assert as_int(4) is None and as_int(True) == "an integer" and as_int(1.5) == "an integer"
    assert as_float(1) is None and as_float("x") == "a number"
    assert as_bool(True) is None and as_bool(1) == "true or false"
    assert check_from_default(None) is None
