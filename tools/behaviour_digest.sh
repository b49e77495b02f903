#!/usr/bin/env bash
# Prints one SHA-256 per public behaviour artefact: regenerated golden vectors, the scenario
# trace, and seeded simulator traces (one per scenario, including the gateway clusters).
# Run it at two commits: identical output means behaviour is bit-identical.
#   tools/behaviour_digest.sh [JUMPVPN_COMMAND]      (default: .venv/bin/jumpvpn)
set -euo pipefail
jv="${1:-.venv/bin/jumpvpn}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$jv" vectors generate --out "$out/vectors" >/dev/null
sha256sum "$out"/vectors/*.jsonl | sed "s|$out/||"
"$jv" scenarios --trace "$out/scenarios-trace.jsonl" >/dev/null
sha256sum "$out/scenarios-trace.jsonl" | sed "s|$out/||"
for scenario in loss-spike nat-churn replay split-brain partial-cluster flapping; do
  "$jv" simulate --scenario "$scenario" --sessions 40 --duration 120s --seed 7 \
    --out "$out/sim-$scenario" --no-plots >/dev/null 2>&1
  sha256sum "$out/sim-$scenario/trace.jsonl" "$out/sim-$scenario/sessions.csv" | sed "s|$out/||"
done
