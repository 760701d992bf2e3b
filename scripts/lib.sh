# Shared by setup.sh and test.sh: install what is missing, build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYSTEM_PACKAGES=(pkg-config liburing-dev libnghttp2-dev libmimalloc-dev libssl-dev libsqlite3-dev libmaxminddb-dev openssl curl nginx h2o nghttp2-client ffmpeg python3 python3-venv prometheus)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "error: installing system packages needs root: run as root or install sudo" >&2; exit 1
    fi
}

# Only the test suite needs these: headless Chromium opens loadtest's HTML report.
TEST_PACKAGES=(chromium)

install_system_packages() {
    local missing=()
    for p in "${SYSTEM_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing: ${missing[*]}"
        as_root apt-get update -qq
        # nginx and h2o are benchmark and test anchors: keep their packaged services from starting.
        as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    for s in nginx h2o prometheus prometheus-node-exporter; do as_root systemctl disable --now "$s" >/dev/null 2>&1 || true; done
}

require_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH" && break; done
    fi
    command -v swift >/dev/null 2>&1 || { echo "error: a Swift 6 toolchain is required on PATH (swift.org/install)" >&2; exit 1; }
}

python_env() {
    # Test-only Python tools (pytest, Akamai's EdgeAuth signer, hyperframe/hpack for HTTP/2 frames,
    # cryptography to decrypt packaged audio, mmdb-writer for the geo tests' MaxMind DBs, botocore
    # to verify the edge's SigV4-signed origin requests) in a venv.
    local venv="$ROOT/.build/venv"
    if [ ! -x "$venv/bin/pytest" ] || [ ! -f "$venv/.edge-deps-6" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check pytest akamai-edgeauth h2 cryptography pyyaml prometheus-client mmdb-writer netaddr botocore
        touch "$venv/.edge-deps-6"
    fi
    PYTHON="$venv/bin/python"
}

build_release() {
    echo "==> swift build -c release"
    (cd "$ROOT" && swift build -c release 2>&1 | grep -E "error|warning: unre|Compiling edge|Build complete" || true)
    [ -x "$ROOT/.build/release/edge" ] || { echo "error: release build failed" >&2; (cd "$ROOT" && swift build -c release); exit 1; }
}
