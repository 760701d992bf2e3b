#!/usr/bin/env bash
# The README's second command: every test. Builds once (release for the end-to-end suite, debug
# for the unit tests), then runs the unit tests, a short run of every fuzz harness, and the
# end-to-end suite against the real binary.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
install_system_packages "${TEST_PACKAGES[@]}"
require_swift
python_env
echo "==> format (swift-format, .swift-format: lines of at most 120 characters)"
unformatted=$(for f in $(git ls-files 'Sources/*.swift' 'Tests/*.swift' 'Package.swift'); do
    swift-format format --configuration .swift-format "$f" | cmp -s - "$f" || echo "$f"
done)
[ -z "$unformatted" ] || { echo "not formatted (run: swift-format format -i -r Sources Tests):"; echo "$unformatted"; exit 1; }
build_release
echo "==> unit tests (swift test)"
if ! swift build --build-tests >.build/unit-build.log 2>&1; then
    grep -E "error:" .build/unit-build.log | head -30
    echo "the test build failed (.build/unit-build.log)"; exit 1
fi
swift test --skip-build 2>&1 | tee .build/unit-tests.log | grep -E "error|failed|Executed .* tests" | tail -5
grep -E "^simulation:" .build/unit-tests.log || true   # how many seeded runs, and the faults they injected
grep -q "with 0 failures" .build/unit-tests.log && ! grep -q "error:" .build/unit-tests.log || { echo "unit tests failed"; exit 1; }
echo "==> fuzzing: every harness for ${FUZZ_SECONDS:=15} s (scripts/fuzz.sh run all N for longer runs)"
bash scripts/fuzz.sh run all "$FUZZ_SECONDS" || { echo "a fuzz harness failed"; exit 1; }
echo "==> end-to-end tests (pytest tests/e2e) against .build/release/edge"
EDGE_BIN="$ROOT/.build/release/edge" EDGECTL_BIN="$ROOT/.build/release/edgectl" "$PYTHON" -m pytest -q tests/e2e "$@"
