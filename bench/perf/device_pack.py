"""Carry image sets to the GPU machine under its 64 MiB limit: PNG <-> lossless WebP, same pixels.

The device tool sends at most 64 MiB with the working tree; lips-via, faces68-csv and the
Lite0 weights together are ~81 MB as PNG and ~57 MB as lossless WebP. ``pack`` copies a
folder with every PNG re-encoded as lossless WebP, checking each one decodes to the PNG's exact
pixels; ``unpack`` (on the GPU machine) turns them back into PNGs in place, so the annotation
files' names resolve unchanged and training reads the very same pixels.

    python bench/perf/device_pack.py pack ../shared/data/lips-via .gpu/lips-via
    python bench/perf/device_pack.py unpack .gpu      # there, before training
"""

from __future__ import annotations

import argparse
import io
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def _to_webp(pair: tuple[Path, Path]) -> None:
    src, dst = pair
    with Image.open(src) as im:
        im.load()
        buf = io.BytesIO()
        im.save(buf, "WEBP", lossless=True, exact=True, quality=100, method=4)  # exact: RGB under alpha 0 kept
        with Image.open(io.BytesIO(buf.getvalue())) as back:
            if not np.array_equal(np.asarray(back.convert(im.mode)), np.asarray(im)):
                raise SystemExit(f"{src}: lossless WebP does not give back the same pixels; carry it as PNG")
    dst.with_suffix(".webp").write_bytes(buf.getvalue())


def _to_png(path: Path) -> None:
    with Image.open(path) as im:
        im.save(path.with_suffix(".png"), "PNG")
    path.unlink()


def pack(src: Path, dst: Path) -> None:
    jobs = []
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix.lower() == ".png":
            target.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((path, target))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_to_webp, jobs, chunksize=16))


def unpack(folder: Path) -> None:
    with ProcessPoolExecutor() as pool:
        list(pool.map(_to_png, sorted(folder.rglob("*.webp")), chunksize=16))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("pack")
    a.add_argument("src", type=Path)
    a.add_argument("dst", type=Path)
    b = sub.add_parser("unpack")
    b.add_argument("folder", type=Path)
    args = p.parse_args(argv)
    pack(args.src, args.dst) if args.verb == "pack" else unpack(args.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
