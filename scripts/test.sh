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
echo "== cargo test"
SLUICE_BIN="$PWD/target/release/sluice" \
SLUICE_PYTHON="$PWD/target/venv/bin/python" \
  cargo test --workspace -- --test-threads=2
