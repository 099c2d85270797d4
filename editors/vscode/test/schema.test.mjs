// The launch.json schema of the riptrace debug type, as VS Code builds it
// from package.json, checked with vscode-json-languageservice (the validator
// behind VS Code's JSON editor): the documented examples pass, a wrong type
// gets the attribute's documented message. Run by editors/vscode_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import jsonService from 'vscode-json-languageservice';

const { getLanguageService, TextDocument } = jsonService;

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const debuggerContribution = pkg.contributes.debuggers.find((d) => d.type === 'riptrace');

// launchSchema mirrors VS Code 1.139's Debugger.getSchemaAttributes and
// AdapterManager.initializeLaunchSchema: each request's attributes become
// one branch of configurations.items.oneOf, closed (additionalProperties
// false) and extended with type, request and the properties common to all
// debuggers.
function launchSchema() {
  const definitions = {
    common: {
      properties: {
        name: { type: 'string', default: 'Launch' },
        debugServer: { type: 'number', default: 4711 },
        preLaunchTask: { anyOf: [{ type: 'object' }, { type: ['string'] }] },
        postDebugTask: { anyOf: [{ type: 'object' }, { type: ['string'] }] },
        presentation: { type: 'object' },
        internalConsoleOptions: { enum: ['neverOpen', 'openOnSessionStart', 'openOnFirstSessionStart'] },
        suppressMultipleSessionWarning: { type: 'boolean' },
      },
    },
  };
  const oneOf = Object.entries(structuredClone(debuggerContribution.configurationAttributes)).map(([request, t]) => {
    const platformId = `riptrace:${request}:platform`;
    const required = ['name', 'type', 'request'];
    t.required = t.required?.length ? required.concat(t.required) : required;
    t.additionalProperties = false;
    t.type = 'object';
    t.properties ??= {};
    const a = t.properties;
    a.type = {
      enum: ['riptrace'],
      pattern: '^(?!node2)',
      errorMessage: 'The debug type is not recognized. Make sure that you have a corresponding debug extension installed and that it is enabled.',
    };
    a.request = { enum: [request] };
    for (const u in definitions.common.properties) {
      a[u] = { $ref: `#/definitions/common/properties/${u}` };
    }
    definitions[`riptrace:${request}`] = { ...t };
    definitions[platformId] = {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(Object.entries(a).filter(([k]) => k !== 'type' && k !== 'request' && k !== 'name')),
    };
    return { ...t, properties: { ...a, windows: { $ref: `#/definitions/${platformId}` }, osx: { $ref: `#/definitions/${platformId}` }, linux: { $ref: `#/definitions/${platformId}` } } };
  });
  return {
    type: 'object',
    definitions,
    properties: {
      version: { type: 'string' },
      configurations: { type: 'array', items: { type: 'object', oneOf } },
      compounds: { type: 'array' },
      inputs: { type: 'array' },
    },
  };
}

const service = getLanguageService({});
service.configure({ validate: true, allowComments: true, schemas: [{ uri: 'vscode://schemas/launch', fileMatch: ['launch.json'], schema: launchSchema() }] });

/** The problems VS Code would underline in a launch.json holding these configurations. */
async function problems(...configurations) {
  const text = JSON.stringify({ version: '0.2.0', configurations }, null, 2);
  const doc = TextDocument.create('file:///w/.vscode/launch.json', 'jsonc', 1, text);
  const diags = await service.doValidation(doc, service.parseJSONDocument(doc), { comments: 'ignore', trailingCommas: 'ignore' });
  return diags.map((d) => d.message);
}

// A snippet body holds snippet syntax: "^\"${...}\"" is a raw value, ${1:x} a placeholder.
function fromSnippet(v) {
  if (typeof v === 'string') {
    const raw = /^\^"(.*)"$/.exec(v);
    return (raw ? raw[1] : v).replace(/\\\$/g, '$').replace(/\$\{\d+:([^}]*)\}/g, '$1');
  }
  if (Array.isArray(v)) return v.map(fromSnippet);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fromSnippet(x)]));
  return v;
}

const attributes = debuggerContribution.configurationAttributes.attach.properties;

test('the initial configurations are valid', async () => {
  assert.deepEqual(await problems(...debuggerContribution.initialConfigurations), []);
});

test('the configuration snippets are valid', async () => {
  for (const s of debuggerContribution.configurationSnippets) {
    const body = fromSnippet(s.body);
    assert.doesNotMatch(JSON.stringify(body), /\$\{\d|\^"/, `snippet ${s.label} still holds snippet syntax`);
    assert.deepEqual(await problems(body), [], `snippet ${s.label}`);
  }
});

test('every documented example is valid, all at once', async () => {
  const config = { type: 'riptrace', request: 'attach', name: 'all examples' };
  for (const [name, a] of Object.entries(attributes)) {
    assert.ok(a.examples?.length, `${name} documents no example`);
    config[name] = a.examples[0];
  }
  assert.deepEqual(await problems(config), []);
  for (const [name, a] of Object.entries(attributes)) {
    for (const ex of a.examples.slice(1)) {
      assert.deepEqual(await problems({ type: 'riptrace', request: 'attach', name, [name]: ex }), [], `${name}: ${JSON.stringify(ex)}`);
    }
  }
});

test('the examples of the READMEs and the design are valid', async () => {
  const readmes = [new URL('../README.md', import.meta.url), new URL('../../../README.md', import.meta.url)];
  let n = 0;
  for (const file of readmes) {
    for (const [, block] of readFileSync(file, 'utf8').matchAll(/```json\n([\s\S]*?)```/g)) {
      const v = JSON.parse(block);
      if (v.type !== 'riptrace') continue; // not a launch configuration
      assert.deepEqual(await problems(v), [], `${file.pathname}: ${block}`);
      n++;
    }
  }
  assert.ok(n >= 2, `found ${n} launch configurations in the READMEs, want one in each`);
  // docs/DESIGN.md's launch configuration.
  const design = {
    type: 'riptrace', request: 'attach', name: 'orders fleet',
    nats: 'nats://127.0.0.1:4222',
    hosts: ['orders-*'],
    processes: ['github.com/acme/orders/cmd/orders'],
    capture: { locals: true, stackDepth: 8, maxStringLen: 128 },
    maxHitsPerSecond: 50,
  };
  assert.deepEqual(await problems(design), []);
});

// A value of the wrong JSON type for each attribute.
const wrong = { string: 42, boolean: 'yes', integer: 'fifty', array: 7, object: ['x'] };

test('a wrong type is refused with the documented message', async () => {
  for (const [name, a] of Object.entries(attributes)) {
    const types = [a.type].flat();
    const bad = wrong[types[0]];
    assert.ok(a.errorMessage, `${name} documents no errorMessage`);
    const got = await problems({ type: 'riptrace', request: 'attach', name: 'bad', [name]: bad });
    assert.deepEqual(got, [a.errorMessage], `${name}: ${JSON.stringify(bad)}`);
  }
});

test('a misspelt attribute and a wrong debug type are refused', async () => {
  assert.deepEqual(await problems({ type: 'riptrace', request: 'attach', name: 'x', hots: ['a'] }), ['Property hots is not allowed.']);
  assert.deepEqual(await problems({ type: 'riptrace', request: 'attach', name: 'x', maxHitsPerSecond: 0 }), ['Value is below the minimum of 1.']);
  const got = await problems({ type: 'riptrce', request: 'attach', name: 'x' });
  assert.ok(got.some((m) => m.startsWith('The debug type is not recognized.')), `got ${JSON.stringify(got)}`);
});
