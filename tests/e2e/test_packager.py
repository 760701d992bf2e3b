"""packager: package a source, fetch every chunk of every rendition through the real edge by
byte range, decrypt with the content key, decode with ffmpeg: duration, loudness and bitrate
are checked; a chunk decodes on its own; bad inputs leave nothing behind."""
import json
import os
import re
import sqlite3
import subprocess

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from conftest import ROOT, curl, sign

PACKAGER = os.environ.get("PACKAGER_BIN", os.path.join(os.path.dirname(os.environ.get("EDGE_BIN", ROOT + "/.build/release/edge")), "packager"))
CONF = os.path.join(ROOT, "edge.conf")
SOURCE_SECONDS = 75   # 8 chunks of 10 s


def run(*args, check=True):
    r = subprocess.run([PACKAGER, *args], capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def ffmpeg(*args):
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-y", *args], capture_output=True, text=True, timeout=300)


def ctr_decrypt(key, iv, offset, data):
    counter = (int.from_bytes(iv, "big") + offset // 16) % (1 << 128)
    d = Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).decryptor()
    d.update(b"\0" * (offset % 16))
    return d.update(data) + d.finalize()


def loudness(path):
    out = ffmpeg("-i", path, "-af", "ebur128", "-f", "null", "-").stderr
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", out)[-1])


def duration(path):
    return float(subprocess.check_output(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path], text=True))


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    d = tmp_path_factory.mktemp("pk")
    src = str(d / "source.flac")
    # A quiet source (about -30 LUFS): normalisation must bring it to the target.
    r = ffmpeg("-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={SOURCE_SECONDS}", "-f", "lavfi",
               "-i", f"anoisesrc=color=pink:amplitude=0.02:sample_rate=44100:duration={SOURCE_SECONDS}",
               "-filter_complex", "[0][1]amix=inputs=2,volume=0.08,aformat=channel_layouts=stereo", "-metadata", "title=Round Trip", src)
    assert r.returncode == 0, r.stderr
    out, cat = str(d / "origin"), str(d / "catalog.sqlite")
    r = run("ingest", src, "--out", out, "--catalog", cat, "--config", CONF)
    track = r.stdout.split()[0]
    key = bytes.fromhex(run("key", track, "--catalog", cat, "--config", CONF).stdout.strip())
    return {"dir": str(d), "src": src, "out": out, "catalog": cat, "track": track, "key": key,
            "manifest": json.load(open(f"{out}/audio/{track}/manifest.json"))}


def test_manifest_schema(packaged):
    m = packaged["manifest"]
    assert m["track_id"] == packaged["track"]
    assert abs(m["duration_ms"] - SOURCE_SECONDS * 1000) < 100
    assert m["loudness_lufs"] < -20   # the measured source
    assert [r["bitrate_kbps"] for r in m["renditions"]] == [24, 96, 160, 320]
    for r in m["renditions"]:
        assert r["codec"] == "opus" and r["container"] == "ogg" and r["path"] == f"/audio/{packaged['track']}/{r['bitrate_kbps']}.opus"
        assert r["init"]["offset"] == 0 and r["init"]["length"] > 0
        assert r["encryption"]["scheme"] == "aes-128-ctr" and len(bytes.fromhex(r["encryption"]["iv_hex"])) == 16
        assert os.path.getsize(packaged["out"] + r["path"]) == r["bytes"]
        assert len(r["chunks"]) == 8
        at = r["init"]["length"]
        for c in r["chunks"]:
            assert c["offset"] == at and c["length"] > 0
            at += c["length"]
        assert at == r["bytes"]
        assert all(9900 <= c["duration_ms"] <= 11100 for c in r["chunks"][:-1])
        assert abs(sum(c["duration_ms"] for c in r["chunks"]) - m["duration_ms"]) <= 1


def test_keys_only_in_catalog_encrypted(packaged):
    key_hex = packaged["key"].hex()
    for root, _, files in os.walk(packaged["out"]):
        for f in files:
            assert key_hex.encode() not in open(os.path.join(root, f), "rb").read()
    row = sqlite3.connect(packaged["catalog"]).execute("SELECT wrapped_key_hex, loudness_lufs, regions FROM tracks").fetchone()
    assert key_hex not in row[0] and len(row[0]) == 2 * (12 + 16 + 16)
    # Encrypted for real: without the key the file is not Ogg.
    assert open(packaged["out"] + packaged["manifest"]["renditions"][2]["path"], "rb").read(4) != b"OggS"


