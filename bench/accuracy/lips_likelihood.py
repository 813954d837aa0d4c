"""Does the likelihood mean something? On lips-via: how well it ranks the points with error > 10 px.

    .venv/bin/python bench/accuracy/lips_likelihood.py runs/accuracy/lips_default_video/last.safetensors

For every point of the `extra` split (chooses the disc radius of the heatmap likelihood) and of
the `test` split (reports it), the script predicts the point and its likelihood as ``predict``
does, measures the error in original pixels, and reports the ROC AUC of ``1 - likelihood`` as a
detector of points with an error above 10 px (1.0: every such point ranks below every good one;
0.5: chance), plus mean errors per likelihood band. docs/ACCURACY.md quotes the output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.datasets import EXPERIMENTS, lips_table, split_part  # noqa: E402
from bench.harness.heatmaps import errors_px, maps_and_truth  # noqa: E402
from cnnkit.infer.predict import Predictor  # noqa: E402
from cnnkit.model.heads import LIKELIHOOD_RADIUS, heatmap_likelihood, soft_argmax  # noqa: E402

EXPERIMENT = EXPERIMENTS / "lips_heatmap_default.yaml"
RADII = (0.75, 1.0, 1.5, 2.0, 3.0)
BAD_PX = 10.0


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (Mann-Whitney, ties counted half)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_cut(lik: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    """The likelihood threshold that best separates bad from good points (Youden's J) and its J."""
    cuts = np.unique(np.round(lik, 3))
    j = [((lik < c) & bad).sum() / max(bad.sum(), 1) - ((lik < c) & ~bad).sum() / max((~bad).sum(), 1) for c in cuts]
    i = int(np.argmax(j))
    return float(cuts[i]), float(j[i])


def points_and_maps(predictor: Predictor, table, batch_size: int = 32):  # noqa: ANN001, ANN201
    """(errors (N, K) px, maps (N, K, h, w)) for the rows of ``table``."""
    data = maps_and_truth(predictor, table, batch_size)
    return errors_px(data, soft_argmax, tuple(predictor.setup.size)), data["maps"]


def alternatives(maps: torch.Tensor) -> dict[str, np.ndarray]:
    """Other confidence measures of the same maps, compared on `extra` only: peak and spread."""
    b, k, h, w = maps.shape
    prob = torch.softmax(maps.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    xs, ys = torch.arange(w) + 0.5, torch.arange(h) + 0.5
    mx = (prob.sum(2) * xs).sum(-1)[..., None, None]
    my = (prob.sum(3) * ys).sum(-1)[..., None, None]
    spread = (prob * ((xs.view(1, 1, 1, w) - mx) ** 2 + (ys.view(1, 1, h, 1) - my) ** 2)).sum((2, 3)).sqrt()
    return {"peak probability": prob.amax((2, 3)).numpy(), "exp(-spread / 2 cells)": torch.exp(-spread / 2).numpy()}


def report(name: str, errors: np.ndarray, lik: np.ndarray) -> str:
    ok = np.isfinite(errors)
    e, p = errors[ok], lik[ok]
    bad = e > BAD_PX
    bands = [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01)]
    cells = []
    for lo, hi in bands:
        sel = (p >= lo) & (p < hi)
        cells.append(f"{e[sel].mean():.1f} px ({sel.sum()})" if sel.any() else "-")
    return (f"| {name} | {len(e)} | {bad.sum()} ({bad.mean():.1%}) | {roc_auc(-p, bad):.3f} | "
            + " | ".join(cells) + " |")


def per_landmark_row(split: str, names: list[str], errors: np.ndarray, lik: np.ndarray) -> str:
    """ROC AUC within each landmark (and its count of points > 10 px)."""
    cells = []
    for k in range(len(names)):
        ok = np.isfinite(errors[:, k])
        bad = errors[ok, k] > BAD_PX
        auc = roc_auc(-lik[ok, k], bad) if 0 < bad.sum() < len(bad) else float("nan")
        cells.append(f"{auc:.2f} ({bad.sum()}; median {np.median(lik[ok, k]):.2f})")
    return f"| {split} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = flags.parser(__doc__, data_root=True)
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args(argv)
    table = lips_table(EXPERIMENT, args.data_root)
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    head = "| split, radius (cells) | points | error > 10 px | ROC AUC | mean error at likelihood <0.25 | 0.25-0.5 | 0.5-0.75 | >=0.75 |"
    lines = [head, "|" + "---|" * 8]
    per_landmark: list[str] = []
    for split in ("extra", "test"):
        errors, maps = points_and_maps(predictor, split_part(table, split))
        for r in RADII if split == "extra" else (LIKELIHOOD_RADIUS,):
            lik = heatmap_likelihood(maps, r).numpy()
            lines.append(report(f"{split}, {r}", errors, lik))
            if r == LIKELIHOOD_RADIUS:
                per_landmark.append(per_landmark_row(split, predictor.landmarks, errors, lik))
            ok = np.isfinite(errors)
            cut, j = best_cut(lik[ok], errors[ok] > BAD_PX)
            print(f"{split}, radius {r}: threshold separating > {BAD_PX:g} px best: {cut:.3f} (Youden J {j:.2f}); "
                  f"likelihood median {np.median(lik[ok]):.3f}", flush=True)
        if split == "extra":
            lines += [report(f"extra, {n}", errors, v) for n, v in alternatives(maps).items()]
        print(f"{split}: mean error {np.nanmean(errors):.2f} px over {np.isfinite(errors).sum()} points", flush=True)
    print("\n".join(lines))
    names = predictor.landmarks
    print("\n| split | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1))
    print("\n".join(per_landmark))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
