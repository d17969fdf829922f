#!/usr/bin/env bash
# Runs every fuzz target of cairn for FUZZTIME each (default 10m),
# JOBS targets at a time (default 1), and writes one row per target to
# $FUZZ_OUT (default fuzz.tsv): package, target, seconds, executions,
# corpus entries found, and ok or FAIL. FUZZ_ONLY, a grep -E pattern
# over "package target", picks some; FUZZMINIMIZETIME (default 5s) bounds
# the minimizing of each new corpus entry. A crash leaves its input under
# the package's testdata/fuzz/TARGET, as go test does: commit it with the
# fix, and it runs as a regression test from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10m}
jobs=${JOBS:-1}
minimizetime=${FUZZMINIMIZETIME:-5s}
out=${FUZZ_OUT:-fuzz.tsv}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# package<TAB>target for every func FuzzXxx in a _test.go file.
targets() {
	git ls-files '*_test.go' | xargs grep -H '^func Fuzz[A-Za-z0-9_]*(' |
		sed -E 's|^(.*)/[^/]*_test.go:func (Fuzz[A-Za-z0-9_]*)\(.*|./\1\t\2|' | sort -u
}

one() {
	local pkg=$1 name=$2 log="$logs/${1//\//_}.$2.log" start end rc=0
	start=$(date +%s)
	# Go minimizes every new corpus entry for up to a minute by default,
	# executions it does not count: on whole-image inputs (ext4's) that
	# was most of the run. A few seconds keeps entries small enough.
	go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" -parallel 1 "$pkg" >"$log" 2>&1 || rc=$?
	end=$(date +%s)
	# The last progress line: "fuzz: elapsed: 10m0s, execs: 123 (205/sec), new interesting: 4 (total: 60)".
	local last execs found
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -1 || true)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	found=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	if [ "$rc" -eq 0 ]; then status=ok; else status=FAIL; sed 's/^/    /' "$log" | tail -20 >&2; fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$pkg" "$name" "$((end - start))" "${execs:-0}" "${found:-0}" "$status"
}

printf 'package\ttarget\tseconds\texecs\tnew\tresult\n' >"$out"
export -f one
export fuzztime minimizetime logs
targets | grep -E -- "${FUZZ_ONLY:-.}" | xargs -P "$jobs" -L 1 bash -c 'one "$0" "$1"' | tee -a "$out"
! grep -q 'FAIL$' "$out"
