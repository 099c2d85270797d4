// The riptrace server's web page. Everything it shows comes from the
// server's /api/ with a credential in the Authorization header: the bearer
// token from the URL's #token, or the name and password of a user who
// signed in (riptrace server --ui-users). It is kept in sessionStorage,
// never in a cookie, so that no other site can make the browser send it;
// live data comes as server-sent events read with fetch, so that the
// credential rides in a header.
import { EditorState, StateField, StateEffect, RangeSet } from '@codemirror/state';
import { EditorView, lineNumbers, gutter, GutterMarker, Decoration, WidgetType, highlightActiveLine } from '@codemirror/view';
import { syntaxHighlighting, defaultHighlightStyle } from '@codemirror/language';
import { go } from '@codemirror/lang-go';

const $ = (id) => document.getElementById(id);

// --- credentials -----------------------------------------------------------

// credential returns the Authorization header's value: a token in the
// URL wins (and leaves the URL), else what this tab signed in with.
function credential() {
  const m = location.hash.match(/token=([A-Za-z0-9_\-.~]+)/);
  if (m) {
    sessionStorage.setItem('riptrace-auth', 'Bearer ' + m[1]);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('riptrace-auth') || '';
}

function sessionID() {
  let id = sessionStorage.getItem('riptrace-session');
  if (!id) {
    const b = new Uint8Array(18);
    crypto.getRandomValues(b);
    id = btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_');
    sessionStorage.setItem('riptrace-session', id);
  }
  return id;
}

const auth = { header: credential(), session: sessionID() };

// basic is the Basic credential of a name and password, UTF-8 encoded.
function basic(user, password) {
  const b = new TextEncoder().encode(`${user}:${password}`);
  return 'Basic ' + btoa(String.fromCharCode(...b));
}

// signIn asks for a user's name and password; the server checks them.
function signIn(why) {
  $('signinerror').textContent = why || '';
  if (!$('signin').open) $('signin').showModal();
}

$('signinform').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData($('signinform'));
  const header = basic(f.get('user'), f.get('password'));
  const r = await fetch('/api/config', { headers: { Authorization: header } });
  if (!r.ok) {
    $('signinerror').textContent = r.status === 401 ? 'wrong name or password' : `the server answered ${r.status}`;
    return;
  }
  sessionStorage.setItem('riptrace-auth', header);
  // A session belongs to one credential: signing in starts another.
  sessionStorage.removeItem('riptrace-session');
  location.reload();
});

async function api(method, path, body) {
  const headers = { Authorization: auth.header, 'X-RipTrace-Session': auth.session };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = text;
  if ((r.headers.get('Content-Type') || '').startsWith('application/json')) data = text ? JSON.parse(text) : null;
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : `${r.status} ${text}`;
    throw new Error(msg);
  }
  return data;
}

// --- state -----------------------------------------------------------------

const state = {
  fleet: { hosts: [], services: [] },
  tracepoints: [],
  readOnly: false,
  module: '', rev: '', path: '', modDir: '',
  hits: [],            // placed hits, in timeline order, bounded
  lineHits: new Map(), // "module@rev|file|line" → {count, last}
  filter: '',
  paused: false, // a hit is open: the timeline holds still
  missed: 0,     // hits that came while paused
};
const MAX_HITS = 2000; // hits kept, for the filter
const MAX_ROWS = 500;  // hits drawn in the timeline
const MAX_DRAW = 50;   // hits drawn in one draw of the timeline
// TIMELINE_MS spaces the timeline's draws: under a flood, drawing every
// frame costs the browser more layout than it has time for, and no one
// reads 5,000 rows a second. Counts and inline values follow every hit.
const TIMELINE_MS = 125;

// Counters an end-to-end test reads.
window.riptraceStats = { hits: 0, frames: 0, maxFlushMs: 0, maxParseMs: 0 };

// PARSE_MS is how long the page reads events before it lets the browser
// draw a frame and answer input.
const PARSE_MS = 8;

function yieldToPage() {
  if (globalThis.scheduler && scheduler.yield) return scheduler.yield();
  return new Promise((res) => setTimeout(res, 0));
}

