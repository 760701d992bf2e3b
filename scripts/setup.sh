#!/usr/bin/env bash
# The README's first command: installs what is missing (system packages included), builds,
# packages sample audio (packager demo-content), starts an origin (nginx over the packaged files)
# and edge caching in front of it, and prints a signed URL and a curl command that fetches a
# byte range over HTTP/2.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
install_system_packages
require_swift
build_release
RUN="$ROOT/run"
mkdir -p "$RUN"
if [ ! -f "$RUN/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RUN/key.pem" -out "$RUN/cert.pem" -days 365 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
fi
echo "==> sample content: packager demo-content (3 tracks, 4 bitrates, encrypted)"
.build/release/packager demo-content --tracks 3 --seconds 40 --out "$RUN/origin" --catalog "$RUN/catalog.sqlite" --config edge.conf >"$RUN/tracks.txt"
chmod 755 "$RUN" "$RUN/origin" 2>/dev/null || true

stop_pid() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }
stop_pid "$RUN/edge.pid"; stop_pid "$RUN/origin.pid"; stop_pid "$RUN/auth.pid"; sleep 1

echo "==> origin: nginx on 127.0.0.1:8090 serving run/origin"
cat > "$RUN/origin.conf" <<CONF
worker_processes 1; daemon on; pid $RUN/origin.pid; error_log $RUN/origin.err warn;
events { worker_connections 1024; }
http { access_log $RUN/origin.access.log; sendfile on; keepalive_requests 100000;
  server { listen 127.0.0.1:8090; root $RUN/origin; } }
CONF
nginx -c "$RUN/origin.conf"

echo "==> edge: in front of the origin, cache in run/cache"
sed -e "s#^urls = .*#urls = [\"http://127.0.0.1:8090\"]#" -e "s#^dir = .*#dir = \"$RUN/cache\"#" edge.conf > "$RUN/edge.conf"
.build/release/edge --check --config "$RUN/edge.conf"
nohup .build/release/edge --config "$RUN/edge.conf" >"$RUN/edge.out" 2>&1 &
echo $! > "$RUN/edge.pid"
for _ in $(seq 50); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done

echo "==> playback-auth on 127.0.0.1:8081 (catalog run/catalog.sqlite)"
sed -e "s#^catalog = .*#catalog = \"$RUN/catalog.sqlite\"#" "$RUN/edge.conf" > "$RUN/auth.conf"
nohup .build/release/playback-auth --config "$RUN/auth.conf" >"$RUN/auth.out" 2>&1 &
echo $! > "$RUN/auth.pid"
for _ in $(seq 100); do curl -sf http://127.0.0.1:8081/healthz >/dev/null && break; sleep 0.1; done

TRACK=$(head -1 "$RUN/tracks.txt" | cut -f1)
KEY=$(sed -n 's/^key_hex = "\(.*\)"/\1/p' "$RUN/edge.conf")
URL_PATH=$(.build/release/edgectl sign --key-hex "$KEY" --acl "/audio/$TRACK/*" --ttl 3600 --path "/audio/$TRACK/160.opus")
echo
echo "edge is running (pid $(cat "$RUN/edge.pid"); logs run/edge.out, run/access.log), origin nginx on :8090"
echo "tracks: $(cut -f1 "$RUN/tracks.txt" | tr '\n' ' ')(manifests at /audio/<track>/manifest.json)"
echo "signed URL:  https://localhost:8443$URL_PATH"
echo "fetch bytes 0-65535 over HTTP/2 (twice: a miss filled from the origin, then a hit):"
CMD="curl -s --http2 --cacert run/cert.pem -r 0-65535 -o /dev/null -w '%{http_version} %{http_code} %{size_download} bytes\n' 'https://localhost:8443$URL_PATH'"
echo "  $CMD"
echo -n "  -> "; eval "$CMD"
echo -n "  -> "; eval "${CMD/-o \/dev\/null/-o /dev/null -D -}" | grep -i cache-status | tr -d '\r'
# A demo user's JWT (HS256 with the demo secret in edge.conf; a real identity provider issues these).
SECRET=$(sed -n 's/^jwt_hs256_secret = "\(.*\)"/\1/p' "$RUN/auth.conf")
JWT=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=")
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"sub": "demo-user", "tier": "premium", "country": "US", "exp": int(time.time()) + 86400}).encode())
print((h + b"." + p + b"." + b(hmac.new(sys.argv[1].encode(), h + b"." + p, hashlib.sha256).digest())).decode())
PY
)
echo "$JWT" > "$RUN/demo-user.jwt"
echo
echo "press play (premium demo user; JWT in run/demo-user.jwt):"
echo "  curl -s -H \"Authorization: Bearer \$(cat run/demo-user.jwt)\" -d '{\"track_id\":\"$TRACK\",\"quality\":\"high\"}' http://127.0.0.1:8081/v1/playback"
echo -n "  -> "; curl -s -H "Authorization: Bearer $JWT" -d "{\"track_id\":\"$TRACK\",\"quality\":\"high\"}" http://127.0.0.1:8081/v1/playback | python3 -c 'import json,sys; g=json.load(sys.stdin); print({k: g[k] for k in ("base_url","bitrate_kbps","quality","expires_at")}, "token:", g["token"][:40] + "...")'
echo "stop: kill \$(cat run/edge.pid) \$(cat run/origin.pid) \$(cat run/auth.pid)"
