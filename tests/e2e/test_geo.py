"""Regional licensing at the edge: a token's `geo=` claim against the client's country from a
MaxMind DB the tests write (mmdb-writer), players on different loopback addresses (127.0.0.0/8
is all local on Linux), X-Forwarded-For from trusted and untrusted peers, databases swapped and
damaged at reload, `edgectl geo`, and playback-auth's grants enforced end to end."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from conftest import ADMIN_TOKEN, BIN_DIR, EDGECTL_BIN, curl, sign

TRACK = "/audio/t0001/160/000.bin"
US, DE, NO_COUNTRY, PROXY = "127.0.0.3", "127.0.0.2", "127.0.0.4", "127.0.0.5"   # 127.0.0.1: not in the database


def write_db(path, mapping):
    """A GeoLite2-Country-shaped MaxMind DB: {address or network: country code, or None for a
    record without a country}. Written beside and renamed over, as an operator's update would."""
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country", description="edge e2e")
    for net, country in mapping.items():
        w.insert_network(IPSet([net]), {"country": {"iso_code": country}} if country else {"continent": {"code": "EU"}})
    tmp = f"{path}.new"
    w.to_db_file(tmp)
    os.replace(tmp, path)
    return path


BASE_MAP = {DE: "DE", US: "US", NO_COUNTRY: None, PROXY: "GB"}


@pytest.fixture
def geo_db(workdir):
    path = os.path.join(workdir, f"geo-{time.time_ns()}.mmdb")
    return write_db(path, BASE_MAP)


def get(edge, token, source, *args):
    return curl(f"{edge.base}{TRACK}?hdnts={token}", "--interface", source, "-r", "0-99", *args)[0]