function notice(msg, cls = 'warn') {
  const n = $('notice');
  n.textContent = msg;
  n.className = 'notice ' + cls;
  n.title = msg;
}

// --- events ----------------------------------------------------------------

async function stream() {
  let delay = 500;
  for (;;) {
    try {
      const r = await fetch('/api/events', { headers: { Authorization: auth.header, 'X-RipTrace-Session': auth.session } });
      if (r.status === 401) {
        sessionStorage.removeItem('riptrace-auth');
        setConn('signed out', true);
        signIn('the token or password is no longer good: sign in, or open the URL riptrace server printed, with its #token');
        return;
      }
      if (!r.ok) throw new Error(`${r.status}`);
      setConn('live', false);
      delay = 500;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        // One pass over the chunk: cutting the buffer after each event
        // would copy the rest of a large chunk once per event. A chunk
        // of thousands of hits is read in slices of PARSE_MS, yielding
        // between them, so that frames are drawn and clicks answered
        // while a flood is read.
        let at = 0, i;
        let t0 = performance.now();
        while ((i = buf.indexOf('\n\n', at)) >= 0) {
          const block = buf.slice(at, i);
          at = i + 2;
          let name = '', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) name = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (name) onEvent(name, data);
          const took = performance.now() - t0;
          if (took > PARSE_MS) {
            window.riptraceStats.maxParseMs = Math.max(window.riptraceStats.maxParseMs, took);
            buf = buf.slice(at);
            at = 0;
            await yieldToPage();
            t0 = performance.now();
          }
        }
        window.riptraceStats.maxParseMs = Math.max(window.riptraceStats.maxParseMs, performance.now() - t0);
        buf = buf.slice(at);
      }
    } catch (e) {
      setConn('disconnected: ' + e.message + ', retrying', true);
    }
    setConn('reconnecting…', true);
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function setConn(text, down) {
  const c = $('conn');
  c.textContent = text;
  c.className = 'conn' + (down ? ' down' : '');
}

let pendingHits = [];
let hitFrame = 0;

function onEvent(name, data) {
  const v = JSON.parse(data);
  switch (name) {
    case 'hello':
      state.readOnly = v.readOnly;
      $('ro').hidden = !v.readOnly;
      $('user').hidden = !v.user;
      $('user').textContent = v.user ? 'signed in as ' + v.user : '';
      break;
    case 'fleet':
      state.fleet = v;
      renderFleet();
      renderServices();
      break;
    case 'tracepoints':
      state.tracepoints = v;
      renderTracepoints();
      refreshMarkers();
      break;
    case 'hit':
      // Hits are drawn once per frame, however fast they come.
      window.riptraceStats.hits++;
      pendingHits.push(v);
      if (!hitFrame) hitFrame = requestAnimationFrame(flushHits);
      break;
    case 'notice':
      notice(v.message);
      break;
    case 'lost':
      notice(`this page was too slow: ${v.dropped} events were dropped`);
      break;
  }
}

// --- fleet -----------------------------------------------------------------

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

const short = (rev) => (rev ? rev.slice(0, 12) : 'no revision');

function clockText(info) {
  if (!info || !info.clock) return info && info.clockError ? 'no clock: ' + info.clockError : 'no clock';
  const ms = (ns) => (ns / 1e6).toFixed(2) + ' ms';
  return `clock ${info.clock.offset >= 0 ? '+' : ''}${ms(info.clock.offset)} ± ${ms(info.clock.bound)}`;
}

function renderFleet() {
  const f = $('fleet');
  f.replaceChildren();
  if (!state.fleet.hosts.length) f.append(el('div', { class: 'dim' }, 'no agents'));
  for (const h of state.fleet.hosts) {
    const d = el('details', { class: 'host' + (h.gone ? ' gone' : ''), open: '' },
      el('summary', {}, h.name, ' ', el('span', { class: 'dim' }, h.info ? `${h.info.backends.join('/')} · ${clockText(h.info)}` : '')));
    if (h.error) d.append(el('div', { class: 'error' }, h.error));
    for (const p of h.processes) {
      d.append(el('div', { class: 'proc' },
        `${p.pid} ${p.module || p.exe} `, el('span', { class: p.revision ? 'rev' : 'rev warn', title: p.revision ? p.revision : 'built without vcs.revision: see Code' }, short(p.revision) + (p.modified ? '+dirty' : '')),
        ' ', el('span', { class: p.attached ? 'ok' : 'dim' }, p.attached ? 'attached' : 'not attached')));
    }
    f.append(d);
  }
}

