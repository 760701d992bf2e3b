"""The release-drop runbook, end to end: a 12-track album packaged with a release time in the
catalog; `edgectl prewarm --catalog --releasing-within` to two edges with a pin; one edge restarted
in the middle of its job (the job resumes, no slice is fetched twice); then every byte of the album
is a cache hit on both edges with zero origin requests, and the pinned album survives heavy cache
pressure from other content."""
import collections
import json
import os
import random
import subprocess
import time

import pytest

from conftest import ADMIN_TOKEN, EDGECTL_BIN, ROOT, curl, sign
from fault_origin import Origin

PACKAGER = os.path.join(os.path.dirname(EDGECTL_BIN), "packager")
SLICE = 65536


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    d = tmp_path_factory.mktemp("drop")
    out, cat = str(d / "origin"), str(d / "catalog.sqlite")
    release = int(time.time()) + 6 * 3600
    r = subprocess.run([PACKAGER, "demo-content", "--tracks", "12", "--seconds", "5", "--out", out, "--catalog", cat,
                        "--config", os.path.join(ROOT, "edge.conf"), "--release-at", str(release)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    tracks = [line.split("\t")[0] for line in r.stdout.splitlines() if line.strip()]
    assert len(tracks) == 12
    # Other content, for cache pressure: 24 MB, over the disk tier's 16 MB.
    for i in range(12):
        p = f"{out}/audio/filler/{i}.bin"
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "wb").write(random.Random(i).randbytes(2_000_000))
    files = []
    for t in tracks:
        m = json.load(open(f"{out}/audio/{t}/manifest.json"))
        files.append((f"/audio/{t}/manifest.json", os.path.getsize(f"{out}/audio/{t}/manifest.json")))
        files += [(r["path"], r["bytes"]) for r in m["renditions"]]
    return {"out": out, "catalog": cat, "tracks": tracks, "files": files}


def test_release_drop(album, make_edge, tmp_path):
    origins = [Origin(album["out"], SLICE), Origin(album["out"], SLICE)]
    try:
        edges = []
        for i, o in enumerate(origins):
            cache = {"dir": str(tmp_path / f"cache{i}"), "slice_bytes": SLICE, "disk_bytes_limit": 16 << 20,
                     "ram_bytes_limit": 2 << 20, "pinned_bytes_max": 8 << 20}
            edges.append(make_edge(origins=[o.url], cache=cache, admin={}))
        album_bytes = sum(size for _, size in album["files"])
        assert album_bytes < 8 << 20
        # Slow enough (about 4 s) to restart an edge in the middle of its job.
        cmd = [EDGECTL_BIN, "prewarm", "--catalog", album["catalog"], "--releasing-within", "24h",
               "--pin-until", "2126-01-01T00:00:00Z", "--origin-bytes-per-second", str(album_bytes // 4),
               "--origin-concurrency", "4", "--token", ADMIN_TOKEN]
        for e in edges:
            cmd += ["--edge", e.admin_base]
        ctl = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        b = edges[1]
        assert b.admin("GET", "/admin/prewarm")[1]["jobs"][0]["state"] == "running"
        assert b.stop() == 0
        b.start()
        out, _ = ctl.communicate(timeout=120)
        assert ctl.returncode == 0, out
        assert "12 tracks release within 24h" in out
        assert "resuming after restart" in b.errors()
        for e in edges:
            jobs = e.admin("GET", "/admin/prewarm")[1]["jobs"]
            assert len(jobs) == 1 and jobs[0]["state"] == "done", jobs
            assert jobs[0]["bytes_done"] == jobs[0]["bytes_total"] == album_bytes
        # Every slice was fetched once per edge, the restart included.
        for o in origins:
            asked = collections.Counter((p, rng) for p, rng, _, _ in o.log)
            twice = [k for k, n in asked.items() if n > 1]
            assert not twice, twice
            assert len(asked) == sum((size + SLICE - 1) // SLICE for _, size in album["files"])
        before = [len(o.log) for o in origins]

        # T0: every chunk of the album is a hit on both edges, and the origins see nothing.
        token = sign(acl="/audio/*")
        for e in edges:
            for path, size in album["files"]:
                for start in range(0, size, SLICE):
                    status, h, body, _ = curl(f"{e.base}{path}?hdnts={token}", "-r", f"{start}-{min(size, start + SLICE) - 1}")
                    assert status == 206 and h["cache-status"] == "edge; hit", (e.base, path, start, h)
        assert [len(o.log) for o in origins] == before

        # Heavy pressure from other content: the pinned album stays.
        for e in edges:
            for i in range(12):
                assert curl(f"{e.base}/audio/filler/{i}.bin?hdnts={token}")[0] == 200
            for i in range(12):
                assert curl(f"{e.base}/audio/filler/{i}.bin?hdnts={token}")[0] == 200
        before = [len([x for x in o.log if "/filler/" not in x[0]]) for o in origins]
        for e in edges:
            for path, size in album["files"]:
                status, h, _, _ = curl(f"{e.base}{path}?hdnts={token}")
                assert status == 200 and h["cache-status"] == "edge; hit", (path, h)
        assert [len([x for x in o.log if "/filler/" not in x[0]]) for o in origins] == before
    finally:
        for o in origins:
            o.close()
