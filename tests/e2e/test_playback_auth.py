"""playback-auth end to end: the real service issues grants from a real catalog (packager), the
real edge honours or refuses them."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest
from akamai.edgeauth import EdgeAuth

from conftest import BIN_DIR as BIN, IDENTITY_SECRET as SECRET, KEY_HEX, MASTER_KEY_HEX as MASTER, ROOT, Edge, curl, \
    package_demo, start_playback_auth


def jwt(sub="u1", tier="premium", country="US", ttl=600, secret=SECRET):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "tier": tier, "country": country, "exp": int(time.time()) + ttl}).encode())
    sig = b64(hmac.new(secret.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


METRICS_TOKEN = "e2e-metrics-token-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, workdir):
    d = tmp_path_factory.mktemp("pa")
    tracks = package_demo(d, 2, 12)
    edge = Edge(workdir, origins=[f"file://{d}/origin"], token={"leeway_seconds": 0})

    def start_auth(ttl=3600):
        return start_playback_auth(d, edge.base, extra=f'grant_ttl_seconds = {ttl}\nmetrics_token = "{METRICS_TOKEN}"\n')
    auth, url = start_auth()
    yield {"edge": edge, "auth": url, "tracks": tracks, "start_auth": start_auth, "procs": [auth]}
    auth.terminate()
    auth.wait(timeout=20)
    edge.stop()


def grant(url, track, **claims):
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {jwt(**claims)}", "-H", "Content-Type: application/json",
                        "-d", json.dumps({"track_id": track}), f"{url}/v1/playback"], capture_output=True, text=True, timeout=20).stdout
    body, _, status = r.rpartition("\n")
    return int(status), json.loads(body)


def fetch(g, kbps, track=None):
    track = track or g["track_id"]
    return curl(f"{g['base_url']}/audio/{track}/{kbps}.opus?{g['token_name']}={g['token']}", "-r", "0-999")[0]


def test_premium_fetches_320(stack):
    status, g = grant(stack["auth"], stack["tracks"][0], tier="premium")
    assert status == 200 and g["bitrate_kbps"] == 320
    assert fetch(g, 320) == 206
    assert curl(f"{g['base_url']}/audio/{g['track_id']}/manifest.json?hdnts={g['token']}")[0] == 200


def test_free_refused_320_accepted_160(stack):
    status, g = grant(stack["auth"], stack["tracks"][0], tier="free")
    assert status == 200 and g["bitrate_kbps"] == 160
    assert fetch(g, 320) == 403
    assert fetch(g, 160) == 206
    assert fetch(g, 24) == 206


def test_grant_for_another_track_refused(stack):
    _, g = grant(stack["auth"], stack["tracks"][0])
    assert fetch(g, 160, track=stack["tracks"][1]) == 403


def test_expired_grant_refused(stack):
    proc, url = stack["start_auth"](ttl=10)
    try:
        status, g = grant(url, stack["tracks"][0])
        assert status == 200 and fetch(g, 160) == 206
        time.sleep(11)
        assert fetch(g, 160) == 403
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_token_matches_independent_implementation(stack):
    _, g = grant(stack["auth"], stack["tracks"][1])
    fields = dict(f.split("=", 1) for f in g["token"].split("~"))
    st, exp = int(fields["st"]), int(fields["exp"])
    assert fields["data"] == "geo=*", "the demo tracks are licensed worldwide: the region claim says anywhere"
    theirs = EdgeAuth(key=KEY_HEX, start_time=st, window_seconds=exp - st, escape_early=False,
                      payload=fields["data"]).generate_acl_token(fields["acl"].split("!"))
    assert theirs == g["token"]


def test_errors_over_http(stack):
    status, body = grant(stack["auth"], "tnosuchtrack")
    assert status == 404 and "error" in body
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "{}", f"{stack['auth']}/v1/playback"], capture_output=True, text=True)
    assert r.stdout == "401"
    assert curl(stack["auth"] + "/healthz")[0] == 200
    assert curl(stack["auth"] + "/metrics")[0] == 401   # only the scraper, with its own token
    assert curl(stack["auth"] + "/metrics", "-H", f"Authorization: Bearer {jwt()}")[0] == 401
    status, _, body, _ = curl(stack["auth"] + "/metrics", "-H", f"Authorization: Bearer {METRICS_TOKEN}")
    assert status == 200 and b"playback_grants_total" in body and KEY_HEX.encode() not in body and MASTER.encode() not in body


def test_check_and_bad_config(tmp_path):
    c = tmp_path / "bad.conf"
    c.write_text('[auth]\ncatalog = "x"\njwt_hs256_secret = "short"\nedges = ["http://e"]\n[token]\nkey_hex = "' + KEY_HEX + '"\n[catalog]\nmaster_key_hex = "' + MASTER + '"\n')
    r = subprocess.run([f"{BIN}/playback-auth", "--check", "--config", str(c)], capture_output=True, text=True)
    assert r.returncode != 0 and "auth.jwt_hs256_secret" in r.stderr


def test_openapi_document_matches_the_service(stack):
    """Every documented field of a Grant is in a real grant, and every field of a real grant is
    documented; the documented statuses are the ones the service produces."""
    import yaml
    doc = yaml.safe_load(open(os.path.join(ROOT, "docs", "openapi.yaml")))
    schemas = doc["components"]["schemas"]
    _, g = grant(stack["auth"], stack["tracks"][0], tier="free")
    assert set(g) == set(schemas["Grant"]["properties"])
    assert set(schemas["Grant"]["required"]) <= set(g)
    assert set(g["manifest"]) <= set(schemas["Manifest"]["properties"])
    assert set(g["manifest"]["renditions"][0]) <= set(schemas["Rendition"]["properties"])
    assert set(doc["paths"]) == {"/v1/playback", "/v1/tracks/{id}", "/healthz", "/metrics"}
    assert set(doc["paths"]["/v1/playback"]["post"]["responses"]) == {"200", "400", "401", "403", "404", "429"}
    status, _, meta, _ = curl(f"{stack['auth']}/v1/tracks/{stack['tracks'][0]}", "-H", f"Authorization: Bearer {jwt()}")
    assert status == 200 and set(json.loads(meta)) == set(schemas["TrackMetadata"]["properties"])