function renderServices() {
  const s = $('services');
  s.replaceChildren();
  if (!state.fleet.services.length) s.append(el('div', { class: 'dim' }, 'no Go module runs in the fleet'));
  for (const svc of state.fleet.services) {
    const src = svc.source;
    const head = el('div', { class: 'svc' }, el('b', {}, svc.module), ' ',
      el('span', { class: src.state === 'ready' ? 'ok' : src.state === 'error' || src.state === 'unmapped' ? 'error' : 'dim' }, src.state));
    if (!state.readOnly && src.state !== 'unmapped') {
      head.append(' ', el('button', { onclick: () => fetchModule(svc.module) }, 'fetch'));
    }
    if (src.error) head.append(el('div', { class: 'error' }, src.error));
    s.append(head);
    for (const r of svc.revisions) {
      const sel = svc.module === state.module && r.revision === state.rev;
      const b = el('button', { class: 'rev-btn mono' + (sel ? ' sel' : ''), 'data-rev': r.revision },
        `${short(r.revision)}${r.modified ? '+dirty' : ''} · ${r.processes} process${r.processes === 1 ? '' : 'es'}`);
      if (r.revision) b.addEventListener('click', () => openRevision(svc.module, r.revision));
      else b.disabled = true;
      s.append(b);
      // Said, not hidden: why these processes' code is not shown, or
      // may not be what runs.
      if (r.noCode) s.append(el('div', { class: 'why nocode' }, 'No code shown: ' + r.noCode));
      if (r.note) s.append(el('div', { class: 'why' }, r.note));
    }
  }
}

async function fetchModule(module) {
  notice(`fetching ${module}…`, 'dim');
  try {
    await api('POST', '/api/fetch', { module });
    notice(`fetched ${module}`, 'ok');
  } catch (e) {
    notice(e.message, 'error');
  }
}

// --- file tree -------------------------------------------------------------

async function openRevision(module, rev) {
  state.module = module;
  state.rev = rev;
  renderServices();
  const t = $('tree');
  t.replaceChildren(el('div', { class: 'dim' }, 'loading the tree…'));
  let tree;
  try {
    tree = await api('GET', `/api/tree?module=${encodeURIComponent(module)}&rev=${rev}`);
  } catch (e) {
    t.replaceChildren(el('div', { class: 'error' }, e.message));
    return;
  }
  state.modDir = tree.modDir;
  // Directories are built lazily: a folder's children are made when it
  // first opens, so a tree of 10k files opens at once.
  const root = {};
  for (const f of tree.files) {
    const parts = f.split('/');
    let node = root;
    for (const p of parts.slice(0, -1)) node = node[p + '/'] ||= {};
    node[parts[parts.length - 1]] = f;
  }
  const build = (node, into) => {
    const keys = Object.keys(node).sort((a, b) => (a.endsWith('/') === b.endsWith('/') ? a.localeCompare(b) : a.endsWith('/') ? -1 : 1));
    for (const k of keys) {
      if (k.endsWith('/')) {
        const d = el('details', { class: 'dir' }, el('summary', {}, k));
        let built = false;
        d.addEventListener('toggle', () => { if (d.open && !built) { built = true; build(node[k], d); } });
        into.append(d);
      } else {
        const path = node[k];
        into.append(el('div', { class: 'file', 'data-path': path, onclick: () => openFile(path) }, k));
      }
    }
  };
  t.replaceChildren();
  if (tree.truncated) t.append(el('div', { class: 'warn' }, `only the first ${tree.files.length} files are listed`));
  build(root, t);
  const main = tree.files.find((f) => f.endsWith('main.go'));
  if (main && !state.path) openFile(main);
}

