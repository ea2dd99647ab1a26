#!/usr/bin/env bash
# Policy CI: opa fmt, opa check --strict, opa test with coverage >= MIN_COVERAGE (default 90),
# and the committed Wasm build (services/policy_bundle) must match a fresh build of the sources.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
opa="${OPA:-$root/deploy/.state/bin/opa}"
py="${PY:-$root/.venv/bin/python}"
min="${MIN_COVERAGE:-90}"
"$opa" fmt --fail -l "$here" >/dev/null || { echo "policies: not opa-fmt'ed (run: $opa fmt -w policies/)" >&2; exit 1; }
"$opa" check --strict "$here"
"$opa" test "$here" >/dev/null || { "$opa" test "$here" -v | tail -40; exit 1; }
"$opa" test "$here" --coverage --format json | "$py" -c '
import json, sys
report, minimum = json.load(sys.stdin), float(sys.argv[1])
for name, f in sorted(report.get("files", {}).items()):
    print("  %6.1f%%  %s" % (f.get("coverage", 0), name))
total = report["coverage"]
print(f"policies: tests pass, coverage {total:.1f}% (minimum {minimum:.0f}%)")
sys.exit(0 if total >= minimum else 1)
' "$min"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
OPA="$opa" PY="$py" bash "$here/build.sh" "$tmp" >/dev/null
for f in policy.wasm data.json revision; do
  cmp -s "$tmp/$f" "$root/services/policy_bundle/$f" \
    || { echo "policies: services/policy_bundle/$f is stale; run: make policies" >&2; exit 1; }
done
echo "policies: compiled bundle $(cat "$tmp/revision") is up to date"
