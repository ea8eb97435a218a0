#!/usr/bin/env bash
# Runs every test of kontti on this machine: installs what the tests need
# (Debian packages), checks formatting and lints, builds, and runs the suite
# with cargo-nextest (one process per test; network tests serially). Run as
# root: the tests create namespaces, mounts and cgroups for real.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --profile ci "$@"
