// The hits view (Run and Debug side bar: breakpoints → processes → recent
// hits) and the timeline panel (the session's hits in execution order
// across services). Both read the adapter's own requests (dap/hits.go):
// riptrace/hits and riptrace/timeline, refreshed when a riptraceHits event
// says something is new; a click asks riptrace/openHit to open the hit as a
// snapshot in Variables and Call Stack.

import { performance } from 'node:perf_hooks';
import * as vscode from 'vscode';

export const debugType = 'riptrace';

/** One hit as the adapter sends it (dap.HitRow). */
export interface HitRow {
  seq: number;
  /** The hit's place in its message: the hits of a batch share its seq. */
  part?: number;
  order: number;
  breakpoint: number;
  host: string;
  pid: number;
  exe: string;
  goroutine: number;
  function: string;
  time: string;
  serverTime: string;
  path?: string;
  line: number;
  values: string;
  message?: string;
  late?: boolean;
  uncertain?: boolean;
  note?: string;
  /** The hit's request: its W3C trace id, or the value the group attribute names. */
  group?: string;
}

interface ProcessHits {
  host: string;
  pid: number;
  exe: string;
  count: number;
  hits: HitRow[];
}

interface BreakpointHits {
  id: number;
  path: string;
  line: number;
  function?: string;
  verified: boolean;
  message: string;
  backend: string;
  count: number;
  processes: ProcessHits[];
}

/** The active RipTrace debug session, if any. */
export function tracingSession(): vscode.DebugSession | undefined {
  const s = vscode.debug.activeDebugSession;
  return s?.type === debugType ? s : undefined;
}

/** The time of a hit as the views show it: 15:04:05.123. */
function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

/** A hit's name: its seq, and its part when it came in a batch (#17.3). */
function hitName(h: HitRow): string {
  return h.part ? `${h.seq}.${h.part}` : String(h.seq);
}

/** What the order of a hit is worth, if it is not to be trusted. */
function orderMark(h: HitRow): string {
  if (h.late) return ' [late]';
  if (h.uncertain) return ' [order uncertain]';
  return '';
}

/**
 * openHit asks the session to open a hit as a snapshot: by its number, or
 * the latest of a breakpoint or of a line. It answers the snapshot's title,
 * or throws with the adapter's message.
 */
export async function openHit(args: { seq?: number; part?: number; breakpoint?: number; path?: string; line?: number }): Promise<string> {
  const s = tracingSession();
  if (!s) {
    throw new Error('no RipTrace debug session: start one (F5) to open hits as snapshots');
  }
  const res = await s.customRequest('riptrace/openHit', args);
  return res?.title ?? '';
}

/**
 * How long a view waits for the answer to one of its requests. A view asks
 * one request at a time; an answer lost, or queued behind minutes of
 * messages on a machine too busy to read them, must not freeze it: past
 * this, the view gives up on it and asks again.
 */
export const requestTimeout = 10_000;