@pytest.mark.parametrize("kbps", [24, 96, 160, 320])
def test_round_trip_through_edge(packaged, make_edge, kbps):
    e = make_edge(origins=[f"file://{packaged['out']}"])
    r = next(x for x in packaged["manifest"]["renditions"] if x["bitrate_kbps"] == kbps)
    iv = bytes.fromhex(r["encryption"]["iv_hex"])
    token = sign(acl=f"/audio/{packaged['track']}/*")
    url = f"{e.base}{r['path']}?hdnts={token}"
    status, _, head, _ = curl(url, "-r", f"0-{r['init']['length'] - 1}")
    assert status == 206
    plain = ctr_decrypt(packaged["key"], iv, 0, head)
    for c in r["chunks"]:   # chunk after chunk, by byte range, as a player does
        status, h, body, _ = curl(f"{e.base}{r['path']}?hdnts={token}", "--http2-prior-knowledge", "-r", f"{c['offset']}-{c['offset'] + c['length'] - 1}")
        assert status == 206 and len(body) == c["length"]
        plain += ctr_decrypt(packaged["key"], iv, c["offset"], body)
    opus = os.path.join(packaged["dir"], f"rt-{kbps}.opus")
    open(opus, "wb").write(plain)
    wav = opus + ".wav"
    assert ffmpeg("-v", "error", "-i", opus, wav).returncode == 0
    # Duration: the source's within one Opus frame (20 ms); pre-skip and end trim are in-band.
    decoded = duration(wav)
    assert abs(decoded - duration(packaged["src"])) <= 0.020, (decoded, duration(packaged["src"]))
    # Loudness: the target within 1 LU.
    assert abs(loudness(wav) - packaged["manifest"]["target_lufs"]) <= 1.0
    # Bitrate: nominal within 10%.
    measured = r["bytes"] * 8 / (packaged["manifest"]["duration_ms"] / 1000) / 1000
    assert abs(measured - kbps) / kbps <= 0.10, measured


def test_one_chunk_alone_decodes(packaged, make_edge):
    e = make_edge(origins=[f"file://{packaged['out']}"])
    r = next(x for x in packaged["manifest"]["renditions"] if x["bitrate_kbps"] == 160)
    c, i = r["chunks"][7], r["init"]
    iv = bytes.fromhex(r["encryption"]["iv_hex"])
    url = f"{e.base}{r['path']}?hdnts={sign(acl='/audio/*')}"
    # Two ranges, as a player seeking to chunk 7 cold: the headers the manifest points at, and the chunk.
    _, _, head, _ = curl(url, "-r", f"{i['offset']}-{i['offset'] + i['length'] - 1}")
    status, _, body, _ = curl(url, "-r", f"{c['offset']}-{c['offset'] + c['length'] - 1}")
    assert status == 206
    chunk = os.path.join(packaged["dir"], "chunk7.opus")
    open(chunk, "wb").write(ctr_decrypt(packaged["key"], iv, i["offset"], head) + ctr_decrypt(packaged["key"], iv, c["offset"], body))
    wav = chunk + ".wav"
    out = ffmpeg("-v", "error", "-i", chunk, wav)
    assert out.returncode == 0, out.stderr
    assert abs(duration(wav) * 1000 - c["duration_ms"]) <= 40


def test_reingest_is_idempotent(packaged):
    r = run("ingest", packaged["src"], "--out", packaged["out"], "--catalog", packaged["catalog"], "--config", CONF)
    assert r.stdout.split()[0] == packaged["track"] and "already ingested" in r.stderr
    assert sqlite3.connect(packaged["catalog"]).execute("SELECT count(*) FROM tracks").fetchone()[0] == 1


@pytest.mark.parametrize("kind", ["truncated.flac", "text.wav", "empty.wav", "missing.wav"])
def test_bad_input_leaves_nothing(tmp_path, kind):
    src = str(tmp_path / kind)
    if kind == "truncated.flac":
        assert ffmpeg("-f", "lavfi", "-i", "sine=duration=20", src).returncode == 0
        data = open(src, "rb").read()
        open(src, "wb").write(data[:len(data) // 3])
    elif kind == "text.wav":
        open(src, "w").write("this is not audio\n" * 100)
    elif kind == "empty.wav":
        open(src, "wb").close()
    out, cat = str(tmp_path / "origin"), str(tmp_path / "catalog.sqlite")
    r = run("ingest", src, "--out", out, "--catalog", cat, "--config", CONF, check=False)
    assert r.returncode != 0 and kind in r.stderr, r.stderr
    assert not os.path.exists(out + "/audio") or os.listdir(out + "/audio") == []
    assert [f for f in os.listdir(out) if f != "audio"] == []   # no staging leftovers
    assert sqlite3.connect(cat).execute("SELECT count(*) FROM tracks").fetchone()[0] == 0


def test_bad_config_names_the_key(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text('[catalog]\nmaster_key_hex = "abc"\n')
    r = run("ingest", "x.wav", "--out", str(tmp_path / "o"), "--catalog", str(tmp_path / "c.sqlite"), "--config", str(conf), check=False)
    assert r.returncode != 0 and "catalog.master_key_hex" in r.stderr
