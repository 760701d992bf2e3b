"""`loadtest run`: simulated players against the real edge and the real playback-auth on
loopback. Players press play, get a grant (a JWT per player), fetch the manifest, init and chunks
by range on a virtual playback clock; the report counts plays, time to first audio, rebuffers,
prefetches; thresholds decide the exit code; the HTML report renders in headless Chromium."""
import json
import os
import shutil
import struct
import subprocess
import zlib

import pytest

from conftest import IDENTITY_SECRET as SECRET, KEY_HEX, LOADTEST_BIN, ROOT, Edge, package_demo, start_playback_auth

BIN = os.path.dirname(LOADTEST_BIN)
ARTIFACTS = os.path.join(ROOT, ".build", "test-artifacts")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, workdir):
    """Three 12-second tracks in 2-second chunks at four bit rates, an edge, a playback-auth."""
    d = tmp_path_factory.mktemp("players")
    tracks = package_demo(d, 3, 12, chunk_seconds=2.0)
    edge = Edge(workdir, origins=[f"file://{d}/origin"], server={"workers": 1})
    auth, url = start_playback_auth(d, edge.base)
    yield {"edge": edge, "auth": url, "tracks": tracks, "dir": d}
    auth.terminate()
    auth.wait(timeout=20)
    edge.stop()


def scenario(stack, *, auth=True, protocol="h2", arrivals='model = "poisson"\nrate = 20\nseconds = 2', thresholds=(),
             player="", run="duration_seconds = 30"):
    lines = [f"thresholds = {json.dumps(list(thresholds))}", "[target]", f'edge = "{stack["edge"].base}"',
             f'protocol = "{protocol}"', "http1_connections = 2"]
    if auth:
        lines += ["[auth]", f'url = "{stack["auth"]}"', f'jwt_hs256_secret = "{SECRET}"', 'tier = "free"']
    else:
        lines += [f'token_key_hex = "{KEY_HEX}"']
    lines += ["[content]", f"tracks = {json.dumps(stack['tracks'])}", "seed = 7",
              "[player]", "first_audio_ms = 2000", "buffer_ahead_ms = 4000", "playback_speed = 20", "tracks_per_play = 2",
              player, "[arrivals]", arrivals, "[run]", run]
    return "\n".join(lines) + "\n"


def run(tmp_path, text, *args, name="s"):
    path, report = tmp_path / f"{name}.toml", tmp_path / f"{name}.json"
    path.write_text(text)
    p = subprocess.run([LOADTEST_BIN, "run", str(path), "--json", str(report), *args], capture_output=True, text=True,
                       timeout=120)
    return p.returncode, (json.loads(report.read_text()) if report.exists() else None), p.stdout + p.stderr


def test_players_with_grants_play_whole_tracks_and_prefetch_the_next(stack, tmp_path):
    code, r, out = run(tmp_path, scenario(stack, player="seek_probability = 0.2\nswitch_probability = 0.2"))
    assert code == 0, out
    p = r["players"]
    assert p["plays"] >= 20 and p["plays_with_audio"] == p["plays"] and p["plays_failed"] == 0, out
    assert p["tracks_completed"] == 2 * p["plays"], "each play listens to both of its tracks to the end"
    # Every play asked for a grant for each of its tracks; time to first audio includes it.
    assert p["grant_ms"]["count"] == 2 * p["plays"]
    ttfa = r["time_to_first_audio_ms"]
    assert ttfa["count"] == p["plays"] and ttfa["p50"] >= p["grant_ms"]["p50"] * 0.5, out
    # 12 s tracks at 20x: the next track's first chunk is fetched ahead (from the grant) and used.
    assert p["prefetches"] == p["prefetches_used"] == p["plays"], out
    assert p["seeks"] > 0 and p["bitrate_switches"] > 0, out
    assert r["errors"] == 0 and r["statuses"].get("206", 0) > 0 and r["statuses"].get("200", 0) >= 2 * p["plays"]
    assert r["ttfb_per_second"] and r["ttfb_per_second"][0]["count"] > 0


def test_a_free_player_never_fetches_above_its_tier(stack, tmp_path):
    """The grant caps a free listener at 160 kb/s: switches stay at or below it (the edge would
    answer 403 to a 320 kb/s range, which would be errors here)."""
    code, r, out = run(tmp_path, scenario(stack, player="switch_probability = 0.5"))
    assert code == 0 and r["errors"] == 0 and r["players"]["bitrate_switches"] > 0, out


def test_without_auth_players_sign_their_own_tokens_over_http1_with_a_bounded_pool(stack, tmp_path):
    code, r, out = run(tmp_path, scenario(stack, auth=False, protocol="http1"))
    assert code == 0, out
    p = r["players"]
    assert p["plays_with_audio"] == p["plays"] > 0 and p["grant_ms"] is None and r["errors"] == 0, out
    assert p["prefetches_used"] == p["plays"], "without a grant: the next manifest, then its first chunk"