/** ask sends a custom request and rejects if no answer comes within requestTimeout. */
export async function ask(s: vscode.DebugSession, command: string, args?: unknown): Promise<any> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer to ${command} within ${requestTimeout / 1000}s`)), requestTimeout);
  });
  try {
    return await Promise.race([s.customRequest(command, args), late]);
  } finally {
    clearTimeout(timer);
  }
}

type Node = { kind: 'bp'; bp: BreakpointHits } | { kind: 'proc'; bp: BreakpointHits; proc: ProcessHits } | { kind: 'hit'; hit: HitRow };

/** Latencies from a hit reaching the stream to its row in the view, in ms. */
export class Latency {
  private samples: number[] = [];
  private seen = new Set<string>();

  /** note records, for rows not seen before, how long they took to show. */
  note(rows: HitRow[], now: number): void {
    for (const r of rows) {
      if (this.seen.has(hitName(r))) continue;
      this.seen.add(hitName(r));
      const t = Date.parse(r.serverTime);
      if (!Number.isNaN(t)) this.samples.push(now - t);
    }
    if (this.seen.size > 100_000) this.seen.clear();
  }

  stats(): { n: number; p50: number; p99: number; max: number } {
    const s = [...this.samples].sort((a, b) => a - b);
    const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0);
    return { n: s.length, p50: q(0.5), p99: q(0.99), max: s.length ? s[s.length - 1] : 0 };
  }

  reset(): void {
    this.samples = [];
  }
}

/**
 * Stalls of the extension host. A timer every 50 ms notes how late it
 * fires. Late by over 100 ms, the host either ran a task that long (a long
 * task: what freezes lenses, hovers and the views) or the machine gave it
 * no CPU; the event loop's utilization over the same interval tells them
 * apart: a long task kept the loop busy for most of it.
 */
export class Stalls implements vscode.Disposable {
  private last = Date.now();
  private elu = performance.eventLoopUtilization();
  private late100 = 0;
  private worstLate = 0;
  private long100 = 0;
  private worstBusy = 0;
  private timer = setInterval(() => {
    const now = Date.now();
    const elu = performance.eventLoopUtilization();
    const busy = Math.round(elu.active - this.elu.active);
    const late = now - this.last - 50;
    this.last = now;
    this.elu = elu;
    if (late > 100) this.late100++;
    this.worstLate = Math.max(this.worstLate, late);
    if (late > 100 && busy > 100) this.long100++;
    this.worstBusy = Math.max(this.worstBusy, busy);
  }, 50);

  /** take returns the stalls since the last call. */
  take(): { longTasks: number; worstBusy: number; late: number; worstLate: number } {
    const r = { longTasks: this.long100, worstBusy: this.worstBusy, late: this.late100, worstLate: Math.max(this.worstLate, 0) };
    this.long100 = this.worstBusy = this.late100 = this.worstLate = 0;
    return r;
  }

  dispose(): void {
    clearInterval(this.timer);
  }
}

/** The RipTrace hits view. */
export class HitsView implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private bps: BreakpointHits[] = [];
  private timer: NodeJS.Timeout | undefined;
  private fetching = false;
  private again = false;
  readonly latency = new Latency();
  /** The hits the session's breakpoints counted, as of the last fetch. */
  counted = 0;
  private subs: vscode.Disposable[] = [];

  constructor() {
    this.subs.push(
      vscode.debug.onDidReceiveDebugSessionCustomEvent((e) => {
        if (e.session.type === debugType && e.event === 'riptraceHits') this.schedule(100);
      }),
      vscode.debug.onDidChangeActiveDebugSession(() => this.schedule(0)),
      vscode.debug.onDidTerminateDebugSession(() => this.schedule(0)),
      // Breakpoint messages change as agents report: look now and then.
      { dispose: clearInterval.bind(null, setInterval(() => tracingSession() && this.schedule(0), 2000)) },
    );
  }

  /** schedule fetches the view within ms, once however often it is asked. */
  schedule(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.fetch();
    }, ms);
  }

  private async fetch(): Promise<void> {
    if (this.fetching) {
      this.again = true;
      return;
    }
    this.fetching = true;
    try {
      const s = tracingSession();
      if (!s) {
        this.bps = [];
      } else {
        const res = await ask(s, 'riptrace/hits');
        const bps: BreakpointHits[] = res?.breakpoints ?? [];
        const now = Date.now();
        this.latency.note(bps.flatMap((b) => b.processes.flatMap((p) => p.hits)), now);
        this.counted = bps.reduce((n, b) => n + b.count, 0);
        // Redraw only what changed: a redraw under the mouse eats clicks.
        if (JSON.stringify(bps) === JSON.stringify(this.bps)) return;
        this.bps = bps;
      }
      this.changed.fire(undefined);
    } catch {
      // The session ended between the event and the request, or the
      // answer did not come in time: the next event asks again.
    } finally {
      this.fetching = false;
      if (this.again) {
        this.again = false;
        this.schedule(50);
      }
    }
  }

  getChildren(node?: Node): Node[] {
    if (!node) return this.bps.map((bp) => ({ kind: 'bp', bp }));
    if (node.kind === 'bp') return node.bp.processes.map((proc) => ({ kind: 'proc', bp: node.bp, proc }));
    if (node.kind === 'proc') return node.proc.hits.map((hit) => ({ kind: 'hit', hit }));
    return [];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    switch (node.kind) {
      case 'bp': {
        const bp = node.bp;
        const where = bp.function || `${bp.path.split('/').pop()}:${bp.line}`;
        const item = new vscode.TreeItem(where, bp.processes.length ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None);
        item.id = `bp-${bp.id}`;
        // The processes are the rows below: the description keeps the
        // state and the backends that serve it.
        const served = [...new Set([...bp.message.matchAll(/ via (\w+)/g)].map((m) => m[1]))];
        const state = bp.verified ? bp.message.replace(/ \(.*$/, '') + (served.length ? ` · via ${served.join(', ')}` : '') : bp.message;
        item.description = `${bp.count} hit${bp.count === 1 ? '' : 's'} · ${state}`;
        item.tooltip = `Breakpoint ${bp.id} (backend ${bp.backend}): ${bp.message}\nClick to open its latest hit as a snapshot.`;
        item.iconPath = new vscode.ThemeIcon(bp.verified ? 'debug-breakpoint-log' : 'debug-breakpoint-unverified');
        item.command = { command: 'riptrace.openHit', title: 'Open the latest hit', arguments: [{ breakpoint: bp.id }] };
        item.contextValue = 'breakpoint';
        return item;
      }
      case 'proc': {
        const p = node.proc;
        const item = new vscode.TreeItem(`${p.host} ${p.exe.split('/').pop()}[${p.pid}]`, vscode.TreeItemCollapsibleState.Expanded);
        item.id = `bp-${node.bp.id}-${p.host}-${p.pid}`;
        item.description = `${p.count} hit${p.count === 1 ? '' : 's'}`;
        item.iconPath = new vscode.ThemeIcon('server-process');
        return item;
      }
      case 'hit': {
        const h = node.hit;
        const item = new vscode.TreeItem(`#${hitName(h)} ${clock(h.time)}${orderMark(h)}`, vscode.TreeItemCollapsibleState.None);
        item.id = `hit-${h.breakpoint}-${hitName(h)}`;
        item.description = h.message || h.values;
        item.tooltip = `${h.host} ${h.exe}[${h.pid}] g${h.goroutine} ${h.function}\n${h.message ? h.message + '\n' : ''}${h.values}${h.note ? '\n' + h.note : ''}\nClick to open it as a snapshot.`;
        item.command = { command: 'riptrace.openHit', title: 'Open as a snapshot', arguments: [{ seq: h.seq, part: h.part }] };
        item.contextValue = 'hit';
        return item;
      }
    }
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.subs.forEach((s) => s.dispose());
    this.changed.dispose();
  }
}