async function openFile(path) {
  state.path = path;
  const { module, rev } = state;
  // A file opened after this one, while this one was being fetched, is the
  // one shown: this one's text must not replace it under its name (the
  // tree opens main.go by itself, and a click on another file can overtake
  // that fetch).
  const current = () => state.path === path && state.module === module && state.rev === rev;
  for (const e of document.querySelectorAll('.file')) e.classList.toggle('sel', e.dataset.path === path);
  $('filebar').textContent = `${module} @ ${short(rev)} · ${path}`;
  let text;
  try {
    text = await api('GET', `/api/file?module=${encodeURIComponent(module)}&rev=${rev}&path=${encodeURIComponent(path)}`);
  } catch (e) {
    if (current()) $('filebar').textContent = e.message;
    return;
  }
  if (!current()) return;
  view.setState(newEditorState(text));
  view.scrollDOM.scrollTop = 0; // a new file opens at its top
  refreshMarkers();
}

// --- editor ----------------------------------------------------------------

class TPMarker extends GutterMarker {
  constructor(refused) { super(); this.refused = refused; }
  eq(o) { return o.refused === this.refused; }
  toDOM() {
    const s = el('span', { class: 'tp-marker' + (this.refused ? ' refused' : '') }, '●');
    if (this.refused) s.title = this.refused;
    return s;
  }
}

class HitWidget extends WidgetType {
  constructor(text) { super(); this.text = text; }
  eq(o) { return o.text === this.text; }
  toDOM() { return el('span', { class: 'hitinfo' }, this.text); }
}

const setMarks = StateEffect.define();
const marksField = StateField.define({
  create: () => ({ gutter: RangeSet.empty, deco: Decoration.none }),
  update(v, tr) {
    for (const e of tr.effects) if (e.is(setMarks)) return e.value;
    return v;
  },
  provide: (f) => EditorView.decorations.from(f, (v) => v.deco),
});

function onGutterClick(view, line) {
  const n = view.state.doc.lineAt(line.from).number;
  const tps = tracepointsAt(n);
  if (tps.length) {
    if (!state.readOnly) removeTracepoint(tps[0].spec.id);
  } else {
    openForm(n);
  }
  return true;
}

function newEditorState(text) {
  return EditorState.create({
    doc: text,
    extensions: [
      marksField,
      gutter({
        class: 'cm-tp-gutter',
        markers: (v) => v.state.field(marksField).gutter,
        domEventHandlers: { mousedown: onGutterClick },
      }),
      lineNumbers({ domEventHandlers: { mousedown: onGutterClick } }),
      highlightActiveLine(),
      syntaxHighlighting(defaultHighlightStyle),
      go(),
      EditorState.readOnly.of(true),
      EditorView.editable.of(false),
    ],
  });
}

const view = new EditorView({ state: newEditorState('// pick a service, a revision and a file on the left\n'), parent: $('editor') });

// pathInModule is the open file's path inside its module, as locations
// name it.
function pathInModule() {
  if (!state.modDir) return state.path;
  return state.path.startsWith(state.modDir + '/') ? state.path.slice(state.modDir.length + 1) : null;
}

// tracepointsAt lists the tracepoints on line n of the open file as its
// revision has it (mapped there, or set there).
function tracepointsAt(n) {
  const p = pathInModule();
  return state.tracepoints.filter((tp) => {
    const l = tp.spec.location;
    if (l.module !== state.module) return false;
    const path = (l.paths && l.paths[state.rev]) || l.path;
    if (path !== p) return false;
    const line = (l.lines && l.lines[state.rev]) || (l.revision === state.rev ? l.line : 0);
    return line === n;
  });
}

