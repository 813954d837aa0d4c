"""SLEAP label files (``.slp``, ``.pkg.slp``) -> AnnotationTable, through ``sleap-io``.

One row per labelled frame: the frame's user-labelled instance (SLEAP's predicted instances are
not labels and are left out; a frame with only predictions is skipped). cnnkit follows ONE
subject per frame: a frame with two labelled instances is refused. Landmarks are the skeleton's
nodes in order; an invisible or unlabelled node is NaN; SLEAP's skeleton symmetries become the
table's flip pairs.

Where the images come from:

- image-backed files (SLEAP opened a folder or a list of images): the rows name those image
  files, resolved like any table's paths (docs/data.md, "Image paths");
- frames that live inside the ``.pkg.slp`` (embedded) or inside a video: sleap-io decodes each
  labelled frame (SLEAP's own readers, so frame ``i`` is the frame the labeller saw) and it is
  written ONCE as a PNG into ``<file>_frames/`` beside the ``.slp`` (``labels.pkg.slp`` ->
  ``labels.pkg_frames/<video stem>_frame<NNNNNN>.png``, the names ``cnnkit extract-frames`` uses).
  A later read reuses those files; a file there of another size is refused, never replaced.
  Delete the folder to extract again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from cnnkit.atomic import atomic_open
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError, DataError

log = logging.getLogger("cnnkit")

EXTRA = "pip install 'cnnkit[formats]'"


def read_sleap(path: Path) -> AnnotationTable:
    """The table of a SLEAP labels file (paths as written, or the extracted frames' absolute paths)."""
    try:
        import sleap_io
    except ImportError:
        raise ConfigError(f"{path}: reading SLEAP files needs sleap-io: {EXTRA}") from None
    try:
        labels = sleap_io.load_slp(str(path), open_videos=True)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable SLEAP labels file ({exc})") from None
    names = _landmark_names(labels, path)
    frames_dir = path.parent / f"{path.name.removesuffix('.slp')}_frames"
    stems = _video_stems(labels.videos)
    images, rows, extracted = [], [], 0
    for lf in labels.labeled_frames:
        user = lf.user_instances
        if not user:
            continue
        if len(user) > 1:
            raise DataError(f"{path}: frame {lf.frame_idx} of {_video_name(lf.video)} has {len(user)} labelled "
                            f"instances; cnnkit follows one subject per frame (keep one instance per frame)")
        image, new = _image_of(lf, labels.videos.index(lf.video), stems, frames_dir, path)
        images.append(image)
        extracted += new
        rows.append(np.asarray(user[0].numpy(), dtype=np.float64)[:, :2])  # (K, 2), NaN where not visible
    if not rows:
        raise DataError(f"{path}: no frame has a user-labelled instance (predictions alone are not labels)")
    if extracted:
        log.info("%s: %d labelled frames written once as PNG into %s (later reads reuse them)", path, extracted,
                 frames_dir)
    points = np.stack(rows)
    columns: dict[str, Any] = {"image": images}
    for k, name in enumerate(names):
        columns[f"{name}_x"], columns[f"{name}_y"] = points[:, k, 0], points[:, k, 1]
    pairs = tuple((str(a), str(b)) for a, b in labels.skeletons[0].symmetry_names)
    return AnnotationTable(pd.DataFrame(columns), tuple(names), (), str(path), flip_pairs=pairs)


def _landmark_names(labels: Any, path: Path) -> list[str]:
    if len(labels.skeletons) != 1:
        raise DataError(f"{path}: {len(labels.skeletons)} skeletons; cnnkit reads files with exactly one")
    names = [str(n) for n in labels.skeletons[0].node_names]
    if not names:
        raise DataError(f"{path}: the skeleton has no nodes")
    return names


def _image_of(lf: Any, video_index: int, stems: list[str], frames_dir: Path, path: Path) -> tuple[str, int]:
    """(the image path of a labelled frame, 1 if its PNG was written now else 0)."""
    video = lf.video
    if type(video.backend).__name__ == "ImageVideo" and isinstance(video.filename, list):
        return str(video.filename[lf.frame_idx]), 0
    target = frames_dir / f"{stems[video_index]}_frame{lf.frame_idx:06d}.png"
    if not video.exists() or video.backend is None:
        raise DataError(f"{path}: the video {_video_name(video)} of frame {lf.frame_idx} cannot be opened; put it "
                        f"where the file says, or export the labels with their images (SLEAP: .pkg.slp)")
    if target.exists():
        _check_same_size(target, video.shape, path)
        return str(target.resolve()), 0
    pixels = np.asarray(lf.image)
    frames_dir.mkdir(exist_ok=True)
    with atomic_open(target) as fh:
        Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels).save(fh, format="PNG")
    return str(target.resolve()), 1


def _check_same_size(target: Path, shape: Any, path: Path) -> None:
    """A frame extracted earlier is reused only when it has the video's size (a stale folder is refused)."""
    with Image.open(target) as img:
        size = img.size
    if shape is not None and size != (shape[2], shape[1]):
        raise DataError(f"{path}: {target} exists with size {size[0]}x{size[1]}, but the video's frames are "
                        f"{shape[2]}x{shape[1]}; it is not this file's frame. Move that folder away to extract again")


def _video_stems(videos: list[Any]) -> list[str]:
    """A file stem per video (the original video's for embedded frames), made unique with ``-<n>``."""
    stems: list[str] = []
    for i, video in enumerate(videos):
        source = getattr(video, "source_video", None) or video
        name = source.filename if isinstance(source.filename, str) else ""
        stem = Path(name).stem if name and name != "." and not name.endswith(".slp") else f"video{i}"
        stems.append(stem if stem not in stems else f"{stem}-{i}")
    return stems


def _video_name(video: Any) -> str:
    return str(video.filename if isinstance(video.filename, str) else video.filename[0])
