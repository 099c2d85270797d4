// The fleet as the extension sees it: the hosts that `riptrace hosts --json`
// lists and the picker items built from them. Nothing here imports vscode, so
// the tests run it under plain Node against a real fleet.

import { execFile } from 'node:child_process';

/** A Go process an agent can attach to (fleet.Process). */
export interface Process {
  pid: number;
  exe: string;
  module?: string;
  mainPackage?: string;
  goVersion?: string;
  revision?: string;
  modified?: boolean;
  attached?: boolean;
  tracepoints?: string[];
}

/** One agent (fleet.HostEntry). */
export interface HostEntry {
  name: string;
  gone: boolean;
  lastSeen?: string;
  error?: string;
  profile?: {
    host: { os: string; arch: string; agentVersion?: string; backends?: string[] };
    processes: Process[] | null;
  };
}

/** Where and how to reach the fleet. */
export interface Connection {
  bin: string; // the riptrace binary
  nats?: string; // empty: riptrace's own default ($RIPTRACE_NATS, then nats://127.0.0.1:4222)
}

/** An error running riptrace, with what to do about it. */
export class FleetError extends Error {}

/** Runs `riptrace hosts --json` and returns the agents it lists. */
export function listHosts(conn: Connection, timeoutMs = 15000): Promise<HostEntry[]> {
  const args = ['hosts', '--json'];
  if (conn.nats) {
    args.push('--nats', conn.nats);
  }
  return new Promise((resolve, reject) => {
    execFile(conn.bin, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'ENOENT') {
          reject(new FleetError(`cannot run ${conn.bin}: not found. Install riptrace (go install github.com/riptrace/riptrace/cmd/riptrace@latest) or set riptrace.path to the binary.`));
        } else {
          const why = String(stderr).trim() || err.message;
          reject(new FleetError(`riptrace hosts failed: ${why}`));
        }
        return;
      }
      try {
        resolve(parseHosts(String(stdout)));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** Decodes the output of `riptrace hosts --json`. */
export function parseHosts(text: string): HostEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FleetError(`riptrace hosts --json printed something that is not JSON (${(e as Error).message}): is riptrace.path a riptrace binary?`);
  }
  if (!Array.isArray(v) || v.some((h) => typeof h !== 'object' || h === null || typeof h.name !== 'string')) {
    throw new FleetError('riptrace hosts --json printed an unexpected shape (want a list of {name, gone, profile}): is the extension older than the riptrace binary?');
  }
  return v as HostEntry[];
}

/** One row of the host picker. A separator row carries no choice. */
export interface PickItem {
  label: string;
  description?: string;
  detail?: string;
  separator?: boolean;
  host?: string; // the host this row picks (a process row picks its host too)
  process?: string; // the process glob a process row adds (its main package, or its executable)
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/**
 * Builds the picker's rows: per live host, a separator, the host, then its Go
 * processes. Hosts are sorted by name and processes by pid, so the list reads
 * the same each time. Gone hosts are left out.
 */
export function buildItems(hosts: HostEntry[]): PickItem[] {
  const items: PickItem[] = [];
  const live = hosts.filter((h) => !h.gone && h.profile).sort((a, b) => a.name.localeCompare(b.name));
  for (const h of live) {
    const procs = [...(h.profile!.processes ?? [])].sort((a, b) => a.pid - b.pid);
    const info = h.profile!.host;
    items.push({ label: h.name, separator: true });
    items.push({
      label: `$(server) ${h.name}`,
      description: `${procs.length} Go process${procs.length === 1 ? '' : 'es'}`,
      detail: `${info.os}/${info.arch}` + (info.agentVersion ? ` · agent ${info.agentVersion}` : '') + (info.backends?.length ? ` (${info.backends.join(', ')})` : ''),
      host: h.name,
    });
    for (const p of procs) {
      let rev = p.revision ? p.revision.slice(0, 12) : '';
      if (p.modified) {
        rev += '+dirty';
      }
      const facts = [p.goVersion, rev && `rev ${rev}`, p.attached ? `attached, ${p.tracepoints?.length ?? 0} tracepoints` : ''];
      items.push({
        label: `$(symbol-event) ${basename(p.exe)}`,
        description: `pid ${p.pid} · ${p.mainPackage || p.module || p.exe}`,
        detail: facts.filter(Boolean).join(' · '),
        host: h.name,
        process: p.mainPackage || basename(p.exe),
      });
    }
  }
  return items;
}

/** What a set of picked rows selects: hosts, and the processes if any process row was picked. */
export function selection(picked: PickItem[]): { hosts: string[]; processes: string[] } {
  const hosts: string[] = [];
  const processes: string[] = [];
  for (const it of picked) {
    if (it.host && !hosts.includes(it.host)) {
      hosts.push(it.host);
    }
    if (it.process && !processes.includes(it.process)) {
      processes.push(it.process);
    }
  }
  return { hosts, processes };
}

/** The status bar's text and tooltip for a fleet state. */
export function statusText(state: { hosts?: HostEntry[]; error?: string; nats: string; tracing: number; backend?: string }): { text: string; tooltip: string } {
  if (state.error !== undefined) {
    return { text: '$(debug-disconnect) RipTrace: offline', tooltip: `${state.nats}: ${state.error}` };
  }
  const live = (state.hosts ?? []).filter((h) => !h.gone);
  const procs = live.reduce((n, h) => n + (h.profile?.processes?.length ?? 0), 0);
  let text = `$(radio-tower) RipTrace: ${live.length} host${live.length === 1 ? '' : 's'}`;
  if (state.tracing > 0) {
    // The backend the session asked for; each breakpoint says which serves it.
    text += ` · tracing (${state.backend || 'auto'} backend)`;
  }
  const lines = live.map((h) => `${h.name}: ${h.profile?.processes?.length ?? 0} Go processes`);
  return { text, tooltip: [`Connected to ${state.nats}: ${live.length} hosts, ${procs} Go processes`, ...lines].join('\n') };
}
