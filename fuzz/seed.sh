#!/bin/sh
# Seeds the fuzz corpora with the official clients' wire vectors
# (../../shared/vectors), one file per request; the avro corpus gets each
# schema in schemas/ followed by a 0 byte and the request.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
vectors=${1:-$here/../../shared/vectors}
for target in frame encode avro; do
    mkdir -p "$here/corpus/$target"
done
for f in "$vectors"/*.hex.txt; do
    grep -v '^#' "$f" | while read -r label hex; do
        name=$(basename "$f" .hex.txt)-$label
        for target in frame encode; do
            printf '%s' "$hex" | xxd -r -p > "$here/corpus/$target/$name"
        done
        for schema in "$here"/schemas/*.json; do
            { cat "$schema"; printf '\000'; printf '%s' "$hex" | xxd -r -p; } \
                > "$here/corpus/avro/$(basename "$schema" .json)-$name"
        done
    done
done
