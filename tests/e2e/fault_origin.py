"""A real HTTP/1.1 origin for the cache tests, with faults on demand. Serves files from a
directory with byte ranges and keep-alive; logs every request; per-path faults:

  slow:<ms>        first byte delayed
  die              head and half the body, then the connection is closed
  wrong-length     Content-Length/Content-Range one byte longer than what is sent, then close
  500              status 500
  reset            the connection is reset without an answer
  etag-slice:<n>   the slice starting at byte n*slice gets another ETag
  ignore-range     200 with the whole body
  hang             never answers
  404              not found

Misbehaving origins (a broken or lying origin the edge must survive without caching wrong bytes):

  size:<n>         206 whose Content-Range claims a complete length of n
  size200:<n>      200 (Range ignored) with Content-Length n
  chunked          206 in the chunked coding (correct bytes: the edge must decode it)
  chunked+cl       206 in the chunked coding with a Content-Length too (ambiguous framing)
  gzip             206 with Content-Encoding: gzip
  early-hints      103 Early Hints, then the real 206
  extra-bytes      a correct 206 followed by 100 bytes more than announced
  two-responses    a correct 206 and a second response in the same packet
  split-head       the head sent a few bytes at a time
  huge-head        a head larger than the edge accepts
  slowloris        the head, then one body byte every 100 ms
  not-http         a status line that is not HTTP
"""
import os
import re
import socket
import socketserver
import struct
import threading
import time


