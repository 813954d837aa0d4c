"""Shared fixtures: paths to the real data in ../shared and tiny synthetic files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
VIA_EXAMPLES = SHARED / "via-examples"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (CI has ../shared beside the clone)")
    return path


@pytest.fixture
def lips_dir() -> Path:
    return _need(DATA / "lips-via")


@pytest.fixture
def faces_dir() -> Path:
    return _need(DATA / "faces68-csv")


@pytest.fixture
def hymenoptera_dir() -> Path:
    return _need(DATA / "hymenoptera")


@pytest.fixture
def via_examples() -> Path:
    return _need(VIA_EXAMPLES)


# --- videos whose frames show their own index (tests of cnnkit.data.video, predict, labelled video) ---
VIDEO_BLOCK = 16  # 16x16 px blocks of 0 or 255: H.264 keeps them far from the 128 threshold


def index_image(i: int, width: int = 96, height: int = 64):
    """An RGB frame showing ``i`` as 12 black/white blocks (2 rows of 6), texture below them."""
    import numpy as np

    img = np.zeros((height, width, 3), np.uint8)
    img[2 * VIDEO_BLOCK:, :, 0] = (i * 37) % 256  # content that changes from frame to frame
    for bit in range(12):
        if (i >> bit) & 1:
            r, c = divmod(bit, 6)
            img[r * VIDEO_BLOCK:(r + 1) * VIDEO_BLOCK, c * VIDEO_BLOCK:(c + 1) * VIDEO_BLOCK] = 255
    return img


def read_index(img) -> int:
    """The index an ``index_image`` frame shows (block centres, so compression blur does not matter)."""
    value, m = 0, VIDEO_BLOCK // 4
    for bit in range(12):
        r, c = divmod(bit, 6)
        block = img[r * VIDEO_BLOCK + m:(r + 1) * VIDEO_BLOCK - m, c * VIDEO_BLOCK + m:(c + 1) * VIDEO_BLOCK - m]
        value |= int(block.mean() > 128) << bit
    return value


def write_index_video(path: Path, n: int, *, pts_ms=None, codec: str = "libx264", fps: int = 30,
                      size: tuple[int, int] = (96, 64)) -> Path:
    """Encode ``n`` index frames with PyAV; ``pts_ms``: per-frame times (variable frame rate)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(index_image(i, *size), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = int(pts_ms[i]), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture
def index_video():
    """``index_video(path, n, pts_ms=None, codec='libx264', fps=30)`` -> path of a written video."""
    return write_index_video


@pytest.fixture
def read_frame_index():
    return read_index


@pytest.fixture
def lips_video_dir() -> Path:
    return _need(DATA / "lips-video")
