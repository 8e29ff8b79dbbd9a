#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh machine,
# then format check, clippy with -D warnings, and the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (release binary the integration tests run)"
cargo build --release --bin sluice
# Fuzzing: each cargo-fuzz target for a short fixed number of runs, seeded
# with the official clients' vectors. cargo-fuzz needs nightly flags; on a
# stable toolchain RUSTC_BOOTSTRAP=1 lets them pass. When the toolchain
# cannot build the targets, the codec's stable property tests
# (codec/tests/wire_props.rs: random and mutated frames, run by cargo
# test below) stand in. A crash fails the run. `-a` keeps debug assertions
# (and overflow checks) on in the optimized fuzz build, so the codec's
# debug-only checks run against the fuzzer's inputs too.
echo "== fuzz (${FUZZ_RUNS:=20000} runs per target)"
if command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q --locked cargo-fuzz; then
  if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none -O -a >/dev/null 2>&1); then
    (cd fuzz && ./seed.sh && for t in frame encode avro; do
      RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -s none -O -a -- -runs="$FUZZ_RUNS" 2>&1 | tail -n 2
      test "${PIPESTATUS[0]}" -eq 0
    done)
  else
    echo "fuzz targets do not build with this toolchain: skipped (property tests ran instead)"
  fi
else
  echo "cargo-fuzz cannot be installed here: skipped (property tests ran instead)"
fi

echo "== cargo test"
SLUICE_BIN="$PWD/target/release/sluice" \
SLUICE_PYTHON="$PWD/target/venv/bin/python" \
  cargo test --workspace -- --test-threads=2