function refreshMarkers() {
  if (!state.path) return;
  const doc = view.state.doc;
  const p = pathInModule();
  const marks = [];
  const seen = new Set();
  for (const tp of state.tracepoints) {
    const l = tp.spec.location;
    if (l.module !== state.module || ((l.paths && l.paths[state.rev]) || l.path) !== p) continue;
    const refused = l.refused && l.refused[state.rev];
    const line = (l.lines && l.lines[state.rev]) || (l.revision === state.rev || refused ? l.line : 0);
    if (!line || line > doc.lines || seen.has(line)) continue;
    seen.add(line);
    marks.push(new TPMarker(refused ? `not traced in this revision: ${refused}` : '').range(doc.line(line).from));
  }
  marks.sort((a, b) => a.from - b.from);
  const perLine = new Map();
  const prefix = `${state.module}@${state.rev}|`;
  for (const [k, c] of state.lineHits) {
    if (!k.startsWith(prefix)) continue;
    const [, file, line] = k.split('|');
    const n = Number(line);
    if (!fileMatches(file) || n < 1 || n > doc.lines) continue;
    const had = perLine.get(n);
    perLine.set(n, had ? { count: had.count + c.count, last: c.last } : c);
  }
  const decos = [...perLine.entries()].sort((a, b) => a[0] - b[0])
    .map(([n, h]) => Decoration.widget({ widget: new HitWidget(`×${h.count}  ${h.last}`), side: 1 }).range(doc.line(n).to));
  view.dispatch({ effects: setMarks.of({ gutter: RangeSet.of(marks), deco: Decoration.set(decos) }) });
}

// --- the form --------------------------------------------------------------

let formLine = 0;
let formEdit = null; // the spec being edited, or null for a new tracepoint

function openForm(n) {
  if (state.readOnly) {
    notice('this page is read-only');
    return;
  }
  formLine = n;
  formEdit = null;
  $('tpform').reset();
  for (const name of ['group', 'hosts']) $('tpform').elements[name].disabled = false;
  $('formtitle').textContent = `Trace ${state.path}:${n} (${short(state.rev)})`;
  $('formok').textContent = 'Trace';
  $('formerror').textContent = '';
  $('form').showModal();
  $('formok').focus();
}

// editForm opens the form on a declared tracepoint: its line, group and
// hosts stay; the rest is replaced.
function editForm(tp) {
  const spec = tp.spec;
  formEdit = spec;
  const f = $('tpform').elements;
  $('tpform').reset();
  f.condition.value = spec.condition || '';
  f.logMessage.value = spec.logMessage || '';
  f.hitCondition.value = spec.hitCondition || '';
  f.maxHits.value = spec.limits.maxHits || '';
  f.maxHitsPerSecond.value = spec.limits.maxHitsPerSecond || '';
  f.backend.value = spec.backend || '';
  f.expiry.value = tp.expiry ? localTime(new Date(tp.expiry)) : '';
  for (const name of ['group', 'hosts']) f[name].disabled = true;
  $('formtitle').textContent = `Edit ${spec.id}`;
  $('formok').textContent = 'Save';
  $('formerror').textContent = '';
  $('form').showModal();
}

$('tpform').addEventListener('submit', async (ev) => {
  if (ev.submitter && ev.submitter.value !== 'ok') return;
  ev.preventDefault();
  const f = new FormData($('tpform'));
  const num = (k) => (f.get(k) ? Number(f.get(k)) : undefined);
  const req = {
    module: state.module, revision: state.rev, path: state.path, line: formLine,
    condition: f.get('condition') || undefined, logMessage: f.get('logMessage') || undefined,
    hitCondition: f.get('hitCondition') || undefined, group: f.get('group') || undefined,
    maxHits: num('maxHits'), maxHitsPerSecond: num('maxHitsPerSecond'), backend: f.get('backend') || undefined,
    hosts: f.get('hosts') ? String(f.get('hosts')).split(/[\s,]+/).filter(Boolean) : undefined,
    expiry: expiry(String(f.get('expiry') || '')),
  };
  $('formok').disabled = true;
  try {
    if (formEdit) {
      const { condition, logMessage, hitCondition, maxHits, maxHitsPerSecond, backend, expiry } = req;
      const spec = await api('PUT', '/api/tracepoints/' + formEdit.id, { condition, logMessage, hitCondition, maxHits, maxHitsPerSecond, backend, expiry });
      $('form').close();
      notice(`${spec.id} changed`, 'ok');
      return;
    }
    const r = await api('POST', '/api/tracepoints', req);
    $('form').close();
    const refused = Object.entries(r.refused || {});
    if (refused.length) notice(refused.map(([rev, why]) => `not traced in ${short(rev)}: ${why}`).join('; '));
    else notice(`tracing ${state.path}:${formLine} as ${r.spec.id}`, 'ok');
    state.tracepoints = state.tracepoints.concat([{ spec: r.spec, statuses: [], hits: 0, dropped: 0, mine: true }]);
    renderTracepoints();
    refreshMarkers();
  } catch (e) {
    $('formerror').textContent = e.message;
  } finally {
    $('formok').disabled = false;
  }
});

