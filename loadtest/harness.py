"""Small helpers the benchmark scripts share."""
import socket
import time


_ports_handed_out = set()


def free_port():
    """A port nothing listens on, never the same one twice in this process: two bind-to-0 probes in a
    row may return the same port, and an edge given it for both listen and listen_tls would split
    connections between its cleartext and TLS listeners (SO_REUSEPORT). The edge now refuses such a
    config; this keeps the tests from asking for one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")
