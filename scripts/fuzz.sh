#!/bin/sh
# Runs every fuzz target in the tree for FUZZTIME each (default 20s).
# Targets are found from the source, so a new FuzzX is never forgotten.
# `go test -fuzz` takes exactly one target per call, hence the loop.
set -eu
cd "$(dirname "$0")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-20s}"
found=0
for file in $(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort); do
	dir=$(dirname "$file")
	for fn in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		found=$((found + 1))
		echo "== $dir $fn"
		"$GO" test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$dir/"
	done
done
if [ "$found" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $found targets passed"