class Origin:
    """`sigv4=(access_key_id, secret, region)`: a private bucket. Every request must carry an AWS
    Signature Version 4 that botocore's S3 signer (an independent implementation) reproduces from
    the headers it names, else 403 SignatureDoesNotMatch as S3 answers. `host`: where to listen
    (an IPv6 literal too)."""
    def __init__(self, root, slice_bytes=65536, sigv4=None, host="127.0.0.1", port=0):
        self.root = root
        self.sigv4 = sigv4
        self.refused = []   # (path, why) of requests refused for their signature
        self.slice_bytes = slice_bytes
        self.faults = {}
        self.delay_ms = 0   # every answer delayed: an object store far away
        self.log = []   # (path, range header, all headers)
        self.lock = threading.Lock()
        origin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                origin.serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.host = host
        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://{'[' + self.host + ']' if ':' in self.host else self.host}:{self.port}"

    def signature_problem(self, method, target, headers):
        """None when the request's SigV4 signature verifies, else why not."""
        import hmac
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", headers.get("authorization", ""))
        if not m:
            return "no SigV4 Authorization"
        key_id, day, region, service, signed, signature = m.groups()
        if key_id != self.sigv4[0] or region != self.sigv4[2] or service != "s3":
            return f"wrong scope {key_id}/{region}/{service}"
        amz_date = headers.get("x-amz-date", "")
        if not amz_date.startswith(day) or abs(time.mktime(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")) - time.mktime(time.gmtime())) > 900:
            return f"x-amz-date {amz_date} outside 15 minutes of now"
        names = signed.split(";")
        if not {"host", "x-amz-date", "x-amz-content-sha256", "range"} <= set(names):
            return f"signed headers {signed} leave out host, range or x-amz-*"
        req = AWSRequest(method=method, url=f"http://{headers['host']}{target}", headers={n: headers[n] for n in names})
        req.context["timestamp"] = amz_date
        signer = S3SigV4Auth(Credentials(key_id, self.sigv4[1]), service, region)
        expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        return None if hmac.compare_digest(expected, signature) else "SignatureDoesNotMatch"

    def requests_for(self, path):
        with self.lock:
            return [r for r in self.log if r[0] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def serve(self, sock):
        buf = b""
        sock.settimeout(30)
        while True:
            while b"\r\n\r\n" not in buf:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                headers[k.strip().lower()] = v.strip()
            path = target.split("?")[0]
            with self.lock:
                self.log.append((path, headers.get("range"), headers, target))
            if not self.respond(sock, method, path, headers, target):
                return

    def respond(self, sock, method, path, headers, target=None):
        if self.sigv4:
            why = self.signature_problem(method, target or path, headers)
            if why:
                with self.lock:
                    self.refused.append((path, why))
                body = f"<Error><Code>SignatureDoesNotMatch</Code><Message>{why}</Message></Error>".encode()
                sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                return True
        fault = self.faults.get(path, "")
        if fault == "not-http":
            sock.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            return False
        if fault == "huge-head":
            sock.sendall(b"HTTP/1.1 206 Partial Content\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(64)) + b"\r\n")
            return False
        if fault == "hang":
            time.sleep(60)
            return False
        if fault == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if fault.startswith("slow:"):
            time.sleep(int(fault[5:]) / 1000)
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        full = self.root + path
        if fault == "404" or not os.path.isfile(full):
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
            return True
        if fault == "500":
            sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nerror")
            return True
        data = open(full, "rb").read()
        st = os.stat(full)
        etag = '"%x-%x"' % (int(st.st_mtime), len(data))
        rng = headers.get("range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if fault.startswith("etag-slice:") and m and int(m.group(1)) == int(fault[11:]) * self.slice_bytes:
            etag = '"changed"'
        if m and fault != "ignore-range":
            first = int(m.group(1))
            last = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if first >= len(data):
                sock.sendall(f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len(data)}\r\nContent-Length: 0\r\n\r\n".encode())
                return True
            body = data[first:last + 1]
            length = len(body) + (1 if fault == "wrong-length" else 0)
            head = (f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{first + length - 1}/{len(data) + (1 if fault == 'wrong-length' else 0)}\r\n"
                    f"Content-Length: {length}\r\nETag: {etag}\r\nLast-Modified: Sat, 21 Nov 2026 00:00:00 GMT\r\n"
                    f"Content-Type: application/octet-stream\r\n\r\n")
        else:
            body = data
            head = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nETag: {etag}\r\n"
                    f"Last-Modified: Sat, 21 Nov 2026 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\n\r\n")
        if method == "HEAD":
            body = b""
        if m and fault.startswith("size:"):
            first = int(m.group(1))
            head = (f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{first + len(body) - 1}/{fault[5:]}\r\n"
                    f"Content-Length: {len(body)}\r\nETag: {etag}\r\n\r\n")
        if fault.startswith("size200:"):
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {fault[8:]}\r\nETag: {etag}\r\n\r\n"
        if fault in ("chunked", "chunked+cl", "gzip", "early-hints", "extra-bytes", "two-responses", "split-head", "slowloris"):
            head = head.replace("Content-Type", "Content-Encoding: gzip\r\nContent-Type") if fault == "gzip" else head
        if fault in ("chunked", "chunked+cl"):
            lines = [l for l in head.split("\r\n") if l and (fault == "chunked+cl" or not l.startswith("Content-Length"))]
            pieces = [body[i:i + 1000] for i in range(0, len(body), 1000)]
            coded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: 1\r\n\r\n"
            sock.sendall(("\r\n".join(lines) + "\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + coded)
            return True
        if fault == "early-hints":
            sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </audio/x>; rel=preload\r\n\r\n")
            time.sleep(0.05)
        if fault == "extra-bytes":
            sock.sendall(head.encode() + body + b"\xAA" * 100)
            return False
        if fault == "two-responses":
            sock.sendall(head.encode() + body + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            return True
        if fault == "split-head":
            raw_head = head.encode()
            for i in range(0, len(raw_head), 7):
                sock.sendall(raw_head[i:i + 7])
                time.sleep(0.002)
            sock.sendall(body)
            return True
        if fault == "slowloris":
            sock.sendall(head.encode())
            for i in range(len(body)):
                try:
                    sock.sendall(body[i:i + 1])
                except OSError:
                    return False
                time.sleep(0.1)
            return False
        if fault == "die":
            sock.sendall(head.encode() + body[:len(body) // 2])
            return False
        sock.sendall(head.encode() + body)
        return fault != "wrong-length"
