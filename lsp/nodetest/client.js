// Drives `riptrace lsp` over stdio with Microsoft's language client
// protocol package (the one VS Code's client is built on), as
// lsp/nodetest_test.go asks: wait for a code lens with hits on a traced
// line, fetch its inlay hints and hover, then shutdown and exit. Prints one
// JSON object with what it saw on stdout; fails with a message otherwise.
//
// Usage: node client.js RIPTRACE ROOT FILE LINE OPTIONS_JSON
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const { pathToFileURL } = require('url');
const {
  createProtocolConnection, StreamMessageReader, StreamMessageWriter,
  InitializeRequest, InitializedNotification, DidOpenTextDocumentNotification,
  CodeLensRequest, InlayHintRequest, HoverRequest, ShutdownRequest, ExitNotification,
  CodeLensRefreshRequest, InlayHintRefreshRequest,
} = require('vscode-languageserver-protocol/node');

async function main() {
  const [bin, root, file, lineArg, options] = process.argv.slice(2);
  const line = Number(lineArg);
  const server = spawn(bin, ['lsp'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => server.on('exit', (code) => resolve(code)));
  const conn = createProtocolConnection(new StreamMessageReader(server.stdout), new StreamMessageWriter(server.stdin));
  const seen = { lensRefreshes: 0, hintRefreshes: 0 };
  conn.onRequest(CodeLensRefreshRequest.type, () => { seen.lensRefreshes++; return null; });
  conn.onRequest(InlayHintRefreshRequest.type, () => { seen.hintRefreshes++; return null; });
  conn.listen();

  const uri = pathToFileURL(file).href;
  const init = await conn.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: pathToFileURL(root).href,
    capabilities: { workspace: { codeLens: { refreshSupport: true }, inlayHint: { refreshSupport: true } } },
    initializationOptions: JSON.parse(options),
  });
  seen.serverName = init.serverInfo && init.serverInfo.name;
  conn.sendNotification(InitializedNotification.type, {});
  const text = fs.readFileSync(file, 'utf8');
  conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'go', version: 1, text } });

  const deadline = Date.now() + 30000;
  for (;;) {
    const lenses = await conn.sendRequest(CodeLensRequest.type, { textDocument: { uri } });
    const lens = (lenses || []).find((l) => l.range.start.line === line && /hits?/.test(l.command.title));
    if (lens) { seen.lens = lens.command.title; break; }
    if (Date.now() > deadline) throw new Error(`no code lens with hits on line ${line} within 30s; last: ${JSON.stringify(lenses)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const lines = text.split('\n').length;
  const hints = await conn.sendRequest(InlayHintRequest.type, { textDocument: { uri }, range: { start: { line: 0, character: 0 }, end: { line: lines, character: 0 } } });
  seen.hints = (hints || []).map((h) => ({ line: h.position.line, character: h.position.character, label: h.label }));
  const hover = await conn.sendRequest(HoverRequest.type, { textDocument: { uri }, position: { line, character: 0 } });
  seen.hover = hover && hover.contents && hover.contents.value;

  await conn.sendRequest(ShutdownRequest.type);
  conn.sendNotification(ExitNotification.type);
  const timer = setTimeout(() => { console.error('riptrace lsp did not exit within 5s of exit'); process.exit(1); }, 5000);
  seen.exitCode = await exited;
  clearTimeout(timer);
  conn.dispose();
  process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((err) => { console.error(err && err.stack || String(err)); process.exit(1); });
