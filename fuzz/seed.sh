#!/bin/sh
# Seeds both fuzz corpora with the official clients' wire vectors
# (../../shared/vectors), one file per request.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
vectors=${1:-$here/../../shared/vectors}
for target in frame encode; do
    mkdir -p "$here/corpus/$target"
    for f in "$vectors"/*.hex.txt; do
        grep -v '^#' "$f" | while read -r label hex; do
            printf '%s' "$hex" | xxd -r -p > "$here/corpus/$target/$(basename "$f" .hex.txt)-$label"
        done
    done
done
