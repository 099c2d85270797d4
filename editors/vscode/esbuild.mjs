// Bundles the extension (and the vscode-free fleet module the tests load)
// into dist/, so the .vsix needs no node_modules.
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', target: 'node18', format: 'cjs', minify: true, sourcemap: false, logLevel: 'warning' };
await build({ ...common, entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js', external: ['vscode'] });
await build({ ...common, entryPoints: ['src/fleet.ts'], outfile: 'dist/fleet.js' });
