// The host picker's rows, built by the extension's own fleet module from a
// real `riptrace hosts --json` against a real fleet. Run by
// editors/vscode_test.go, which starts the NATS server, an agent (host
// $RIPTRACE_HOST) and a target ($RIPTRACE_PID, executable $RIPTRACE_EXE).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fleet from '../dist/fleet.js';

const { listHosts, buildItems, selection, statusText, FleetError } = fleet;
const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `$${name} is not set: run this through go test ./editors`);
  return v;
};

test('the picker lists the live host and its Go process', async () => {
  const conn = { bin: env('RIPTRACE_BIN'), nats: env('RIPTRACE_NATS') };
  const host = env('RIPTRACE_HOST');
  const pid = Number(env('RIPTRACE_PID'));
  const exe = env('RIPTRACE_EXE');

  const hosts = await listHosts(conn);
  const items = buildItems(hosts);
  const mine = items.filter((it) => it.host === host || it.label === host);
  assert.equal(mine[0].separator, true, `the host's rows start with a separator: ${JSON.stringify(mine)}`);
  assert.equal(mine[0].label, host);
  assert.equal(mine[1].label, `$(server) ${host}`);
  assert.match(mine[1].description, /^\d+ Go process(es)?$/);
  assert.match(mine[1].detail, /^linux\/\w+ · agent \S+ \((ebpf, )?delve\)/);
  assert.equal(mine[1].process, undefined);

  const row = mine.find((it) => it.description?.startsWith(`pid ${pid} · `));
  assert.ok(row, `no row for pid ${pid} among ${JSON.stringify(mine, null, 1)}`);
  assert.equal(row.label, `$(symbol-event) ${exe}`);
  assert.match(row.detail, /^go1\.\d+/);
  assert.ok(row.process, 'a process row adds a process glob');

  assert.deepEqual(selection([mine[1]]), { hosts: [host], processes: [] });
  assert.deepEqual(selection([mine[1], row]), { hosts: [host], processes: [row.process] });

  const st = statusText({ hosts, nats: conn.nats, tracing: 0 });
  const live = hosts.filter((h) => !h.gone).length;
  assert.equal(st.text, `$(radio-tower) RipTrace: ${live} host${live === 1 ? '' : 's'}`);
  assert.match(st.tooltip, new RegExp(`^${host}: \\d+ Go processes$`, 'm'));
  // A session's status names the backend it asked for.
  assert.ok(statusText({ hosts, nats: conn.nats, tracing: 1, backend: 'delve' }).text.endsWith(' · tracing (delve backend)'));
  assert.ok(statusText({ hosts, nats: conn.nats, tracing: 1 }).text.endsWith(' · tracing (auto backend)'));
});

test('an unreachable fleet and a missing binary say what to do', async () => {
  await assert.rejects(listHosts({ bin: env('RIPTRACE_BIN'), nats: env('RIPTRACE_DEAD_NATS') }), (e) => {
    assert.ok(e instanceof FleetError);
    assert.match(e.message, /^riptrace hosts failed: .+/);
    return true;
  });
  await assert.rejects(listHosts({ bin: '/nonexistent/riptrace' }), /not found\. Install riptrace .* or set riptrace\.path/);
  assert.equal(statusText({ error: 'x', nats: 'nats://h:1', tracing: 0 }).text, '$(debug-disconnect) RipTrace: offline');
});
