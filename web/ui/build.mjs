// Bundles the page's script (CodeMirror 6 and src/main.js) into
// ../static/app.js, which the Go package embeds: the server needs no
// Node at run time, and the page loads nothing from the network. OUTFILE
// writes it elsewhere (the Go test that checks the committed bundle is
// current).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

await build({
  entryPoints: [here('src/main.js')],
  outfile: process.env.OUTFILE || here('../static/app.js'),
  bundle: true,
  format: 'iife',
  target: 'es2022',
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning',
});
