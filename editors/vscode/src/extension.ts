// The RipTrace extension: thin glue that runs `riptrace dap` as the debug
// adapter of the "riptrace" debug type, `riptrace lsp` as the language server
// of Go files, and `riptrace hosts --json` for the host picker and the status
// bar; the hits view and the timeline panel (hits.ts) show what the adapter
// keeps of a session's hits. Everything else lives in the riptrace binary.

import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, State } from 'vscode-languageclient/node';
import { buildItems, Connection, HostEntry, listHosts, PickItem, selection, statusText } from './fleet';
import { debugType, HitsView, openHit, Stalls, TimelinePanel, tracingSession } from './hits';
const statusEvery = 15_000; // ms between two looks at the fleet for the status bar

let client: LanguageClient | undefined;

/** The last answer of the host picker, so that the processes it picked reach the configuration too. */
let lastPick: { value: string; processes: string[] } | undefined;

function settings(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('riptrace');
}

function connection(): Connection {
  return { bin: settings().get<string>('path') || 'riptrace', nats: settings().get<string>('nats') || undefined };
}

/** The language server's settings (lsp.Settings): only those the user set, so the server's defaults hold for the rest. */
function serverSettings(): Record<string, unknown> {
  const s = settings();
  const out: Record<string, unknown> = {};
  for (const key of ['nats', 'credentials', 'inboxPrefix', 'nkey', 'user', 'password', 'token', 'tls', 'prefix', 'hosts', 'processes', 'group', 'history', 'maxRecent', 'backend', 'revision', 'recording']) {
    const v = s.get(key);
    if (v === undefined || v === null || v === '' || v === 0 || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && Object.keys(v as object).length === 0)) {
      continue;
    }
    out[key] = v;
  }
  return out;
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const out = vscode.window.createOutputChannel('RipTrace');
  context.subscriptions.push(out);

  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory(debugType, new AdapterFactory()),
    vscode.debug.registerDebugConfigurationProvider(debugType, new ConfigurationProvider()),
    // Listed under Run and Debug even without a launch.json.
    vscode.debug.registerDebugConfigurationProvider(debugType, { provideDebugConfigurations: () => [attachToFleet()] }, vscode.DebugConfigurationProviderTriggerKind.Dynamic),
    vscode.commands.registerCommand('riptrace.pickHosts', pickHosts),
  );

  const status = new StatusItem();
  context.subscriptions.push(status);

  const hits = new HitsView();
  const stalls = new Stalls();
  const timeline = new TimelinePanel();
  // The window riptrace.hitsViewLatency measures: since its last run.
  let measured = { since: Date.now(), counted: 0 };
  context.subscriptions.push(
    hits,
    timeline,
    vscode.window.createTreeView('riptrace.hits', { treeDataProvider: hits, showCollapseAll: true }),
    vscode.commands.registerCommand('riptrace.openHit', async (args?: { seq?: number; part?: number; breakpoint?: number }) => {
      const ed = vscode.window.activeTextEditor;
      const what = args ?? (ed ? { path: ed.document.uri.fsPath, line: ed.selection.active.line + 1 } : {});
      try {
        out.appendLine(`riptrace.openHit ${JSON.stringify(what)}: snapshot of ${await openHit(what)}`);
      } catch (e) {
        out.appendLine(`riptrace.openHit ${JSON.stringify(what)}: ${(e as Error).message}`);
        vscode.window.showWarningMessage(`RipTrace: ${(e as Error).message}`);
      }
    }),
    vscode.commands.registerCommand('riptrace.showTimeline', () => timeline.show()),
    stalls,
    // Since the last time it was run: how long hits took from the stream
    // to the hits view, and how often the extension host stalled.
    vscode.commands.registerCommand('riptrace.hitsViewLatency', () => {
      const st = hits.latency.stats();
      hits.latency.reset();
      const host = stalls.take();
      const now = Date.now();
      const rate = Math.round(((hits.counted - measured.counted) * 1000) / Math.max(now - measured.since, 1));
      measured = { since: now, counted: hits.counted };
      const msg =
        `RipTrace hits view: ${rate} hits/s counted, ${st.n} hits shown, from the stream to the view p50 ${st.p50} ms, p99 ${st.p99} ms, max ${st.max} ms; ` +
        `extension host long tasks over 100 ms: ${host.longTasks} (the loop at most ${host.worstBusy} ms busy between two 50 ms ticks); timer late over 100 ms: ${host.late} (worst ${host.worstLate} ms)`;
      out.appendLine(msg);
      vscode.window.showInformationMessage(msg);
      return { ...st, stalls: host };
    }),
  );

  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('riptrace')) {
        status.refresh();
        await stopClient();
        startClient(out);
      }
    }),
  );
  startClient(out);
}

