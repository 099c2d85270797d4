// Drives the built `riptrace dap` with VS Code's own DebugClient
// (@vscode/debugadapter-testsupport): attach → setBreakpoints (a logpoint)
// → a verified breakpoint event → an output event from a real hit →
// disconnect. dap/vscode_test.go starts NATS, an agent and the target and
// passes them in the environment; run it through `go test ./dap -run VSCode`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import testsupport from '@vscode/debugadapter-testsupport';

const { DebugClient } = testsupport;

function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run this through go test ./dap -run VSCode`);
  }
  return v;
}

// nextEvent resolves with the first event named name for which ok is true.
function nextEvent(dc, name, ok, what, timeout = 30000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      dc.removeListener(name, on);
      reject(new Error(`no ${name} event ${what} within ${timeout} ms`));
    }, timeout);
    function on(e) {
      if (ok(e)) {
        clearTimeout(timer);
        dc.removeListener(name, on);
        resolve(e);
      }
    }
    dc.on(name, on);
  });
}

test('attach, set a logpoint, see a real hit, disconnect', async () => {
  const bin = env('RIPTRACE_BIN');
  const src = env('RIPTRACE_SOURCE');
  const line = Number(env('RIPTRACE_LINE'));
  const exe = env('RIPTRACE_PROCESS');
  const dc = new DebugClient(bin, 'dap', 'riptrace', { stdio: ['pipe', 'pipe', 'pipe'] }, true);
  dc.defaultTimeout = 30000;
  await dc.start();
  try {
    const init = await dc.initializeRequest();
    assert.equal(init.body.supportsConfigurationDoneRequest, true);
    assert.equal(init.body.supportsLogPoints, true);
    assert.equal(init.body.supportsConditionalBreakpoints, true);

    const initialized = dc.waitForEvent('initialized');
    await dc.attachRequest({
      type: 'riptrace', request: 'attach', name: 'vscodetest',
      nats: env('RIPTRACE_NATS_URL'), processes: [exe], cwd: env('RIPTRACE_CWD'), maxHitsPerSecond: 100,
    });
    await initialized;

    // Listen before setting, so nothing is missed.
    const verified = nextEvent(dc, 'breakpoint', (e) => e.body.breakpoint.verified, 'that verifies the logpoint');
    const hit = nextEvent(dc, 'output', (e) => e.body.data !== undefined && e.body.line === line, `from a hit on line ${line}`);
    const set = await dc.setBreakpointsRequest({ source: { path: src }, breakpoints: [{ line, logMessage: 'vscode saw {it.ID} n={n}' }] });
    assert.equal(set.body.breakpoints.length, 1);
    assert.equal(set.body.breakpoints[0].verified, false, 'answered at once, pending');
    await dc.configurationDoneRequest();

    const bp = await verified;
    // The message names the backend that serves the breakpoint.
    assert.match(bp.body.breakpoint.message, new RegExp(`^installed on 1 of 1 processes \\(\\S+ ${exe}\\[\\d+\\] via (ebpf|delve)\\)$`));
    const out = await hit;
    assert.match(out.body.output, /^vscode saw (book|lamp|pen) n=\d+\n$/);
    assert.equal(out.body.source.path, src);
    assert.equal(out.body.data.process.exe, exe);

    await dc.disconnectRequest({});
  } finally {
    dc.stopAdapter();
  }
});