def metric(edge, name):
    status, text = edge.admin("GET", "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.split(" ")[-1])
    return 0.0


def test_players_get_206_or_403_as_their_grants_regions_say(make_edge, geo_db):
    e = make_edge(geo={"database": geo_db, "trusted_proxies": [PROXY]}, admin={})
    us_ca, de_only, anywhere, none = sign(acl="/audio/*", regions="US,CA"), sign(acl="/audio/*", regions="DE"), \
        sign(acl="/audio/*", regions="*"), sign(acl="/audio/*")
    cases = [
        (us_ca, US, 206), (us_ca, DE, 403), (de_only, DE, 206), (de_only, US, 403),
        (anywhere, DE, 206), (none, DE, 206),   # no claim: as before, unless required
        (us_ca, "127.0.0.1", 206), (us_ca, NO_COUNTRY, 206),   # unknown: allowed by default
    ]
    for token, source, expected in cases:
        assert get(e, token, source) == expected, (token, source)
    lines = [l for l in e.log_lines() if l["path"] == TRACK]   # two workers: in any order
    assert sorted((l["client"], l["token"]) for l in lines) == sorted(
        (src, "ok" if want == 206 else "geo") for _, src, want in cases)
    assert metric(e, 'edge_token_rejections_total{reason="geo"}') == 2
    # Over HTTP/2 and TLS the same.
    assert curl(f"{e.base}{TRACK}?hdnts={us_ca}", "--http2-prior-knowledge", "--interface", DE, "-r", "0-9")[0] == 403
    assert curl(f"{e.tls_base}{TRACK}?hdnts={us_ca}", "--http2", "--interface", US, "-r", "0-9")[0] == 206


def test_unknown_denied_and_claim_required(make_edge, geo_db):
    e = make_edge(geo={"database": geo_db, "unknown": "deny", "require_claim": True})
    us = sign(acl="/audio/*", regions="US")
    assert get(e, us, "127.0.0.1") == 403
    assert get(e, us, NO_COUNTRY) == 403
    assert get(e, us, US) == 206
    assert get(e, sign(acl="/audio/*"), US) == 403, "a token without a claim is refused when claims are required"
    assert get(e, sign(acl="/audio/*", regions="*"), "127.0.0.1") == 206
    assert sorted((l["client"], l["token"]) for l in e.log_lines()) == sorted(
        [("127.0.0.1", "geo"), (NO_COUNTRY, "geo"), (US, "ok"), (US, "geo"), ("127.0.0.1", "ok")])


def test_forwarded_for_is_believed_only_from_trusted_proxies(make_edge, geo_db):
    e = make_edge(geo={"database": geo_db, "trusted_proxies": [PROXY, "10.0.0.0/8"]})
    us = sign(acl="/audio/*", regions="US")
    xff = lambda v: ["-H", f"X-Forwarded-For: {v}"]
    assert get(e, us, DE, *xff(US)) == 403, "an untrusted peer cannot claim another address"
    assert get(e, us, PROXY, *xff(US)) == 206
    assert get(e, us, PROXY, *xff(DE)) == 403
    assert get(e, us, PROXY, *xff(f"{US}, 10.1.2.3")) == 206, "our own proxies in the chain are skipped"
    assert get(e, us, PROXY, *xff(f"{US}, {DE}")) == 403, "what the client wrote at the left is not believed"
    assert get(e, us, PROXY) == 403, "no header: the proxy's own country (GB)"
    assert get(e, us, PROXY, *xff("not-an-address")) == 403, "a bad entry: the proxy's own country"


def keepalive_request(sock, token):
    sock.sendall(f"GET {TRACK}?hdnts={token} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1])


def test_database_swapped_at_reload_applies_to_new_connections(make_edge, geo_db):
    e = make_edge(geo={"database": geo_db}, admin={})
    us = sign(acl="/audio/*", regions="US")
    old = socket.create_connection(("127.0.0.1", e.port), source_address=(DE, 0))
    assert keepalive_request(old, us) == 403
    write_db(geo_db, {**BASE_MAP, DE: "US"})   # the operator's update: DE's address moved to US
    e.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "geo.database (file)" not in e.errors(0.1) and time.time() < deadline:
        pass
    assert "applied: geo.database (file)" in e.errors()
    assert get(e, us, DE) == 206, "a new connection uses the new database"
    assert keepalive_request(old, us) == 403, "a connection keeps the country it was looked up with"
    old.close()
    # The same through the admin API, back again.
    write_db(geo_db, BASE_MAP)
    status, out = e.admin("POST", "/admin/reload")
    assert status == 200 and "geo.database (file)" in out["applied"], out
    assert get(e, us, DE) == 403


@pytest.mark.parametrize("damage", ["truncated", "noise", "empty", "no_country"])
def test_damaged_database_refused_at_start_and_at_reload(make_edge, workdir, geo_db, damage):
    bad = os.path.join(workdir, f"bad-{damage}-{time.time_ns()}.mmdb")
    good = open(geo_db, "rb").read()
    if damage == "no_country":
        w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
        w.insert_network(IPSet([US]), {"autonomous_system_number": 64512})
        w.to_db_file(bad)
    else:
        open(bad, "wb").write({"truncated": good[:len(good) // 2], "noise": os.urandom(4096), "empty": b""}[damage])
    reason = {"truncated": "invalid metadata", "noise": "invalid metadata", "empty": "is empty",
              "no_country": "has no record with a country"}[damage]
    # At start-up: refused, with the key and the reason.
    with pytest.raises(RuntimeError) as refused:
        make_edge(geo={"database": bad})
    assert f"geo.database: {bad}" in str(refused.value) and reason in str(refused.value), refused.value
    # `edge --check` says the same without starting.
    e = make_edge(geo={"database": geo_db}, admin={})
    conf = open(e.conf).read().replace(geo_db, bad)
    check_conf = e.conf + ".check"
    open(check_conf, "w").write(conf)
    out = subprocess.run([f"{BIN_DIR}/edge", "--config", check_conf, "--check"], capture_output=True, text=True)
    assert out.returncode == 2 and reason in out.stderr, out.stderr
    # At reload: refused, and the old database keeps serving.
    open(e.conf, "w").write(conf)
    status, out = e.admin("POST", "/admin/reload")
    assert status == 400 and "geo.database" in out["error"] and reason in out["error"], out
    us = sign(acl="/audio/*", regions="US")
    assert get(e, us, US) == 206 and get(e, us, DE) == 403


def test_edgectl_geo_says_what_the_edge_would_decide(make_edge, geo_db):
    e = make_edge(geo={"database": geo_db, "trusted_proxies": [PROXY]}, admin={})
    run = lambda *a: subprocess.run([EDGECTL_BIN, "geo", *a, "--edge", e.admin_base, "--token", ADMIN_TOKEN],
                                    capture_output=True, text=True, timeout=20)
    out = run(DE, "--regions", "US,CA")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "country DE" in out.stdout and "GeoLite2-Country" in out.stdout
    assert "deny: DE is not in the claim CA,US" in out.stdout
    out = run(PROXY, "--forwarded-for", US, "--regions", "US")
    assert f"client {US} by X-Forwarded-For" in out.stdout and "allow: US is in the claim US" in out.stdout
    out = run("127.0.0.1", "--regions", "US")
    assert "country unknown" in out.stdout and "allow: no country for 127.0.0.1; geo.unknown = allow" in out.stdout
    out = run("not-an-ip")
    assert out.returncode == 1 and "400" in out.stdout
    status, body = e.admin("GET", f"/admin/geo?ip={DE}&regions=DE")
    assert status == 200 and body["decision"] == "allow" and body["country"] == "DE"
    # Every field is documented in docs/admin-openapi.yaml, and every documented one appears.
    import yaml
    from conftest import ROOT
    doc = yaml.safe_load(open(os.path.join(ROOT, "docs", "admin-openapi.yaml")))
    schema = doc["components"]["schemas"]["GeoDecision"]
    assert set(body) == set(schema["properties"])
    assert set(body["database"]) == set(schema["properties"]["database"]["properties"])
    assert set(doc["paths"]["/admin/geo"]["get"]["responses"]) == {"200", "400", "401", "409"}
    assert e.admin("GET", f"/admin/geo?ip={DE}", token="wrong-token-0123456789")[0] == 401
    assert e.admin("GET", f"/admin/geo?ip={DE}&regions=Germany")[0] == 400


def test_edgectl_geo_on_an_edge_without_geo(make_edge):
    e = make_edge(admin={})
    status, body = e.admin("GET", "/admin/geo?ip=127.0.0.1")
    assert status == 409 and "geo is off" in body["error"]


def test_playback_auth_grants_carry_the_licence_regions(tmp_path_factory, workdir, geo_db):
    from conftest import Edge, package_demo, start_playback_auth
    from test_playback_auth import grant
    d = tmp_path_factory.mktemp("geo-pa")
    tracks = package_demo(d, 1, 6, regions="US,CA")
    e = Edge(workdir, origins=[f"file://{d}/origin"], geo={"database": geo_db, "require_claim": True})
    auth, url = start_playback_auth(d, e.base)
    try:
        status, g = grant(url, tracks[0], country="US")
        assert status == 200 and "~data=geo=CA,US~" in g["token"], g
        path = f"{g['base_url']}/audio/{tracks[0]}/manifest.json?{g['token_name']}={g['token']}"
        assert curl(path, "--interface", US)[0] == 200
        assert curl(path, "--interface", DE)[0] == 403, "a URL granted in the US does not play in Germany"
        assert grant(url, tracks[0], country="DE")[0] == 403, "playback-auth refuses the grant itself too"
    finally:
        auth.terminate()
        auth.wait(timeout=20)
        e.stop()
