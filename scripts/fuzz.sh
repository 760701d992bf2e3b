#!/usr/bin/env bash
# libFuzzer harnesses for every parser that sees outside bytes (Fuzz/Harnesses/*.swift).
#
#   scripts/fuzz.sh build                  build every harness into .build-fuzz/bin
#   scripts/fuzz.sh run NAME|all SECONDS   build, then run one harness (or each in turn) for SECONDS
#   scripts/fuzz.sh run-built NAME SECONDS run one already built harness (several can run at once)
#   scripts/fuzz.sh list                   the harness names
#
# The project's modules are built by SwiftPM in their own scratch directory with coverage and
# AddressSanitizer instrumentation (-sanitize=fuzzer,address), then each harness is linked against
# them. Runs start from the committed seeds (Fuzz/Corpus/NAME) plus what earlier runs found
# (.build-fuzz/corpus/NAME); a crash leaves its input in .build-fuzz/artifacts/NAME and fails the
# run. Leak detection is off: the Swift runtime keeps metadata caches that LeakSanitizer reports.
# Every crash found becomes a unit test (see docs/ARCHITECTURE.md, "Fuzzing").
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
require_swift
SCRATCH=.build-fuzz
B=$SCRATCH/debug
HARNESSES=(http1_request origin_response ranges path_rules edgeauth_token slice_header ogg config)

build() {
    local flags=(-Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address -Xcxx -fsanitize=fuzzer-no-link,address)
    for t in EdgeHTTP EdgeCache EdgeAuthToken EdgeConfig; do
        swift build --scratch-path "$SCRATCH" --target "$t" "${flags[@]}" 2>&1 | grep -E "error:" && { echo "fuzz: building $t failed" >&2; exit 1; }
    done
    mkdir -p "$SCRATCH/bin"
    local common=(-sanitize=fuzzer,address -parse-as-library -O -I "$B/Modules")
    local crypto=(-Xcc "-fmodule-map-file=$B/CEdgeCrypto.build/module.modulemap" -Xcc -ISources/CEdgeCrypto/include)
    local encoding=("$B"/EdgeEncoding.build/*.o)
    for h in "${HARNESSES[@]}"; do
        local extra=()
        case $h in
            http1_request|origin_response|ranges|path_rules) extra=("$B"/EdgeHTTP.build/*.o "${encoding[@]}") ;;
            slice_header) extra=("$B"/EdgeCache.build/*.o "${encoding[@]}") ;;
            edgeauth_token) extra=("${crypto[@]}" "$B"/EdgeAuthToken.build/*.o "$B"/CEdgeCrypto.build/*.o "${encoding[@]}" -lcrypto) ;;
            ogg) extra=(Sources/EdgePackager/Ogg.swift) ;;
            config) extra=(-Xcc "-fmodule-map-file=$B/CTOML.build/module.modulemap" "$B"/EdgeConfig.build/*.o "$B"/TOMLKit.build/*.o
                           $(find "$B/CTOML.build" -name '*.o') "$B"/EdgeHTTP.build/*.o "${encoding[@]}" -lstdc++) ;;
        esac
        if [ "$h" = ogg ]; then common_ogg=("${common[@]}" -module-name FuzzOgg); else common_ogg=("${common[@]}"); fi
        swiftc "${common_ogg[@]}" "Fuzz/Harnesses/$h.swift" "${extra[@]}" -o "$SCRATCH/bin/$h" 2>&1 | grep -v "Cannot export local symbol" | grep -E "error" \
            && { echo "fuzz: linking $h failed" >&2; exit 1; }
        [ -x "$SCRATCH/bin/$h" ] || { echo "fuzz: $h was not built" >&2; exit 1; }
    done
}

run_one() {
    local h=$1 seconds=$2
    mkdir -p "$SCRATCH/corpus/$h" "$SCRATCH/artifacts/$h"
    local log="$SCRATCH/artifacts/$h/last.log"
    # TOMLKit/toml++ keeps about 60 KB per parse that the fuzzer's process never gets back (the
    # edge parses its configuration once), so the configuration harness runs in libFuzzer's fork
    # mode: short-lived children, crashes and out-of-memory still fail the run.
    local mode=()
    [ "$h" = config ] && mode=(-fork=1 -ignore_ooms=0 -ignore_crashes=0 -ignore_timeouts=0)
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
        "$SCRATCH/bin/$h" "${mode[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$SCRATCH/artifacts/$h/" "$SCRATCH/corpus/$h" "Fuzz/Corpus/$h" >"$log" 2>&1
    local rc=$?
    local runs; runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
    [ -n "$runs" ] || runs=$(grep -oE "^#[0-9]+" "$log" | tail -1 | tr -d '#')
    local cov; cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1)
    if [ $rc -ne 0 ]; then
        echo "fuzz: $h FAILED after ${runs:-?} executions ($cov); input and log in $SCRATCH/artifacts/$h/"
        grep -E "ERROR|Fatal error|precondition|SUMMARY" "$log" | head -5
        return 1
    fi
    echo "fuzz: $h ok, ${runs:-?} executions in ${seconds} s ($cov)"
}

case ${1:-} in
    build) build ;;
    run-built)   # run what `build` made, without rebuilding (several runs at once)
        [ $# -eq 3 ] || { echo "usage: scripts/fuzz.sh run-built NAME SECONDS" >&2; exit 2; }
        run_one "$2" "$3" ;;
    list) printf '%s\n' "${HARNESSES[@]}" ;;
    run)
        [ $# -eq 3 ] || { echo "usage: scripts/fuzz.sh run NAME|all SECONDS" >&2; exit 2; }
        build
        failed=0
        if [ "$2" = all ]; then
            for h in "${HARNESSES[@]}"; do run_one "$h" "$3" || failed=1; done
        else
            run_one "$2" "$3" || failed=1
        fi
        exit $failed ;;
    *) echo "usage: scripts/fuzz.sh build | list | run NAME|all SECONDS" >&2; exit 2 ;;
esac