export async function deactivate(): Promise<void> {
  await stopClient();
}

// --- debug adapter

class AdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  createDebugAdapterDescriptor(session: vscode.DebugSession): vscode.DebugAdapterDescriptor {
    const conn = connection();
    const env: Record<string, string> = {};
    if (conn.nats && !session.configuration.nats) {
      env.RIPTRACE_NATS = conn.nats;
    }
    return new vscode.DebugAdapterExecutable(conn.bin, ['dap'], { env });
  }
}

/** The configuration F5 starts without a launch.json: hosts picked from a list. */
function attachToFleet(): vscode.DebugConfiguration {
  return { type: debugType, request: 'attach', name: 'RipTrace: attach to fleet', hosts: '${command:riptrace.pickHosts}' };
}

class ConfigurationProvider implements vscode.DebugConfigurationProvider {
  // F5 without a launch.json: attach to the hosts the user picks.
  resolveDebugConfiguration(folder: vscode.WorkspaceFolder | undefined, config: vscode.DebugConfiguration): vscode.DebugConfiguration {
    if (!config.type && !config.request && !config.name) {
      config = attachToFleet();
    }
    if (!config.cwd && folder) {
      config.cwd = folder.uri.fsPath;
    }
    const nats = settings().get<string>('nats');
    if (!config.nats && nats) {
      config.nats = nats;
    }
    return config;
  }

  // The picker answers one string (VS Code substitutes only strings): turn
  // it back into the host list, and add the processes it picked.
  resolveDebugConfigurationWithSubstitutedVariables(_folder: vscode.WorkspaceFolder | undefined, config: vscode.DebugConfiguration): vscode.DebugConfiguration {
    if (lastPick && config.hosts === lastPick.value) {
      config.hosts = lastPick.value.split(',');
      if (!config.processes && lastPick.processes.length > 0) {
        config.processes = lastPick.processes;
      }
    }
    return config;
  }
}

// --- host picker

interface Row extends vscode.QuickPickItem {
  item: PickItem;
}

/**
 * riptrace.pickHosts: a multi-select list of the live hosts and their Go
 * processes. Answers the picked host names joined by commas (undefined, which
 * cancels the launch, when nothing is picked).
 */
async function pickHosts(): Promise<string | undefined> {
  const qp = vscode.window.createQuickPick<Row>();
  qp.canSelectMany = true;
  qp.matchOnDescription = true;
  qp.matchOnDetail = true;
  qp.title = 'RipTrace: hosts to trace on';
  qp.placeholder = 'Pick hosts, or single processes of a host';
  qp.busy = true;
  qp.show();
  let hosts: HostEntry[];
  try {
    hosts = await listHosts(connection());
  } catch (e) {
    qp.hide();
    vscode.window.showErrorMessage(`RipTrace: ${(e as Error).message}`);
    return undefined;
  }
  const items = buildItems(hosts);
  if (!items.some((it) => it.host)) {
    qp.hide();
    vscode.window.showWarningMessage(`RipTrace: no live agents on ${connection().nats ?? 'the default NATS server'}: start one with \`riptrace agent\`.`);
    return undefined;
  }
  qp.items = items.map((item) =>
    item.separator ? { label: item.label, kind: vscode.QuickPickItemKind.Separator, item } : { label: item.label, description: item.description, detail: item.detail, item },
  );
  qp.busy = false;
  const picked = await new Promise<readonly Row[] | undefined>((resolve) => {
    qp.onDidAccept(() => resolve(qp.selectedItems));
    qp.onDidHide(() => resolve(undefined));
  });
  qp.dispose();
  if (!picked || picked.length === 0) {
    return undefined;
  }
  const sel = selection(picked.map((r) => r.item));
  lastPick = { value: sel.hosts.join(','), processes: sel.processes };
  return lastPick.value;
}

