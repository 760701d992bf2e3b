#!/usr/bin/env bash
# The README's first command: installs what is missing (system packages included), builds,
# creates sample audio and a certificate, starts edge in the background and prints a signed URL
# and a curl command that fetches a byte range over HTTP/2.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
install_system_packages
require_swift
build_release
RUN="$ROOT/run"
mkdir -p "$RUN"
echo "==> sample content in run/origin"
python3 loadtest/make_content.py "$RUN/origin" 5
if [ ! -f "$RUN/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RUN/key.pem" -out "$RUN/cert.pem" -days 365 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
fi
# The repo's edge.conf with the origin pointed at the sample content.
sed -e "s#^urls = .*#urls = [\"file://$RUN/origin\"]#" edge.conf > "$RUN/edge.conf"
.build/release/edge --check --config "$RUN/edge.conf"
if [ -f "$RUN/edge.pid" ] && kill -0 "$(cat "$RUN/edge.pid")" 2>/dev/null; then
    kill "$(cat "$RUN/edge.pid")"; sleep 1
fi
nohup .build/release/edge --config "$RUN/edge.conf" >"$RUN/edge.out" 2>&1 &
echo $! > "$RUN/edge.pid"
for _ in $(seq 50); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done
KEY=$(sed -n 's/^key_hex = "\(.*\)"/\1/p' "$RUN/edge.conf")
URL_PATH=$(.build/release/edgectl sign --key-hex "$KEY" --acl '/audio/t0000/*' --ttl 3600 --path /audio/t0000/160/000.bin)
echo
echo "edge is running (pid $(cat "$RUN/edge.pid"), log run/edge.out, access log run/access.log)"
echo "signed URL:  https://localhost:8443$URL_PATH"
echo "fetch bytes 0-65535 over HTTP/2:"
CMD="curl -s --http2 --cacert run/cert.pem -r 0-65535 -o /dev/null -w '%{http_version} %{http_code} %{size_download} bytes\n' 'https://localhost:8443$URL_PATH'"
echo "  $CMD"
echo -n "  -> "; eval "$CMD"
echo "stop it with: kill \$(cat run/edge.pid)"
