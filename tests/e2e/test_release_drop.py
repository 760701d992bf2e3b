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

from conftest import ADMIN_TOKEN, EDGECTL_BIN, KEY_HEX, LOADTEST_BIN, ROOT, curl, sign
from fault_origin import Origin

PACKAGER = os.path.join(os.path.dirname(EDGECTL_BIN), "packager")
SLICE = 65536
ARTIFACTS = os.path.join(ROOT, ".build", "test-artifacts")


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


def drop_scenario(edge_base, tracks, players):
    return "\n".join([
        'thresholds = ["error_rate < 0.001"]',
        "[target]", f'edge = "{edge_base}"', f'token_key_hex = "{KEY_HEX}"',
        "[content]", f"tracks = {json.dumps(tracks)}", "seed = 12",
        "[player]", "first_audio_ms = 1000", "playback_speed = 10", "tracks_per_play = 2",
        "[arrivals]", 'model = "release_drop"', f"players = {players}", "jitter_ms = 500",
        "[run]", "duration_seconds = 120", "timeout_ms = 20000"]) + "\n"


def test_release_drop_players_cold_versus_prewarmed(album, make_edge, tmp_path):
    """The release-drop measurement: N players (RELEASE_DROP_PLAYERS, 300 here; 2000 for the
    figures in the issue note) press play on the album within half a second, once on a cold
    edge and once on an edge pre-warmed by `edgectl prewarm`, behind an origin 60 ms away. The
    cold drop sends requests to the origin and its slowest plays wait for them; the pre-warmed
    one sends none. Both reports and the comparison go to .build/test-artifacts/."""
    players = int(os.environ.get("RELEASE_DROP_PLAYERS", "300"))
    origin = Origin(album["out"], SLICE)
    origin.delay_ms = 60
    os.makedirs(ARTIFACTS, exist_ok=True)
    try:
        reports, origin_requests = {}, {}
        for kind in ("cold", "prewarmed"):
            cache = {"dir": str(tmp_path / kind), "slice_bytes": SLICE, "disk_bytes_limit": 64 << 20,
                     "ram_bytes_limit": 16 << 20, "pinned_bytes_max": 32 << 20}
            e = make_edge(origins=[origin.url], cache=cache, admin={}, limits={"connections_per_worker_max": 10000})
            if kind == "prewarmed":
                p = subprocess.run([EDGECTL_BIN, "prewarm", "--catalog", album["catalog"], "--releasing-within", "24h",
                                    "--edge", e.admin_base, "--token", ADMIN_TOKEN], capture_output=True, text=True, timeout=300)
                assert p.returncode == 0, p.stdout + p.stderr
            before = len(origin.log)
            path = tmp_path / f"{kind}.toml"
            path.write_text(drop_scenario(e.base, album["tracks"], players))
            report = os.path.join(ARTIFACTS, f"release-drop-{kind}.json")
            r = subprocess.run([LOADTEST_BIN, "run", str(path), "--quiet", "--json", report], capture_output=True, text=True,
                               timeout=600)
            assert r.returncode == 0, r.stdout + r.stderr
            reports[kind] = json.load(open(report))
            origin_requests[kind] = len(origin.log) - before
            e.stop()
        cmp = subprocess.run([LOADTEST_BIN, "compare", os.path.join(ARTIFACTS, "release-drop-cold.json"),
                              os.path.join(ARTIFACTS, "release-drop-prewarmed.json")], capture_output=True, text=True)
        assert cmp.returncode == 0 and "time_to_first_audio_ms.p99" in cmp.stdout, cmp.stdout + cmp.stderr
        summary = [f"release drop: {players} players, 12-track album, jitter 500 ms, origin +60 ms"]
        for kind, r in reports.items():
            t = r["time_to_first_audio_ms"]
            summary.append(f"{kind:10} time to first audio p50 {t['p50']:7.2f} ms  p99 {t['p99']:7.2f} ms  max {t['max']:7.2f} ms"
                           f"  origin requests {origin_requests[kind]:5d}  cache hit {r['cache']['hit']} miss {r['cache']['miss']}")
        open(os.path.join(ARTIFACTS, "release-drop.txt"), "w").write("\n".join(summary) + "\n\n" + cmp.stdout)
        print("\n".join(summary))
        cold, warm = reports["cold"], reports["prewarmed"]
        for r in (cold, warm):
            assert r["players"]["plays"] == r["players"]["plays_with_audio"] == players, r["players"]
        assert origin_requests["cold"] > 0 and cold["cache"]["miss"] > 0
        assert origin_requests["prewarmed"] == 0 and warm["cache"]["miss"] == 0 and warm["cache"]["hit"] > 0
        # The first players of the cold drop waited for the origin (60 ms at least); nobody did
        # once the album was pre-warmed.
        assert cold["time_to_first_audio_ms"]["max"] >= 60 and cold["ttfb_miss_ms"]["max"] >= 60
        assert warm["time_to_first_audio_ms"]["p99"] < cold["time_to_first_audio_ms"]["max"]
    finally:
        origin.close()
