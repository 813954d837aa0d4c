"""Predict on videos: frames streamed in decode order, batched, one row per decoded frame.

A background thread decodes and resizes the next batches while the model runs on the
current one (PyAV and Pillow release the GIL while they work), so on a CPU the decode costs
little of the model's time (``bench/perf/video_predict.py``). Memory: the batches in flight only.

Output columns: ``frame, time_s`` and then, per landmark, ``<name>_x, <name>_y`` (original
pixels) and ``<name>_likelihood`` (and ``<name>_uncertainty``, ``<name>_spread`` where the model has
them: :meth:`cnnkit.infer.predict.Predictor.columns`); for class models ``label, confidence, prob_<class>``.
Several videos: the same columns after a ``video`` column, the videos one after another.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cnnkit.data.video import VideoFrame, iter_frames, resize_frame, video_info
from cnnkit.engine.inference import INFERENCE_BATCH, Outputs

#: ``on_batch(frames, points (B, K, 2) original px, likelihood (B, K))`` e.g. a labelled-video writer.
BatchSink = Callable[[list[VideoFrame], np.ndarray, np.ndarray], None]


@dataclass
class FrameBatch:
    """Frames made ready for the network: ``inputs`` is the batch the predictor's strategy takes.

    Whole-frame models: ``image`` uint8 ``[B, C, H, W]`` resized as training resized its images,
    ``scale``/``offset`` ``[B, 2]``; crop models: the whole ``frame`` s (grey if the model is) and their
    ``geometry``, to cut views from. Both carry ``index`` (the frame numbers).
    """

    frames: list[VideoFrame]
    inputs: dict[str, Any]


def frame_batches(frames: Iterable[VideoFrame], *, size: tuple[int, int] | None, grayscale: bool,
                  letterbox: bool, batch_size: int) -> Iterator[FrameBatch]:
    """Group frames into batches; ``size`` None: whole frames for a crop model's views."""
    chunk: list[VideoFrame] = []
    for frame in itertools.chain(frames, [None]):
        if frame is not None:
            chunk.append(frame)
        if chunk and (frame is None or len(chunk) == batch_size):
            yield FrameBatch(chunk, _frames_batch(chunk, grayscale) if size is None
                             else _resized_batch(chunk, size, grayscale, letterbox))
            chunk = []


def _frames_batch(chunk: list[VideoFrame], grayscale: bool) -> dict[str, Any]:
    bases = [resize_frame(f.image, size=(f.image.shape[1], f.image.shape[0]), grayscale=grayscale) for f in chunk]
    return {"frame": [b[0] for b in bases], "geometry": [b[1] for b in bases], "index": [f.index for f in chunk]}


def _resized_batch(chunk: list[VideoFrame], size: tuple[int, int], grayscale: bool, letterbox: bool) -> dict[str, Any]:
    arrays, scales, offsets = [], [], []
    for frame in chunk:
        arr, geo = resize_frame(frame.image, size=size, grayscale=grayscale, letterbox=letterbox)
        arrays.append(arr)
        scales.append(geo.scale)
        offsets.append(geo.offset)
    return {"image": torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(),
            "scale": torch.tensor(scales, dtype=torch.float32), "offset": torch.tensor(offsets, dtype=torch.float32),
            "index": [f.index for f in chunk]}


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``depth`` items ahead; its errors re-raise here.

    When the consumer stops early the thread stops too, and closes ``items`` (a generator's
    ``finally`` then releases its file) in the thread that ran it.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # noqa: B036 - handed to the consumer and raised there
            put("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="cnnkit-frames", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


def predict_frames(predictor: Any, frames: Iterable[VideoFrame], *, batch_size: int = INFERENCE_BATCH,
                   on_batch: BatchSink | None = None, progress: Any = None) -> pd.DataFrame:
    """Predict every frame of ``frames`` (decoded video frames, or arrays already in memory).

    Args:
        predictor: a :class:`cnnkit.infer.predict.Predictor`.
        frames: ``VideoFrame`` s in order (e.g. :func:`cnnkit.data.video.iter_frames`).
        batch_size: frames per forward pass.
        on_batch: called with each batch's frames and predictions (landmark models only).
        progress: a tqdm-like object updated with the frames done, or None.

    Returns:
        One row per frame: ``frame, time_s`` then the prediction columns.
    """
    batches = prefetch(model_batches(predictor, frames, batch_size=batch_size))
    index: list[int] = []
    times: list[float] = []
    scored = []
    with torch.inference_mode():
        for batch in batches:
            part = predictor.score_batch(batch.inputs)
            index += [f.index for f in batch.frames]
            times += [f.time_s for f in batch.frames]
            scored.append(part)
            if on_batch is not None and part.likelihood is not None:
                on_batch(batch.frames, part.pred, part.likelihood)
            if progress is not None:
                progress.update(len(batch.frames))
    return frames_table(predictor, index, times, scored)


def model_batches(predictor: Any, frames: Iterable[VideoFrame], *, batch_size: int) -> Iterator[FrameBatch]:
    """:func:`frame_batches` made the way ``predictor``'s model reads its input (size, grey, letterbox, crop)."""
    meta = predictor.meta
    size = None if predictor.setup.crop is not None else tuple(meta["size"])
    return frame_batches(frames, size=size, grayscale=bool(meta.get("grayscale")),
                         letterbox=bool(meta.get("letterbox")), batch_size=batch_size)


def frames_table(predictor: Any, index: list[int], times: list[float], scored: list[Any]) -> pd.DataFrame:
    """Scored batches of one video -> its table: ``frame, time_s`` then the prediction columns."""
    outputs = Outputs.join(scored)
    head = {"frame": np.asarray(index, dtype=np.int64), "time_s": np.asarray(times, dtype=np.float64)}
    return pd.DataFrame({**head, **predictor.output_columns(outputs)})


def predict_video(predictor: Any, path: str | Path, *, batch_size: int = INFERENCE_BATCH, on_batch: BatchSink | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Every decoded frame of one video -> one row each (see :func:`predict_frames`)."""
    path = Path(path)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        stated = video_info(path, count=False).frames  # the container's count: instant, may be off
        bar = tqdm(total=stated or None, desc=path.name, unit="frame", leave=True)
    frames = iter_frames(path)  # a video that ends early logs one line and keeps its frames
    try:
        return predict_frames(predictor, frames, batch_size=batch_size, on_batch=on_batch, progress=bar)
    finally:
        if bar is not None:
            if frames.complete:  # a partial or failed video keeps its bar short of 100 %
                bar.total = bar.n  # the decoded count is the true one
            bar.close()


def predict_videos(predictor: Any, paths: Iterable[str | Path], *, batch_size: int = INFERENCE_BATCH,
                   progress: bool = True, sink: Callable[[Path], Any] | None = None) -> pd.DataFrame:
    """Several videos, one after another: ``video`` (the path as given), then :func:`predict_video`'s columns.

    ``sink(path)``: a context manager whose ``write_batch`` receives each video's batches as they are
    predicted (e.g. :class:`cnnkit.viz.video.LabeledVideoWriter`), or None for that video.
    """
    parts = []
    for path in paths:
        writer = None if sink is None else sink(Path(path))
        with contextlib.nullcontext() if writer is None else writer:
            df = predict_video(predictor, path, batch_size=batch_size, progress=progress,
                               on_batch=None if writer is None else writer.write_batch)
        df.insert(0, "video", str(path))
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
