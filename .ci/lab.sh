#!/usr/bin/env bash
# The namespace lab (docs/lab.md): installs what it needs from Debian, then runs every case.
# Needs root. Bounded: each case has its own timeout; the whole run takes about 4 minutes.
# Sourced by .ci/run (after the venv exists, before the tests): it also exports
# JUMPVPN_REQUIRE_LAB=1, so the lab tests fail instead of skipping.
set -euo pipefail
export JUMPVPN_REQUIRE_LAB=1

if ! command -v nft >/dev/null || ! command -v wireguard-go >/dev/null \
        || ! command -v conntrack >/dev/null || ! command -v wg >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        nftables wireguard-tools wireguard-go iproute2 conntrack >/dev/null
fi

# Cases that fail for a known, filed reason. The run fails if any other case fails, and also
# if one of these passes (then remove it from the list).
KNOWN_FAILING=""

.venv/bin/jumpvpn lab --cleanup
set +e
lab_results="$(mktemp)"
.venv/bin/jumpvpn lab --all --json > "$lab_results"
status=$?
set -e
.venv/bin/python - "$KNOWN_FAILING" "$lab_results" <<'PY'
import json, sys
known = set(sys.argv[1].split())
results = json.load(open(sys.argv[2]))
bad = []
for r in results:
    verdict = "PASS" if r["passed"] else "FAIL"
    print(f"{r['case']:18} {verdict}  {r['seconds']:6.1f}s  {r['detail']}")
    if r["passed"] == (r["case"] in known):
        bad.append(r["case"])
if bad:
    sys.exit(f"lab: unexpected result for {', '.join(bad)} (known failing: {sorted(known)})")
PY
rm -f "$lab_results"
echo "lab: exit status of jumpvpn lab --all was $status (known failures: $KNOWN_FAILING)"