/**
 * How often the timeline panel asks for new rows, and how many it takes at
 * most each time. Every row crosses the workbench twice (the request's
 * answer, then the message to the webview): at 500 hits a second, taking
 * them all held the workbench up for seconds, the hits view's requests
 * with it. Rows over the bound are skipped, and the panel says how many.
 */
export const timelineEvery = 500;
export const timelineRows = 50;

/** The timeline panel: one webview, rows in execution order. */
export class TimelinePanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private last = 0; // the order of the last row sent to panel
  private timer: NodeJS.Timeout | undefined;
  // One fetch at a time: two asking from the same order would both send
  // their rows, and the panel would show those hits twice. A fetch belongs
  // to the panel it began with: if that panel closed and another opened
  // meanwhile, its rows and its order are dropped, and the new panel asks
  // from the start.
  private fetching: vscode.WebviewPanel | undefined;
  private again = false;
  private subs: vscode.Disposable[] = [];

  constructor() {
    this.subs.push(
      vscode.debug.onDidReceiveDebugSessionCustomEvent((e) => {
        if (e.session.type === debugType && e.event === 'riptraceHits') this.schedule();
      }),
    );
  }

  /** schedule fetches new rows within timelineEvery, if the panel shows. */
  private schedule(): void {
    if (!this.panel?.visible || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.fetch();
    }, timelineEvery);
  }

  show(): void {
    if (this.panel) {
      this.panel.reveal();
      return;
    }
    const panel = vscode.window.createWebviewPanel('riptrace.timeline', 'RipTrace Timeline', vscode.ViewColumn.Beside, { enableScripts: true, retainContextWhenHidden: true });
    this.panel = panel;
    panel.webview.html = timelineHTML();
    this.last = 0;
    panel.onDidDispose(() => {
      if (this.panel === panel) this.panel = undefined;
    });
    // Hidden, it is not refreshed; shown again, it catches up.
    this.panel.onDidChangeViewState((e) => e.webviewPanel.visible && this.schedule());
    this.panel.webview.onDidReceiveMessage(async (m: { seq: number; part?: number; path?: string; line: number }) => {
      try {
        if (m.path) {
          const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(m.path));
          const pos = new vscode.Position(Math.max(m.line - 1, 0), 0);
          await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.One, selection: new vscode.Range(pos, pos) });
        }
        await openHit({ seq: m.seq, part: m.part });
      } catch (e) {
        vscode.window.showWarningMessage(`RipTrace: ${(e as Error).message}`);
      }
    });
    void this.fetch();
  }

  private async fetch(): Promise<void> {
    const panel = this.panel;
    if (!panel) return;
    if (this.fetching === panel) {
      this.again = true;
      return;
    }
    // A fetch for a panel since closed may still wait for its answer: it
    // no longer counts, and this one goes ahead.
    this.fetching = panel;
    try {
      await this.fetchOnce(panel);
    } finally {
      if (this.fetching === panel) this.fetching = undefined;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }
  }

  private async fetchOnce(panel: vscode.WebviewPanel): Promise<void> {
    const s = tracingSession();
    if (!s) return;
    try {
      const since = this.last;
      const res = await ask(s, 'riptrace/timeline', { since, limit: timelineRows });
      // The panel may have closed, or been replaced, while the answer came.
      if (this.panel !== panel) return;
      const rows: HitRow[] = (res?.hits ?? []).filter((r: HitRow) => r.order > this.last);
      if (rows.length === 0) return;
      // Orders are consecutive: a gap is hits the panel did not take.
      const skipped = this.last > 0 ? rows[0].order - this.last - 1 : 0;
      this.last = rows[rows.length - 1].order;
      // postMessage answers false when the webview cannot take it (not
      // loaded yet): the rows are asked for again next time.
      const data = { skipped, rows: rows.map((r) => ({ ...r, name: hitName(r), clock: clock(r.time), mark: orderMark(r).trim(), file: r.path ? `${r.path.split('/').pop()}:${r.line}` : `?:${r.line}` })) };
      if (!(await panel.webview.postMessage(data)) && this.panel === panel) this.last = since;
    } catch {
      // The session ended, or the answer did not come in time: the next
      // event asks again.
    }
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.subs.forEach((s) => s.dispose());
    this.panel?.dispose();
  }
}