// expiry turns the form's expiry into what the server reads: a time of
// day (17:30) or a date and time in this browser's zone become an RFC
// 3339 time; a duration (30m) goes as it is, and the server says what is
// wrong with anything else.
function expiry(v) {
  v = v.trim();
  if (!v) return undefined;
  let m = v.match(/^(\d{1,2}):(\d{2})(?::(\d{2}))?$/);
  if (m) {
    const d = new Date();
    d.setHours(Number(m[1]), Number(m[2]), Number(m[3] || 0), 0);
    if (d <= new Date()) d.setDate(d.getDate() + 1); // the next one
    return d.toISOString();
  }
  m = v.match(/^\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(:\d{2})?$/);
  if (m) {
    const d = new Date(v.replace(' ', 'T'));
    if (!isNaN(d)) return d.toISOString();
  }
  return v;
}

// localTime writes t as the form reads it back: a date and time in this
// browser's zone.
function localTime(t) {
  const p = (n) => String(n).padStart(2, '0');
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}`;
}

// expiryText says when a tracepoint ends.
function expiryText(tp) {
  if (tp.expiry) return ` · expires ${new Date(tp.expiry).toLocaleTimeString()}`;
  if (tp.mine) return ' · ends with its page';
  const at = tp.spec.limits.expiresAt;
  return at ? ` · expires ${new Date(at).toLocaleTimeString()}` : '';
}

async function removeTracepoint(id) {
  try {
    await api('DELETE', '/api/tracepoints/' + id);
    state.tracepoints = state.tracepoints.filter((t) => t.spec.id !== id);
    renderTracepoints();
    refreshMarkers();
  } catch (e) {
    notice(e.message, 'error');
  }
}

// --- tracepoints -----------------------------------------------------------

function renderTracepoints() {
  const t = $('tracepoints');
  t.replaceChildren();
  if (!state.tracepoints.length) t.append(el('div', { class: 'dim' }, 'no tracepoints: click a line number'));
  for (const tp of state.tracepoints) {
    const s = tp.spec, l = s.location;
    const d = el('div', { class: 'tp', 'data-id': s.id });
    if (!state.readOnly) {
      d.append(el('button', { class: 'remove', onclick: () => removeTracepoint(s.id) }, 'remove'),
        el('button', { class: 'edit', onclick: () => editForm(tp) }, 'edit'));
    }
    d.append(el('div', { class: 'loc' }, `${l.module ? l.module + '/' : ''}${l.path}:${l.line}`),
      el('div', { class: 'dim' }, `${s.id} · ${s.owner || 'no owner'} · hits ${tp.hits} · drops ${tp.dropped}` + expiryText(tp) +
        (s.condition ? ` · if ${s.condition}` : '') + (s.logMessage ? ` · log "${s.logMessage}"` : '')));
    for (const [rev, why] of Object.entries(l.refused || {})) d.append(el('div', { class: 'st warn' }, `${short(rev)}: refused: ${why}`));
    for (const st of tp.statuses) {
      d.append(el('div', { class: 'st ' + (st.state === 'installed' ? 'ok' : st.state === 'error' ? 'error' : 'warn') },
        `${st.host}/${st.pid} ${short(st.process.revision)}: ${st.state}${st.placement && st.placement.backend ? ' (' + st.placement.backend + ')' : ''} · ${st.hits} hits${st.dropped ? ' · ' + st.dropped + ' dropped' : ''}${st.message ? ' · ' + st.message : ''}`));
    }
    t.append(d);
  }
}

// --- hits and timeline -----------------------------------------------------

function summary(h) {
  if (h.message) return h.message;
  const vs = (h.exprs || []).concat(h.args || [], h.locals || []);
  return vs.slice(0, 3).map((v) => `${v.name}=${v.unreadable ? '<' + v.unreadable + '>' : v.value}`).join(' ');
}

// fileMatches says whether a hit's file, as the process's DWARF names it
// (a build path, or module/path), is the open file.
function fileMatches(file) {
  return file === state.path || file.endsWith('/' + state.path);
}

function flushHits() {
  const t0 = performance.now();
  drawHits();
  const stats = window.riptraceStats;
  stats.frames++;
  stats.maxFlushMs = Math.max(stats.maxFlushMs, performance.now() - t0);
}

function drawHits() {
  hitFrame = 0;
  const batch = pendingHits;
  pendingHits = [];
  let touched = false;
  const lastOf = new Map(); // line → its last hit of the batch
  for (const h of batch) {
    state.hits.push(h);
    // Per-line counts and last values, by the revision and file the
    // process runs: a line of another revision is another line.
    const k = `${h.process.module}@${h.process.revision}|${h.file}|${h.line}`;
    const c = state.lineHits.get(k) || { count: 0, last: '' };
    c.count++;
    if (state.lineHits.size > 20000) state.lineHits.clear();
    state.lineHits.set(k, c);
    lastOf.set(k, h);
    touched = touched || (h.process.module === state.module && h.process.revision === state.rev && fileMatches(h.file));
  }
  // The last value is read once per line, not once per hit.
  for (const [k, h] of lastOf) state.lineHits.get(k).last = summary(h).slice(0, 80);
  if (state.hits.length > MAX_HITS) state.hits.splice(0, state.hits.length - MAX_HITS);
  if (state.paused) {
    state.missed += batch.length;
    $('paused').textContent = `paused while a hit is open: ${state.missed} new hits. Close it or click here to go on`;
  } else {
    queueTimeline(batch);
  }
  // Inline counts are redrawn at most four times a second.
  if (touched && !markerTimer) markerTimer = setTimeout(() => { markerTimer = 0; refreshMarkers(); }, 250);
}

let markerTimer = 0;

// The hits the timeline draws next (the newest MAX_DRAW), and how many
// came too fast to be drawn at all.
let undrawn = [];
let undrawnSkipped = 0;
let lastDraw = -Infinity;
let drawTimer = 0;

// queueTimeline draws batch in the timeline now, or with the next draw
// if the last was less than TIMELINE_MS ago.
function queueTimeline(batch) {
  if (state.filter) batch = batch.filter(matches);
  for (const h of batch) undrawn.push(h);
  if (undrawn.length > MAX_DRAW) {
    undrawnSkipped += undrawn.length - MAX_DRAW;
    undrawn = undrawn.slice(undrawn.length - MAX_DRAW);
  }
  const wait = lastDraw + TIMELINE_MS - performance.now();
  if (wait <= 0) drawTimeline();
  else if (!drawTimer) drawTimer = setTimeout(() => requestAnimationFrame(drawTimeline), wait);
}

function drawTimeline() {
  drawTimer = 0;
  lastDraw = performance.now();
  const batch = undrawn, skipped = undrawnSkipped;
  undrawn = [];
  undrawnSkipped = 0;
  if (state.paused || !batch.length) return;
  renderTimeline(batch, MAX_DRAW, skipped);
}

// pause holds the timeline still while a hit is open, so that the row
// being read is not scrolled away or dropped; resume draws what came.
function pause() {
  state.paused = true;
  state.missed = 0;
  $('paused').hidden = false;
  $('paused').textContent = 'paused while a hit is open';
}

function resume() {
  state.paused = false;
  undrawn = [];
  undrawnSkipped = 0;
  $('paused').hidden = true;
  for (const v of document.querySelectorAll('#timeline .hit > .vars')) v.remove();
  $('timeline').replaceChildren();
  groups.clear();
  renderTimeline(state.hits, MAX_ROWS);
}

const groups = new Map(); // group name → its block in the timeline

function matches(h) {
  if (!state.filter) return true;
  const s = `${h.host} ${h.function} ${h.group || ''} ${summary(h)} ${h.file}:${h.line}`.toLowerCase();
  return s.includes(state.filter);
}

function hitRow(h) {
  const t = new Date(h.coordinatedTime);
  const row = el('div', { class: 'hit' + (h.late ? ' late' : '') + (h.uncertain ? ' uncertain' : ''), title: h.note || '' },
    `#${h.order}${h.late ? ' late' : ''}${h.uncertain ? ' order uncertain' : ''} ${t.toISOString().slice(11, 23)} ${h.host}/${h.pid} ${h.function.split('/').pop()}:${h.line}  ${summary(h)}` +
    (h.dropped ? `  (+${h.dropped} dropped)` : ''));
  let tree = null;
  row.addEventListener('click', (ev) => {
    if (ev.target !== row) return;
    if (tree) { tree.remove(); tree = null; if (!document.querySelector('#timeline .hit > .vars')) resume(); return; }
    pause();
    tree = el('div', { class: 'vars' });
    for (const [title, vs] of [['args', h.args], ['locals', h.locals], ['exprs', h.exprs]]) {
      if (vs && vs.length) tree.append(varNode({ name: title, type: '', value: '', children: vs }, true));
    }
    if (h.errors && h.errors.length) tree.append(el('div', { class: 'error' }, h.errors.join('\n')));
    row.append(tree);
  });
  return row;
}

