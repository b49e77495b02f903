#!/usr/bin/env bash
# From a built wheel, as a new user would: build the sdist and the wheel, install the wheel
# in a fresh virtual environment and run the main verbs from an empty directory (no
# checkout to lean on). Then check that the sdist holds what a packager needs.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

.venv/bin/python -m build --quiet --outdir "$work/dist" . > "$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/*.whl)"
sdist="$(ls "$work"/dist/*.tar.gz)"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet -c "$root/requirements-dev.txt" "${wheel}[sim]"
mkdir "$work/empty"
cd "$work/empty"
jv="$work/venv/bin/jumpvpn"
"$jv" --version
"$jv" scenarios --trace "$work/trace.jsonl" > "$work/scenarios.txt"
tail -1 "$work/scenarios.txt"
"$jv" vectors check
"$jv" explore --depth 4
"$jv" simulate --scenario collapse --sessions 20 --duration 30s --seed 1 --out "$work/sim" \
    --json > "$work/summary.json"
"$work/venv/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); \
assert d['sessions'] == 20 and not d['interrupted'], d; print('simulate --json ok:', \
d['surviving'], 'of', d['sessions'], 'sessions surviving')" "$work/summary.json"
"$work/venv/bin/python" -m jumpvpn_core diagram > /dev/null
# A verb that needs a checkout says so in one line, exit 2.
set +e
"$jv" traceability 2> "$work/err.txt"
status=$?
set -e
[ "$status" -eq 2 ] && grep -q "needs a source checkout" "$work/err.txt" \
    || { echo "traceability outside a checkout: status $status: $(cat "$work/err.txt")"; exit 1; }
[ -z "$(ls -A "$work/empty")" ] || { echo "a verb wrote into the working directory"; exit 1; }
# Nothing checkout-only in the wheel; the specs are in it.
"$work/venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert not any(n.startswith("tools/") for n in names), "tools/ in the wheel"
assert "jumpvpn_core/_specs/vectors/client.jsonl" in names, "specs missing from the wheel"
assert any(n.endswith("licenses/LICENSE") for n in names), "LICENSE missing from the wheel"
PY
tar -tzf "$sdist" > "$work/sdist.txt"
for path in LICENSE README.md specs/transition-table.md specs/vectors/client.jsonl \
        docs/conf.py tests/cli/test_cli_errors.py tools/mutation.py requirements-dev.txt; do
    grep -q "/$path\$" "$work/sdist.txt" || { echo "sdist lacks $path"; exit 1; }
done
echo "wheel smoke: ok ($(basename "$wheel"))"
