"""Damaged copies of the real lips videos, built in tmp_path (issue 26: partial videos).

- ``cut_in_half``: the first half of the bytes of an AVI, as a camera that crashed leaves it
  (no index at the end; the last packet is cut in the middle).
- ``faststart_cut``: a few seconds remuxed (no re-encoding) to an MP4 with its index at the
  start (``movflags=faststart``), then cut in half: the index declares every frame.
- ``cut_at_packet``: an AVI cut exactly before a packet (nothing is marked corrupt).
- ``no_frames``: an AVI with the lips video's stream and not a single frame.
"""

from __future__ import annotations

from pathlib import Path


def cut_in_half(video: Path, out: Path) -> Path:
    data = video.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def faststart_cut(video: Path, out: Path, *, seconds: float = 3.0) -> Path:
    import av

    whole = out.with_name(f"{out.stem}.whole.mp4")
    with av.open(str(video)) as src, av.open(str(whole), "w", options={"movflags": "faststart"}) as dst:
        stream = src.streams.video[0]
        copy = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None or (packet.pts is not None and packet.pts * stream.time_base > seconds):
                continue
            packet.stream = copy
            dst.mux(packet)
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: the index comes first"
    out.write_bytes(data[: len(data) // 2])
    return out


def cut_at_packet(video: Path, out: Path, *, packet: int) -> Path:
    import av

    with av.open(str(video)) as src:
        positions = [p.pos for p in src.demux(src.streams.video[0]) if p.size]
    out.write_bytes(video.read_bytes()[: positions[packet] - 8])  # before the chunk's 8-byte header
    return out


def no_frames(video: Path, out: Path) -> Path:
    import av

    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        dst.add_stream_from_template(src.streams.video[0])
        dst.start_encoding()
    return out
