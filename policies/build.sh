#!/usr/bin/env bash
# Compile the Rego policies to one Wasm module for in-process evaluation.
#   policies/build.sh [OUT_DIR]   (default services/policy_bundle)
# Writes OUT_DIR/policy.wasm, OUT_DIR/data.json and OUT_DIR/revision (digest of the sources,
# the same one an OPA server loaded from policies/ reports). The build is committed so that the
# embedded demo needs no Go toolchain; CI rebuilds it and fails if the committed copy is stale.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="${1:-$root/services/policy_bundle}"
opa="${OPA:-$root/deploy/.state/bin/opa}"
py="${PY:-$root/.venv/bin/python}"
[[ -x "$opa" ]] || { echo "policies/build.sh: no opa at $opa (run: bash deploy/opa.sh install)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Relative path from the repo root: OPA embeds source file names in the module, so an absolute
# path would make the build differ between checkouts.
(cd "$root" && "$opa" build -t wasm --ignore '*_test.rego' \
  -e riskgraph/gate/result -e riskgraph/decision/result -e riskgraph/review/result \
  -o "$tmp/bundle.tar.gz" policies)
tar -xzf "$tmp/bundle.tar.gz" -C "$tmp" /policy.wasm /data.json 2>/dev/null \
  || tar -xzf "$tmp/bundle.tar.gz" -C "$tmp" policy.wasm data.json
mkdir -p "$out"
cp "$tmp/policy.wasm" "$out/policy.wasm"
"$py" -c 'import json,sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"), indent=1, sort_keys=True)' "$tmp/data.json" "$out/data.json"
(cd "$root" && "$py" -c 'from services.policy_opa import source_revision; print(source_revision())') > "$out/revision"
echo "compiled policies $(cat "$out/revision") -> $out"