// --- language client

function startClient(out: vscode.OutputChannel): void {
  const conn = connection();
  const serverOptions: ServerOptions = { command: conn.bin, args: ['lsp'] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file', language: 'go' }],
    initializationOptions: serverSettings(),
    outputChannel: out,
    middleware: {
      // From the command palette the server's commands come without
      // arguments: give them the active editor's document and line.
      executeCommand: async (command, args, next) => {
        // A click on a code lens during a debug session opens the line's
        // latest hit as a snapshot; without a session, or a breakpoint on
        // the line, the server shows the line's hits.
        if (command === 'riptrace.showHits' && args.length === 2 && tracingSession()) {
          try {
            await openHit({ path: vscode.Uri.parse(String(args[0])).fsPath, line: Number(args[1]) + 1 });
            return undefined;
          } catch {
            // Fall through to the server's command.
          }
        }
        const ed = vscode.window.activeTextEditor;
        if (args.length === 0 && ed && command !== 'riptrace.clearHits') {
          args = [ed.document.uri.toString(), ed.selection.active.line];
        } else if (args.length === 0 && ed && command === 'riptrace.clearHits') {
          args = [ed.document.uri.toString()];
        }
        return next(command, args);
      },
    },
  };
  client = new LanguageClient('riptrace', 'RipTrace', serverOptions, clientOptions);
  client.start().catch((e: Error) => {
    vscode.window.showErrorMessage(`RipTrace: cannot start \`${conn.bin} lsp\` (${e.message}): install riptrace or set riptrace.path.`);
  });
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  if (c && c.state !== State.Stopped) {
    await c.stop().catch(() => undefined);
  }
}

// --- status bar

/** The status bar item: connected or not, how many hosts, and whether a session traces. */
class StatusItem implements vscode.Disposable {
  private item = vscode.window.createStatusBarItem('riptrace.status', vscode.StatusBarAlignment.Left, 10);
  private timer: NodeJS.Timeout;
  private subs: vscode.Disposable[] = [];
  private running = false;

  constructor() {
    this.item.name = 'RipTrace';
    this.item.command = 'riptrace.pickHosts';
    this.item.text = '$(sync~spin) RipTrace';
    this.item.show();
    this.timer = setInterval(() => this.refresh(), statusEvery);
    this.subs.push(
      vscode.debug.onDidStartDebugSession(() => this.refresh()),
      vscode.debug.onDidTerminateDebugSession(() => this.refresh()),
    );
    this.refresh();
  }

  async refresh(): Promise<void> {
    if (this.running) {
      return;
    }
    this.running = true;
    const conn = connection();
    const nats = conn.nats ?? process.env.RIPTRACE_NATS ?? 'nats://127.0.0.1:4222';
    const session = vscode.debug.activeDebugSession;
    const tracing = session?.type === debugType ? 1 : 0;
    const backend = session?.configuration.backend;
    try {
      const hosts = await listHosts(conn);
      Object.assign(this.item, statusText({ hosts, nats, tracing, backend }));
    } catch (e) {
      Object.assign(this.item, statusText({ error: (e as Error).message, nats, tracing, backend }));
    } finally {
      this.running = false;
    }
  }

  dispose(): void {
    clearInterval(this.timer);
    this.subs.forEach((s) => s.dispose());
    this.item.dispose();
  }
}