function timelineHTML(): string {
  // No remote content: the rows come by postMessage and are set as text.
  return `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline';">
<style>
body { font-family: var(--vscode-editor-font-family); font-size: var(--vscode-editor-font-size); color: var(--vscode-foreground); }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; position: sticky; top: 0; background: var(--vscode-editor-background); }
td, th { padding: 1px 8px; white-space: nowrap; }
td.values { max-width: 70ch; overflow: hidden; text-overflow: ellipsis; }
tr.hit { cursor: pointer; }
tr.hit:hover { background: var(--vscode-list-hoverBackground); }
tr.skipped td { color: var(--vscode-descriptionForeground); font-style: italic; }
tr.request td { color: var(--vscode-descriptionForeground); border-top: 1px solid var(--vscode-panel-border); }
.mark { color: var(--vscode-editorWarning-foreground); }
</style></head><body>
<p id="empty">Hits of this session's breakpoints appear here in the order they ran, across services. Click one to open it as a snapshot.</p>
<table><thead><tr><th>#</th><th>time</th><th>request</th><th>host</th><th>process</th><th>line</th><th>values</th><th></th></tr></thead><tbody id="rows"></tbody></table>
<script>
const vscode = acquireVsCodeApi();
const body = document.getElementById('rows');
// Once hits name requests (the group attribute, or trace ids), a row marks
// where the request changes, as riptrace timeline --group heads its blocks.
let grouped = false;
let group = '';
window.addEventListener('message', (e) => {
  document.getElementById('empty').style.display = 'none';
  if (e.data.skipped > 0) {
    const tr = document.createElement('tr');
    tr.className = 'skipped';
    const td = document.createElement('td');
    td.colSpan = 8;
    td.textContent = '… ' + e.data.skipped + ' hit' + (e.data.skipped === 1 ? '' : 's') + ' ran here that this panel skips: it shows at most ${timelineRows * (1000 / timelineEvery)} a second (the hits view and the debug console count them all)';
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const r of e.data.rows) {
    const g = r.group || '';
    if ((g || grouped) && g !== group) {
      const head = document.createElement('tr');
      head.className = 'request';
      const td = document.createElement('td');
      td.colSpan = 8;
      td.textContent = g ? '── request ' + g + ' ──' : '── no request ──';
      head.appendChild(td);
      body.appendChild(head);
      grouped = true;
      group = g;
    }
    const tr = document.createElement('tr');
    tr.className = 'hit';
    tr.dataset.seq = r.seq;
    for (const [text, cls] of [['#' + r.name, ''], [r.clock, ''], [g, ''], [r.host, ''], [r.exe.split('/').pop() + '[' + r.pid + ']', ''], [r.file, ''], [r.message || r.values, 'values'], [r.mark, 'mark']]) {
      const td = document.createElement('td');
      td.textContent = text;
      td.title = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    tr.addEventListener('click', () => vscode.postMessage({ seq: r.seq, part: r.part, path: r.path, line: r.line }));
    body.appendChild(tr);
  }
  while (body.rows.length > 500) body.deleteRow(0);
});
</script></body></html>`;
}
