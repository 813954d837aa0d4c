"""Heatmap decoders compared on a trained heatmap model: error in original pixels per decoder, flip on/off.

    .venv/bin/python bench/accuracy/decoding.py runs/accuracy/lips_library_defaults/last.safetensors
    .venv/bin/python bench/accuracy/decoding.py CHECKPOINT --write   # also rewrites the `decoding` section of docs/ACCURACY.md

The network runs once per image of the `extra` split of lips-via (and once on its mirror image);
every decoder then reads the same logit maps, so the comparison holds everything else fixed.
The decoder is chosen on `extra` (lips-via has no `val` split; `extra` is the one the other
accuracy comparisons choose on), and only the chosen one is then scored on `test`. A decoder
replaces the default only if its mean error beats the soft-argmax's by more than twice the
standard error of the per-image paired difference (the noise of a 108-image split).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import ROOT, flags  # noqa: E402
from bench.harness.datasets import EXPERIMENTS, lips_table, split_part  # noqa: E402
from bench.harness.heatmaps import Decoder, errors_px, maps_and_truth  # noqa: E402
from bench.harness.machine import machine_line  # noqa: E402
from bench.harness.results import ACCURACY, markdown_table, write_section  # noqa: E402
from cnnkit import geometry  # noqa: E402
from cnnkit.infer.predict import Predictor  # noqa: E402
from cnnkit.model.heads import DECODERS, DEFAULT_DECODE, dark_decode, local_soft_argmax  # noqa: E402

EXPERIMENT = EXPERIMENTS / "lips_library_defaults.yaml"
#: (row label, registered name or None, decoder). Parameter variants are measured, not registered.
VARIANTS: list[tuple[str, str | None, Decoder]] = [
    ("soft-argmax (global; trains with it)", "soft-argmax", DECODERS["soft-argmax"]),
    ("local, radius 1", None, partial(local_soft_argmax, radius=1)),
    ("local, radius 2", None, partial(local_soft_argmax, radius=2)),
    ("local, radius 3", "local", DECODERS["local"]),
    ("local, radius 5", None, partial(local_soft_argmax, radius=5)),
    ("dark, no smoothing", None, partial(dark_decode, sigma=0.0)),
    ("dark, sigma 0.5 cell", None, partial(dark_decode, sigma=0.5)),
    ("dark, sigma 1 cell", "dark", DECODERS["dark"]),
    ("dark, sigma 2 cells", None, partial(dark_decode, sigma=2.0)),
]


def map_shape(maps: torch.Tensor) -> str:
    """How peaked the maps are: where the most probable cell lies against the mean, and its share."""
    b, k, h, w = maps.shape
    prob = torch.softmax(maps.reshape(b, k, h * w), dim=-1)
    peak = prob.argmax(dim=-1)
    mean = geometry.flat_to_points(DECODERS["soft-argmax"](maps)) * torch.tensor([w, h])
    cell = torch.stack([peak % w + 0.5, peak // w + 0.5], dim=-1)
    dist = (cell - mean).norm(dim=-1)
    top = prob.max(dim=-1).values
    spread = 1 - torch.sort(prob, dim=-1, descending=True).values[..., :9].sum(-1)
    return (f"most probable cell to the soft-argmax: median {dist.median():.1f} cells, 90th percentile "
            f"{dist.quantile(0.9):.1f}; probability of that cell: median {top.median():.3f}; "
            f"probability outside the 9 most probable cells: median {spread.median():.2f}")


def paired(err: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """Mean per-image difference of mean errors (err - base) and its standard error, in px."""
    d = np.nanmean(err, axis=1) - np.nanmean(base, axis=1)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def table_rows(data, perm, size) -> tuple[list[list[str]], dict[tuple[str, bool], np.ndarray]]:
    rows, errs = [], {}
    for flip in (False, True):
        base = errors_px(data, DECODERS["soft-argmax"], size, perm, flip)
        for label, _name, decoder in VARIANTS:
            e = errs[(label, flip)] = errors_px(data, decoder, size, perm, flip)
            diff, se = paired(e, base)
            rows.append([label, "on" if flip else "off", f"{np.nanmean(e):.2f}", f"{np.nanmedian(e):.2f}",
                         f"{np.nanpercentile(e, 90):.2f}", f"{diff:+.3f} ± {2 * se:.3f}"])
    return rows, errs


def choose(errs: dict[tuple[str, bool], np.ndarray]) -> str:
    """The registered decoder with the lowest mean on the choosing split, if it beats soft-argmax beyond 2 SE."""
    best, best_gain = DEFAULT_DECODE, 0.0
    for label, name, _ in VARIANTS:
        if name is None or name == DEFAULT_DECODE:
            continue
        gains = [paired(errs[(label, f)], errs[(VARIANTS[0][0], f)]) for f in (False, True)]
        if all(d + 2 * se < 0 for d, se in gains) and -gains[0][0] > best_gain:
            best, best_gain = name, -gains[0][0]
    return best


def main(argv: list[str] | None = None) -> int:
    parser = flags.parser(__doc__, data_root=True, write={"help": "rewrite the decoding section of docs/ACCURACY.md"})
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--experiment", type=Path, default=EXPERIMENT,
                        help="experiment file whose data options read lips-via (default lips_library_defaults.yaml)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    table = lips_table(args.experiment, args.data_root)
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu", tta_flip=True)
    reader = predictor.strategy.reader
    assert getattr(reader, "heatmap", False), "a heatmap landmark checkpoint is needed"
    perm, size = reader.perm, tuple(predictor.setup.size)
    extra = maps_and_truth(predictor, split_part(table, "extra"), mirror=True)
    rows, errs = table_rows(extra, perm, size)
    chosen = choose(errs)
    shape = map_shape(extra["maps"])
    headers = ["decoder", "flip TTA", "mean px", "median px", "90th pct px", "mean - soft-argmax (± 2 SE)"]
    text = markdown_table(headers, rows)
    test = maps_and_truth(predictor, split_part(table, "test"), mirror=True)
    label = next(lbl for lbl, name, _ in VARIANTS if name == chosen)
    test_rows = [[label, "on" if f else "off", f"{np.nanmean(e):.2f}", f"{np.nanmedian(e):.2f}",
                  f"{np.nanpercentile(e, 90):.2f}"]
                 for f in (False, True) for e in [errors_px(test, DECODERS[chosen], size, perm, f)]]
    test_text = markdown_table(headers[:5], test_rows)
    n_extra, n_test = len(extra["maps"]), len(test["maps"])
    print(f"extra ({n_extra} images):\n{text}\n\n{shape}\n\nchosen: {chosen}\n\ntest ({n_test} images):\n{test_text}")
    if flags.should_write(args):
        epoch = predictor.meta.get("epoch", "?")
        experiment = args.experiment.resolve().relative_to(ROOT)
        body = (f"## Decoding heatmaps\n\nCheckpoint `{args.checkpoint}` (epoch {epoch}; {size[0]}x{size[1]}, heatmap "
                f"head trained by integral regression), "
                f"data and split of `{experiment}`. Chosen on `extra` ({n_extra} images, "
                f"errors over every annotated point, original pixels); the last column is the paired per-image "
                f"difference from the soft-argmax:\n\n{text}\n\nThe maps on `extra`: {shape}.\n\nChosen decoder: **{chosen}** (a decoder replaces "
                f"the soft-argmax only if it is better by more than 2 SE with and without flip). "
                f"Test split ({n_test} images), chosen decoder only:\n\n{test_text}\n\n"
                f"Command: `{flags.command_line(__file__, argv, '.venv/bin/python')}`. "
                f"{machine_line()} Reading: docs/decoding.md.")
        print("updated", write_section("decoding", body, doc=ACCURACY))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
