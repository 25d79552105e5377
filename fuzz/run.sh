#!/usr/bin/env bash
# Builds the shim's libFuzzer harnesses (ASan + UBSan) and runs each for FUZZ_SECONDS (default 20)
# from its seed corpus, with its dictionary. Exits non-zero on the first finding; the crashing input
# is kept as build/fuzz/artifacts/<harness>-crash-… (reproduce: build/fuzz/<harness> <that file>).
# New inputs go to a scratch corpus, so the seeds in fuzz/corpus/ stay as committed.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"
out=../build/fuzz
make -s
mkdir -p "$out/artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for name in json pod_index http_answer request; do
  scratch="$(mktemp -d "${TMPDIR:-/tmp}/meshcni-fuzz-$name.XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  echo "fuzz_$name: ${seconds}s"
  "$out/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -dict="$name.dict" -artifact_prefix="$out/artifacts/$name-" -print_final_stats=1 \
    "$scratch" "corpus/$name" 2>"$out/$name.log" || {
    tail -n 60 "$out/$name.log" >&2
    echo "fuzz_$name found a problem: see $out/$name.log and $out/artifacts/" >&2
    exit 1
  }
  grep -E '^stat::number_of_executed_units|^Done' "$out/$name.log" || true
  rm -rf "$scratch"
  trap - EXIT
done
