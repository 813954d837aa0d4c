"""``predict --format nwb``: one video's landmark predictions as an NWB file with ndx-pose (0.4+).

What the file holds (the layout ``movement.io.load_poses.from_nwb_file`` reads by default):

- ``acquisition/video``: an ``ImageSeries`` pointing at the video file (``format="external"``, the
  path relative to the NWB file, its width x height, the frames' times);
- ``processing/behavior/Skeletons``: one ``Skeleton`` named ``subject`` whose nodes are the
  landmark names (cnnkit follows one subject per frame and has no edges);
- ``processing/behavior/PoseEstimation``: one ``PoseEstimationSeries`` per landmark: data (T, 2)
  in the video's pixels (NaN where no point was predicted), confidence = cnnkit's likelihood,
  timestamps = the decoded frames' times (``time_s``; the other series link to the first one's),
  with ``source_software="cnnkit"`` and its version, ``scorer``, the video linked as
  ``source_video`` and a description naming the model file and its settings.

``session_start_time`` is the video file's modification time (NWB requires one; set the true
start in your own pipeline). Needs ``pip install 'cnnkit[formats]'``.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_path
from cnnkit.data.video import video_info
from cnnkit.errors import ConfigError

REFERENCE_FRAME = ("(0, 0) is the top-left corner of the video frame; x to the right, y down, in pixels of "
                   "the original frame (continuous: the centre of the top-left pixel is (0.5, 0.5))")
CONFIDENCE = ("cnnkit likelihood in [0, 1]: for a heatmap head the share of the landmark's heatmap mass near "
              "the point; for direct heads the agreement under a mirrored pass (docs/video.md, 'Likelihood')")


def write_nwb(df: pd.DataFrame, path: Path, meta: Any, video: Path) -> Path:
    """Write one video's predictions (``frame, time_s, <name>_x/_y/_likelihood``) to ``path``.

    ``meta``: a :class:`cnnkit.infer.formats.PredictionMeta`.
    """
    try:
        import ndx_pose
        import pynwb
    except ImportError as exc:
        raise ConfigError(f"--format nwb needs pynwb and ndx-pose: pip install 'cnnkit[formats]' ({exc})") from None
    if "source_video" not in ndx_pose.PoseEstimation.__nwbfields__:
        raise ConfigError("--format nwb needs ndx-pose 0.4 or newer: pip install -U 'ndx-pose>=0.4'")
    times = df["time_s"].to_numpy(dtype=np.float64)
    nwbfile = pynwb.NWBFile(session_description=f"cnnkit landmark predictions for {video.name}",
                            identifier=str(uuid.uuid4()), session_start_time=_start_time(video))
    source = _video_series(pynwb, video, path, times)
    nwbfile.add_acquisition(source)
    skeleton = ndx_pose.Skeleton(name="subject", nodes=list(meta.landmarks))
    series = _pose_series(ndx_pose, df, meta.landmarks, times)
    pose = ndx_pose.PoseEstimation(
        name="PoseEstimation", pose_estimation_series=series, description=describe(meta, video),
        scorer=meta.scorer, source_software="cnnkit", source_software_version=_version(),
        skeleton=skeleton, source_video=source)
    behavior = nwbfile.create_processing_module(name="behavior", description="pose estimated by cnnkit")
    behavior.add(ndx_pose.Skeletons(skeletons=[skeleton]))
    behavior.add(pose)
    with atomic_path(path) as tmp, pynwb.NWBHDF5IO(str(tmp), mode="w") as io:
        io.write(nwbfile)
    return path


def _pose_series(ndx_pose: Any, df: pd.DataFrame, names: Any, times: np.ndarray) -> list[Any]:
    series: list[Any] = []
    for name in names:
        points = df[[f"{name}_x", f"{name}_y"]].to_numpy(dtype=np.float64)
        series.append(ndx_pose.PoseEstimationSeries(
            name=name, description=f"landmark {name!r} predicted by cnnkit", data=points, unit="pixels",
            reference_frame=REFERENCE_FRAME, confidence=df[f"{name}_likelihood"].to_numpy(dtype=np.float64),
            confidence_definition=CONFIDENCE, timestamps=series[0] if series else times))
    return series


def _video_series(pynwb: Any, video: Path, nwb_path: Path, times: np.ndarray) -> Any:
    info = video_info(video, count=False)
    relative = os.path.relpath(video.resolve(), nwb_path.resolve().parent)
    return pynwb.image.ImageSeries(name="video", description=f"the video the poses were predicted on: {video.name}",
                                   external_file=[relative], format="external", starting_frame=[0],
                                   dimension=[info.width, info.height], timestamps=times)


def describe(meta: Any, video: Path) -> str:
    """One paragraph: the software, the model file and the settings it predicted with."""
    settings = "; ".join(f"{k}: {_short(v)}" for k, v in meta.settings.items())
    return (f"Landmarks predicted by cnnkit {_version()} on {video.name} with the model {meta.model} "
            f"({settings or 'no settings recorded'}). Landmarks: {', '.join(meta.landmarks)}. "
            f"One subject per frame.")


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


def _start_time(video: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(video.stat().st_mtime, tz=dt.timezone.utc)


def _version() -> str:
    try:
        return metadata.version("cnnkit")
    except metadata.PackageNotFoundError:
        return "unknown"
