#!/usr/bin/env python3
"""Deterministic stand-in audio catalog for benchmarks: TRACKS x {96,160,320} kb/s x 24 chunks
of 10 s. Bytes are pseudo-random (encrypted audio looks random); sizes follow the bitrate."""
import os
import random
import sys


def make(root: str, tracks: int) -> None:
    sizes = {"96": 120_000, "160": 200_000, "320": 400_000}
    for t in range(tracks):
        for bitrate, size in sizes.items():
            d = f"{root}/audio/t{t:04d}/{bitrate}"
            os.makedirs(d, exist_ok=True)
            for c in range(24):
                p = f"{d}/{c:03d}.bin"
                if os.path.exists(p) and os.path.getsize(p) == size:
                    continue
                rnd = random.Random(f"{t}/{bitrate}/{c}")
                with open(p + ".tmp", "wb") as f:
                    f.write(rnd.randbytes(size))
                os.replace(p + ".tmp", p)


def paths(n: int, tracks: int, seed: int = 1) -> list:
    """Zipf-like popularity over tracks, uniform over bitrate and chunk."""
    rnd = random.Random(seed)
    weights = [1.0 / (i + 1) ** 0.9 for i in range(tracks)]
    out = []
    for _ in range(n):
        t = rnd.choices(range(tracks), weights)[0]
        out.append(f"/audio/t{t:04d}/{rnd.choice(['96', '160', '320'])}/{rnd.randrange(24):03d}.bin")
    return out


if __name__ == "__main__":
    make(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50)
