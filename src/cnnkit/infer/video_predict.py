"""Predict on videos: frames streamed in decode order, batched, one row per decoded frame.

A background thread decodes and resizes the next batches while the model runs on the
current one (PyAV and Pillow release the GIL while they work), so on a CPU the decode costs
little of the model's time (``bench/video_predict.py``). Memory: the batches in flight only.

Output columns: ``frame, time_s`` and then, per landmark, ``<name>_x, <name>_y`` (original
pixels) and ``<name>_likelihood``; for class models ``label, confidence, prob_<class>``.
Several videos: the same columns after a ``video`` column, the videos one after another.
"""

from __future__ import annotations

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

from cnnkit.data.decode import Geometry
from cnnkit.data.video import VideoFrame, iter_frames, resize_frame, video_info
from cnnkit.engine.device import autocast
from cnnkit.infer.landmarks import network_input, score_batch

#: ``on_batch(frames, points (B, K, 2) original px, likelihood (B, K))`` e.g. a labelled-video writer.
BatchSink = Callable[[list[VideoFrame], np.ndarray, np.ndarray], None]


@dataclass
class FrameBatch:
    """Frames made ready for the network. ``images``: uint8 ``[B, C, H, W]``; scale, offset: ``[B, 2]``."""

    frames: list[VideoFrame]
    images: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    bases: list[tuple[np.ndarray, Geometry]] | None = None  # crop models: whole frames to cut views from


def crop_frame_batches(frames: Iterable[VideoFrame], *, grayscale: bool, batch_size: int) -> Iterator[FrameBatch]:
    """Batches of whole frames (grey if the model is) for two-pass inference of crop models."""
    chunk: list[VideoFrame] = []
    for frame in itertools.chain(frames, [None]):
        if frame is not None:
            chunk.append(frame)
        if chunk and (frame is None or len(chunk) == batch_size):
            bases = [resize_frame(f.image, size=(f.image.shape[1], f.image.shape[0]), grayscale=grayscale)
                     for f in chunk]
            empty = torch.zeros(0)
            yield FrameBatch(chunk, empty, empty, empty, bases)
            chunk = []


def frame_batches(frames: Iterable[VideoFrame], *, size: tuple[int, int], grayscale: bool, letterbox: bool,
                  batch_size: int) -> Iterator[FrameBatch]:
    """Group frames into batches resized as training resized its images."""
    chunk: list[VideoFrame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == batch_size:
            yield _collate(chunk, size, grayscale, letterbox)
            chunk = []
    if chunk:
        yield _collate(chunk, size, grayscale, letterbox)


def _collate(chunk: list[VideoFrame], size: tuple[int, int], grayscale: bool, letterbox: bool) -> FrameBatch:
    arrays, scales, offsets = [], [], []
    for frame in chunk:
        arr, geo = resize_frame(frame.image, size=size, grayscale=grayscale, letterbox=letterbox)
        arrays.append(arr)
        scales.append(geo.scale)
        offsets.append(geo.offset)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return FrameBatch(chunk, images, torch.tensor(scales, dtype=torch.float32),
                      torch.tensor(offsets, dtype=torch.float32))


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


def predict_frames(predictor: Any, frames: Iterable[VideoFrame], *, batch_size: int = 32,
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
    meta = predictor.meta
    if predictor.setup.crop is not None:
        batches = prefetch(crop_frame_batches(frames, grayscale=bool(meta.get("grayscale")), batch_size=batch_size))
    else:
        batches = prefetch(frame_batches(frames, size=tuple(meta["size"]), grayscale=bool(meta.get("grayscale")),
                                         letterbox=bool(meta.get("letterbox")), batch_size=batch_size))
    index, times, outs, liks = [], [], [], []
    with torch.inference_mode():
        for batch in batches:
            out, lik = _predict_batch(predictor, batch)
            index += [f.index for f in batch.frames]
            times += [f.time_s for f in batch.frames]
            outs.append(out)
            liks.append(lik)
            if on_batch is not None and lik is not None:
                on_batch(batch.frames, out, lik)
            if progress is not None:
                progress.update(len(batch.frames))
    head = {"frame": np.asarray(index, dtype=np.int64), "time_s": np.asarray(times, dtype=np.float64)}
    return pd.DataFrame({**head, **_columns(predictor, outs, liks)})


def _predict_batch(predictor: Any, batch: FrameBatch) -> tuple[np.ndarray, np.ndarray | None]:
    if batch.bases is not None:
        return predictor.score_batch({"frame": [b[0] for b in batch.bases], "geometry": [b[1] for b in batch.bases]})
    if predictor.scorer is not None:
        points, lik = score_batch(predictor.scorer, predictor.setup, batch.images, batch.scale, batch.offset)
        return points.numpy(), lik.numpy()
    setup = predictor.setup
    images = network_input(setup, batch.images)
    with autocast(setup.device, setup.precision):
        logits = predictor.model(images)
    return torch.softmax(logits.float(), dim=-1).cpu().numpy(), None


def _columns(predictor: Any, outs: list[np.ndarray], liks: list[np.ndarray | None]) -> dict[str, Any]:
    if predictor.scorer is not None:
        k = len(predictor.landmarks)
        points = np.concatenate(outs) if outs else np.zeros((0, k, 2))
        lik = np.concatenate(liks) if liks else np.zeros((0, k))  # type: ignore[arg-type]
        return predictor.landmark_columns(points, lik)
    probs = np.concatenate(outs) if outs else np.zeros((0, len(predictor.classes)))
    columns: dict[str, Any] = {"label": [predictor.classes[i] for i in probs.argmax(-1)],
                               "confidence": probs.max(-1) if len(probs) else probs[:, 0]}
    for c, name in enumerate(predictor.classes):
        columns[f"prob_{name}"] = probs[:, c]
    return columns


def predict_video(predictor: Any, path: str | Path, *, batch_size: int = 32, on_batch: BatchSink | None = None,
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


def predict_videos(predictor: Any, paths: Iterable[str | Path], *, batch_size: int = 32,
                   progress: bool = True) -> pd.DataFrame:
    """Several videos, one after another: ``video`` (the path as given), then :func:`predict_video`'s columns."""
    parts = []
    for path in paths:
        df = predict_video(predictor, path, batch_size=batch_size, progress=progress)
        df.insert(0, "video", str(path))
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