def test_a_crossed_threshold_fails_the_run_and_says_which(stack, tmp_path):
    code, r, out = run(tmp_path, scenario(stack, thresholds=["ttfb_p99_ms < 0.001", "error_rate < 0.5"]))
    assert code == 1, out
    assert "threshold crossed: ttfb_p99_ms < 0.001" in out and "error_rate" not in out.split("threshold crossed")[1]
    assert [t["passed"] for t in r["thresholds"]] == [False, True]
    code, r, out = run(tmp_path, scenario(stack, thresholds=["ttfb_p99_ms < 5000", "time_to_first_audio_p99_ms < 5000"]))
    assert code == 0 and all(t["passed"] for t in r["thresholds"]), out


def test_a_release_drop_presses_play_within_the_jitter_window(stack, tmp_path):
    code, r, out = run(tmp_path, scenario(stack, arrivals='model = "release_drop"\nplayers = 150\njitter_ms = 300'))
    assert code == 0, out
    assert r["players"]["plays"] == 150 and r["players"]["plays_with_audio"] == 150, out


def test_a_staged_ramp_and_several_threads_merge_into_one_report(stack, tmp_path):
    arrivals = 'model = "constant"\nstages = [{ rate = 10, seconds = 1 }, { rate = 40, seconds = 1 }]'
    code, r, out = run(tmp_path, scenario(stack, arrivals=arrivals, run="threads = 2\nduration_seconds = 30"))
    assert code == 0, out
    assert r["players"]["plays"] == 50, "10 in the first second, 40 in the second, split across two threads"
    assert r["time_to_first_audio_ms"]["count"] == 50 and r["generator_lag_ms"]["count"] > 1000


def test_the_playback_auth_refusing_is_counted_as_failed_plays(stack, tmp_path):
    text = scenario(stack).replace(f'jwt_hs256_secret = "{SECRET}"', 'jwt_hs256_secret = "a-secret-the-service-does-not-know"')
    code, r, out = run(tmp_path, text)
    assert code == 1, out
    assert r["players"]["plays_failed"] == r["players"]["plays"] > 0 and r["errors_by_class"]["grant_status_401"] > 0


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('protocol = "h2"', 'protocol = "h3"'), "target.protocol"),
    (lambda s: s.replace("playback_speed = 20", "playback_speed = 0"), "player.playback_speed"),
    (lambda s: s.replace("[run]", "[run]\nbogus = 1"), "run.bogus: unknown key"),
    (lambda s: s.replace('thresholds = []', 'thresholds = ["ttfb_p100_ms < 5"]'), "unknown figure ttfb_p100_ms"),
    (lambda s: s.replace("rate = 20", "rate = -1"), "arrivals.rate"),
])
def test_a_bad_scenario_is_refused_naming_the_key(stack, tmp_path, edit, message):
    code, r, out = run(tmp_path, edit(scenario(stack)))
    assert code == 64 and message in out and r is None, out


def png_pixels(path):
    """RGBA rows of an 8-bit non-interlaced PNG (what Chromium writes), unfiltered."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return rows


def test_the_html_report_renders_its_charts_in_headless_chromium(stack, tmp_path):
    # Never skipped: a missing browser would pass silently. scripts/test.sh installs it.
    assert shutil.which("chromium"), "chromium is needed (scripts/test.sh installs it)"
    html = tmp_path / "report.html"
    code, r, out = run(tmp_path, scenario(stack), "--html", str(html))
    assert code == 0, out
    text = html.read_text()
    assert all(f'id="{c}"' in text for c in ("spectrum", "over-time", "hit-miss", "ttfa")), "four charts"
    assert "<script" not in text and "src=" not in text and "href=" not in text, "self-contained, no network"
    os.makedirs(ARTIFACTS, exist_ok=True)
    png = os.path.join(ARTIFACTS, "loadtest-report.png")
    if os.path.exists(png):
        os.remove(png)
    p = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1240,2000", f"--screenshot={png}", f"file://{html}"],
                       capture_output=True, text=True, timeout=120)
    assert os.path.exists(png), p.stderr
    pixels = [px for row in png_pixels(png) for px in row]
    # The charts' own colours are on the page: the corrected TTFB line (#d62728), the
    # uncorrected one (#1f77b4) and the time-to-first-audio bars (#9467bd).
    for colour in ((0xd6, 0x27, 0x28), (0x1f, 0x77, 0xb4), (0x94, 0x67, 0xbd)):
        assert sum(1 for px in pixels if px == colour) > 200, f"no chart drawn in {colour} ({png})"
