"""``cnnkit predict``: images, videos or an archive of videos; output formats; review projects; labelled videos."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnkit.data.guard import refuse_to_overwrite_labels
    from cnnkit.infer.archive import archive_videos
    from cnnkit.infer.inputs import video_paths
    from cnnkit.infer.predict import predict, predictions_table

    archive = archive_videos(args.inputs, args.out)
    if archive is not None:
        return _predict_archive(args, archive)
    refuse_to_overwrite_labels(args.out, what="--out")
    if args.via:
        refuse_to_overwrite_labels(args.via, what="--via")

    source: Any = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    videos = video_paths(source)
    if (args.labeled_video and not videos) or (args.via and videos):
        raise CnnkitError("--labeled-video takes videos and --via takes images; predict them in separate calls")
    from cnnkit.infer.formats import PredictionMeta, check_outputs, write_predictions

    meta = PredictionMeta.from_checkpoint(args.model, videos, smooth=args.smooth, views=args.views,
                                          tta_flip=args.tta_flip)
    formats = check_outputs(args.out, args.format, meta)  # before any work: formats apply, no user file in the way
    if videos:
        preds = _predict_videos(args, videos)
    else:
        preds = predict(args.model, source, batch_size=args.batch_size, device=args.device, images=args.images,
                        tta_flip=args.tta_flip, views=args.views)
    from cnnkit.data.sources.writers import write_via

    written = write_predictions(preds, args.out, formats, meta)
    for path in written:
        print(f"{len(preds)} predictions -> {path}")
    if videos and args.labeled_video and args.smooth:
        from cnnkit.infer.formats import smoothed_path

        _draw_smoothed(args, videos, smoothed_path(args.out))
    if args.via:
        landmarks = [c[:-2] for c in preds.columns if c.endswith("_x")]
        if not landmarks:
            raise CnnkitError("--via needs a landmark model; this model predicts classes")
        write_via(predictions_table(preds, landmarks), args.via)
        print(f"VIA project for review -> {args.via}")
    return 0


def _predict_archive(args: argparse.Namespace, videos: list[Any]) -> int:
    """A folder or glob of videos: one output set per video under --out, resumable (docs/video.md#archive).

    Exit status (rank 0; the other ranks exit 0): 1 when a video failed, 3 when videos only ended early.
    """
    from cnnkit.infer.archive import predict_archive

    if args.via or args.labeled_video:
        raise CnnkitError("--via and --labeled-video do not apply to an archive of videos (a folder or glob); "
                          "predict single videos for labelled videos")
    summary = predict_archive(args.model, videos, args.out, formats=args.format, smooth=args.smooth,
                              batch_size=args.batch_size,
                              device=args.device, tta_flip=args.tta_flip, views=args.views, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print("\n".join(summary.lines()))
    print(f"summary -> {Path(args.out) / 'archive_summary.csv'}")
    return summary.exit_status(accept_partial=getattr(args, "accept_partial", False))


def _predict_videos(args: argparse.Namespace, videos: list[Path]) -> Any:
    """Each video in turn; with --labeled-video its frames are drawn as they are predicted (one decode)."""
    from cnnkit.infer.predict import Predictor
    from cnnkit.infer.video_predict import predict_videos

    predictor = Predictor.from_checkpoint(args.model, device=args.device, tta_flip=args.tta_flip, views=args.views)
    if args.labeled_video and not predictor.landmarks:
        raise CnnkitError("--labeled-video needs a landmark model; this model predicts classes")
    # drawn as predicted (one decode); with --smooth once the whole trajectory is smoothed (_draw_smoothed)
    drawn_now = args.labeled_video and not args.smooth
    sink = _labeled_video_sink(args, predictor.landmarks, several=len(videos) > 1) if drawn_now else None
    preds = predict_videos(predictor, videos, batch_size=args.batch_size, progress=not args.quiet, sink=sink)
    return preds if len(videos) > 1 else preds.drop(columns="video")


def _labeled_path(args: argparse.Namespace, video: Path, *, several: bool) -> Path:
    """--labeled-video's file for ``video``: the path given, or ``<folder>/<stem>_labeled.mp4`` for several."""
    out = Path(args.labeled_video)
    return out / f"{video.stem}_labeled.mp4" if several else out


def _draw_smoothed(args: argparse.Namespace, videos: list[Path], smoothed_csv: Path) -> None:
    """--labeled-video with --smooth: each video decoded again and drawn with its smoothed points (smoothing
    needs the whole trajectory, so they cannot be drawn as the frames are predicted)."""
    import pandas as pd

    from cnnkit.data.video import iter_frames, video_info
    from cnnkit.viz.video import write_labeled_video

    table = pd.read_csv(smoothed_csv)
    for video in videos:
        rows = table[table["video"] == str(video)] if "video" in table.columns else table
        out = _labeled_path(args, video, several=len(videos) > 1)
        write_labeled_video(iter_frames(video), rows, out, fps=video_info(video).fps,
                            threshold=args.likelihood_threshold, below="hide" if args.hide_unsure else "fade")
        print(f"labelled video (smoothed points) -> {out}")


def _labeled_video_sink(args: argparse.Namespace, names: list[str], *, several: bool) -> Any:
    """``video path -> LabeledVideoWriter`` for --labeled-video (a folder of ``<stem>_labeled.mp4`` for several)."""
    from cnnkit.data.video import video_info
    from cnnkit.viz.video import LabeledVideoWriter

    def sink(video: Path) -> LabeledVideoWriter:
        out = _labeled_path(args, video, several=several)
        print(f"labelled video -> {out}")
        return LabeledVideoWriter(out, fps=video_info(video).fps, names=names, threshold=args.likelihood_threshold,
                                  below="hide" if args.hide_unsure else "fade")

    return sink