// varNode draws a variable; its children are drawn when it is first
// opened, so a large capture costs nothing until looked at.
function varNode(v, open) {
  const label = [el('span', { class: 'name' }, v.name), v.type ? el('span', { class: 'type' }, ' ' + v.type) : '',
    v.value || v.unreadable ? ' = ' + (v.unreadable ? `<unreadable: ${v.unreadable}>` : v.value) : ''];
  if (!v.children || !v.children.length) return el('div', { class: 'var' }, el('div', { class: 'leaf' }, ...label));
  const d = el('details', { class: 'var' }, el('summary', {}, ...label));
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    const kids = el('div', { class: 'vars' });
    for (const c of v.children) kids.append(varNode(c, false));
    d.append(kids);
  };
  d.addEventListener('toggle', () => d.open && build());
  if (open) { d.open = true; build(); }
  return d;
}

// renderTimeline draws the last most of batch (filtered already when
// skipped says how many hits before it were not drawn).
function renderTimeline(batch, most = MAX_DRAW, skipped = -1) {
  const tl = $('timeline');
  const stick = tl.scrollTop + tl.clientHeight >= tl.scrollHeight - 20;
  // Of a burst, only the latest are drawn, and the gap says so.
  if (skipped < 0) {
    skipped = 0;
    if (state.filter) batch = batch.filter(matches);
  }
  const frag = document.createDocumentFragment();
  if (batch.length > most) {
    skipped += batch.length - most;
    batch = batch.slice(batch.length - most);
  }
  if (skipped) frag.append(el('div', { class: 'skipped' }, `… ${skipped} hits came too fast to draw (the last ${MAX_HITS} are kept: pause or filter to see them)`));
  for (const h of batch) {
    const row = hitRow(h);
    if (h.group) {
      let g = groups.get(h.group);
      // A block still in this frame's fragment has a parent too.
      if (!g || !g.parentNode) {
        g = el('div', { class: 'group', 'data-group': h.group }, el('div', { class: 'gname' }, `request ${h.group}`));
        groups.set(h.group, g);
        frag.append(g);
      }
      g.append(row);
      if (g.childElementCount > 100) g.children[1].remove(); // the name stays
    } else {
      frag.append(row);
    }
  }
  tl.append(frag);
  // The page keeps a bounded number of rows.
  while (tl.childElementCount > MAX_ROWS) {
    const first = tl.firstElementChild;
    if (first.dataset.group !== undefined) groups.delete(first.dataset.group);
    first.remove();
  }
  if (stick) tl.scrollTop = tl.scrollHeight;
}

$('paused').addEventListener('click', resume);

$('filter').addEventListener('input', (e) => {
  state.filter = e.target.value.toLowerCase();
  undrawn = [];
  undrawnSkipped = 0;
  $('timeline').replaceChildren();
  groups.clear();
  renderTimeline(state.hits, MAX_ROWS);
});

// --- start -----------------------------------------------------------------

if (!auth.header) {
  setConn('not signed in', true);
  signIn('open the URL riptrace server printed, with its #token, or sign in as a user of --ui-users');
} else {
  stream();
  renderTracepoints();
}
