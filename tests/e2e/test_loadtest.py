"""`loadtest replay` against the real edge on loopback: its figures must show what happened to
the server (a stall, a slow origin, refused connections), corrected for coordinated omission."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import LOADTEST_BIN, ROOT, file_bytes, sign, write_files
from fault_origin import Origin

SLICE = 65536


def replay(tmp_path, urls, *args, timeout=60):
    """Runs `loadtest replay`; returns (exit code, parsed JSON report, stdout)."""
    url_file, report = tmp_path / "urls.txt", tmp_path / "report.json"
    url_file.write_text("# replayed in order\n" + "\n".join(urls) + "\n")
    if report.exists():
        report.unlink()
    p = subprocess.run([LOADTEST_BIN, "replay", "--urls", str(url_file), "--json", str(report), *args],
                       capture_output=True, text=True, timeout=timeout)
    data = json.loads(report.read_text()) if report.exists() else None
    return p.returncode, data, p.stdout + p.stderr


def signed(e, path):
    return f"{e.base}{path}?hdnts={sign(acl='/audio/*')}"


def test_replay_reports_every_request_with_the_json_shape(make_edge, tmp_path):
    e = make_edge(server={"workers": 1})
    code, r, out = replay(tmp_path, [signed(e, "/audio/t0001/96/000.bin")], "--connections", "2", "--streams", "4",
                          "--duration", "1.5")
    assert code == 0, out
    assert r["requests"] == r["responses"] > 100 and r["errors"] == 0 and r["statuses"] == {"200": r["responses"]}
    for key in ("ttfb_ms", "ttfb_first_body_byte_ms"):
        for kind in ("corrected", "uncorrected"):
            s = r[key][kind]
            assert s["count"] == r["responses"] and 0 < s["p50"] <= s["p90"] <= s["p99"] <= s["p999"] <= s["max"], r
    assert r["generator_lag_ms"]["count"] > 100 and r["generator_behind"] is False
    assert r["time_to_first_audio_ms"] is None, "replay has no plays: null, not absent"
    assert "ttfb (head), corrected" in out


def test_a_stalled_server_shows_in_the_corrected_percentiles_only(make_edge, tmp_path):
    """SIGSTOP for one second in a three-second open-model run: the requests scheduled during the
    stall waited for it, which the corrected figures show and the uncorrected ones mostly hide."""
    e = make_edge(server={"workers": 1})
    threading.Timer(1.0, lambda: os.kill(e.proc.pid, signal.SIGSTOP)).start()
    threading.Timer(2.0, lambda: os.kill(e.proc.pid, signal.SIGCONT)).start()
    code, r, out = replay(tmp_path, [signed(e, "/audio/t0001/96/000.bin")], "--connections", "4", "--streams", "8",
                          "--rate", "500", "--duration", "3")
    assert code == 0, out
    assert r["requests"] == 1500 and r["responses"] == 1500, out
    corrected, uncorrected = r["ttfb_ms"]["corrected"], r["ttfb_ms"]["uncorrected"]
    assert corrected["p90"] > 300 and corrected["max"] > 800, out
    assert uncorrected["p90"] < 100, out


def test_a_slow_origin_shows_in_the_miss_ttfb_not_the_hits(make_edge, tmp_path):
    origin_dir = str(tmp_path / "origin")
    paths = [f"/audio/slow/{i}.bin" for i in range(4)]
    write_files(origin_dir, {p: 20_000 for p in paths})
    origin = Origin(origin_dir, SLICE)
    try:
        for p in paths:
            origin.faults[p] = "slow:300"
        e = make_edge(server={"workers": 1}, origins=[origin.url],
                      cache={"dir": str(tmp_path / "cache"), "slice_bytes": SLICE})
        code, r, out = replay(tmp_path, [signed(e, p) for p in paths], "--connections", "1", "--streams", "1",
                              "--duration", "2")
        assert code == 0, out
        assert r["cache"]["miss"] == 4 and r["cache"]["hit"] == r["responses"] - 4 > 10, out
        assert r["ttfb_miss_ms"]["p50"] >= 300 and r["ttfb_miss_ms"]["count"] == 4, out
        assert r["ttfb_hit_ms"]["p99"] < 100, out
    finally:
        origin.close()


def test_refused_connections_are_errors_not_silence(tmp_path):
    code, r, out = replay(tmp_path, ["http://127.0.0.1:1/audio/x.bin"], "--connections", "2", "--rate", "100",
                          "--duration", "1")
    assert code == 1, out
    assert r["responses"] == 0 and r["requests"] == 100, out
    assert r["errors_by_class"]["connect"] >= 2 and r["errors_by_class"]["not_sent"] == 100, out
    assert "errors: connect" in out


@pytest.mark.parametrize("urls, args, message", [
    (["http://127.0.0.1:8080/a", "http://127.0.0.2:8080/b"], [], "must name the same server"),
    (["http://edge.example:8080/a"], [], "not an http:// or https:// URL with an IP host"),
    (["ftp://127.0.0.1/a"], [], "not an http:// or https:// URL"),
    (["http://127.0.0.1:8080/a"], ["--connections", "0"], "connections: 1 to 100000"),
    (["http://127.0.0.1:8080/a"], ["--rate=-1"], "rate: 0 to 10000000"),
    (["http://127.0.0.1:8080/a"], ["--duration", "0"], "duration: more than 0"),
    ([], [], "no URL to replay"),
    (["http://127.0.0.1:8080/a"], ["--threads", "9"], "threads: 1 to 256, and at most --connections"),
    (["http://127.0.0.1:8080/a"], ["--header", "Range bytes=0-1"], "expected Name: value"),
    (["http://127.0.0.1:8080/a"], ["--header", "Connection: close"], "a connection-level field HTTP/2 forbids"),
    (["http://127.0.0.1:8080/a"], ["--threshold", "ttfb_p99 < 5"], "unknown figure ttfb_p99"),
])
def test_replay_refuses_bad_arguments_with_a_message(tmp_path, urls, args, message):
    code, report, out = replay(tmp_path, urls, "--duration", "1", *args)
    assert code == 64 and report is None, out
    assert message in out, out


def test_replay_names_an_unreadable_url_file(tmp_path):
    p = subprocess.run([LOADTEST_BIN, "replay", "--urls", str(tmp_path / "missing.txt")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 64 and "cannot read" in p.stderr and "missing.txt" in p.stderr, p.stderr


def test_replay_over_tls_checks_the_certificate(make_edge, workdir, tmp_path):
    e = make_edge(server={"workers": 1})
    url = f"{e.tls_base}/audio/t0001/96/000.bin?hdnts={sign(acl='/audio/*')}"
    code, r, out = replay(tmp_path, [url], "--ca", os.path.join(workdir, "cert.pem"), "--connections", "2",
                          "--duration", "1")
    assert code == 0 and r["responses"] > 50 and r["errors"] == 0, out
    # TLS 1.3: the client opens the records itself; every byte of every response arrives.
    assert r["bytes"] == r["responses"] * len(file_bytes(workdir, "/audio/t0001/96/000.bin")), out
    # Without the certificate trusted: every connection fails its handshake, and says so.
    code, r, out = replay(tmp_path, [url], "--connections", "2", "--rate", "50", "--duration", "1")
    assert code == 1 and r["responses"] == 0 and r["errors_by_class"]["tls"] >= 2, out


def h2_tls12_server(workdir, body):
    """An HTTP/2 server over TLS 1.2 only (Python's ssl and the h2 library), answering every
    request with `body`: the client's OpenSSL path, where it does not open records itself."""
    import socket
    import ssl

    import h2.config
    import h2.connection
    import h2.events
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    ctx.load_cert_chain(os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve(conn):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            h2c.initiate_connection()
            h2c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
            tls.sendall(h2c.data_to_send())
            pending = {}
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                for ev in h2c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        h2c.send_headers(ev.stream_id, [(":status", "200"), ("content-length", str(len(body)))])
                        pending[ev.stream_id] = 0
                    elif isinstance(ev, h2.events.DataReceived):
                        h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                for sid in list(pending):
                    at = pending[sid]
                    while at < len(body):
                        room = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size, len(body) - at)
                        if room <= 0:
                            break
                        h2c.send_data(sid, body[at:at + room], end_stream=at + room == len(body))
                        at += room
                    if at == len(body):
                        del pending[sid]
                    else:
                        pending[sid] = at
                tls.sendall(h2c.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            conn.close()

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def test_replay_over_tls_1_2_reads_through_openssl(workdir, tmp_path):
    body = bytes(range(256)) * 400   # 102,400 bytes: several records per response
    listener = h2_tls12_server(workdir, body)
    try:
        port = listener.getsockname()[1]
        code, r, out = replay(tmp_path, [f"https://127.0.0.1:{port}/any"], "--ca", os.path.join(workdir, "cert.pem"),
                              "--connections", "2", "--streams", "2", "--duration", "1")
        assert code == 0 and r["responses"] > 5 and r["errors"] == 0, out
        assert r["bytes"] == r["responses"] * len(body), out
    finally:
        listener.close()


def test_bench_reads_how_a_server_spreads_its_cpu_over_threads():
    """bench.py's `busiest` column: the busiest thread's share of a process's CPU, read per thread
    from /proc. Here one thread of this process spins while the others wait: the spinner's share is
    most of the process's CPU; two spinners (taking turns on Python's lock) split it."""
    import bench

    def share_while_spinning(threads, seconds):
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                pass

        pids = bench.tree_pids([os.getpid()])
        spinners = [threading.Thread(target=spin) for _ in range(threads)]
        before = bench.thread_ticks(pids)
        for s in spinners:
            s.start()
        time.sleep(seconds)
        after = bench.thread_ticks(pids)   # read while the spinners live: a finished thread leaves /proc
        stop.set()
        for s in spinners:
            s.join()
        return bench.busiest_thread_share(before, after)

    assert os.getpid() in bench.tree_pids([os.getpid()])
    one = share_while_spinning(1, 0.6)
    assert one > 0.7
    two = share_while_spinning(2, 1.2)
    assert two < 0.75
    assert bench.busiest_thread_share({}, {}) == 0.0
    assert bench.busiest_thread_share({(1, "1"): (3, 2), (1, "2"): (5, 0)}, {(1, "1"): (9, 6), (1, "2"): (9, 6)}) == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "257", "two"])
def test_bench_refuses_a_worker_count_the_edge_would_not_take(value):
    """bench.py --edge-workers: out of edge.conf's 1..256 (0 would silently mean the bench
    config's 2, a negative or huge count an edge that never starts), named before anything runs."""
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "loadtest", "bench.py"), "--edge-workers", value],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"{value!r}: a worker count from 1 to 256" in r.stderr
