#!/usr/bin/env node
// Interop check with the official TypeScript SDK (@modelcontextprotocol/sdk 1.x,
// StreamableHTTPClientTransport):
//
//   node ts_client.mjs URL [--header "Name: value"]... [--expected FILE] [--answers json|sse]
//
// initialize (+ initialized) -> MCP ping -> tools/list (every page; the names must be exactly
// those in FILE, default expected_tools.txt beside this script) -> tools/call ping ("pong")
// -> DELETE the session -> close. With --answers, every 200 answer to a POST must have that
// content type (application/json or text/event-stream). Exit 0 when all held, 1 on any failure, 2 on bad usage.
//
// The SDK is loaded from $MCP_NODE_MODULES (a node_modules folder), else the usual lookup.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const TAG = 'ts_client';

function usage(msg) {
  console.error(`${TAG}: ${msg}\nusage: node ts_client.mjs URL [--header "Name: value"]... [--expected FILE] [--answers json|sse]`);
  process.exit(2);
}

const headers = {};
let expectedFile = path.join(here, 'expected_tools.txt');
let answers;
let url;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--header') {
    const h = argv[++i] ?? '';
    const idx = h.indexOf(':');
    if (idx <= 0) usage('--header needs "Name: value"');
    headers[h.slice(0, idx).trim()] = h.slice(idx + 1).trim();
  } else if (a === '--expected') {
    expectedFile = argv[++i] ?? usage('--expected needs a file');
  } else if (a === '--answers') {
    answers = argv[++i];
    if (answers !== 'json' && answers !== 'sse') usage('--answers takes json or sse');
  } else if (a.startsWith('-')) {
    usage(`unknown option ${a}`);
  } else if (url === undefined) {
    try {
      url = new URL(a);
    } catch {
      usage(`bad URL ${a}`);
    }
  } else {
    usage(`unexpected argument ${a}`);
  }
}
if (url === undefined) usage('URL is missing');

const req = process.env.MCP_NODE_MODULES
  ? createRequire(path.join(path.resolve(process.env.MCP_NODE_MODULES), '_resolve_.js'))
  : createRequire(import.meta.url);
let Client, StreamableHTTPClientTransport, sdkVersion;
try {
  ({ Client } = req('@modelcontextprotocol/sdk/client/index.js'));
  ({ StreamableHTTPClientTransport } = req('@modelcontextprotocol/sdk/client/streamableHttp.js'));
  // The package's exports map hides its package.json: walk up from a resolved file.
  for (let d = path.dirname(req.resolve('@modelcontextprotocol/sdk/client/index.js')); d !== path.dirname(d); d = path.dirname(d)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(d, 'package.json'), 'utf8'));
      if (pkg.name === '@modelcontextprotocol/sdk') {
        sdkVersion = pkg.version;
        break;
      }
    } catch {}
  }
} catch (e) {
  usage(`cannot load @modelcontextprotocol/sdk (set MCP_NODE_MODULES to a node_modules folder that has it): ${e.message}`);
}

const expected = readFileSync(expectedFile, 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

let step = 'start';
function fail(msg) {
  console.error(`${TAG}: FAIL at ${step}: ${msg}`);
  process.exit(1);
}
// Nothing may hang the test run.
setTimeout(() => fail('timed out after 30 s'), 30_000).unref();

// Records the content type of every successful POST answer.
const postAnswerTypes = [];
const recordingFetch = async (input, init) => {
  const res = await fetch(input, init);
  if ((init?.method ?? 'GET') === 'POST' && res.status === 200) {
    postAnswerTypes.push((res.headers.get('content-type') ?? '').split(';')[0].trim());
  }
  return res;
};
const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers }, fetch: recordingFetch });
const client = new Client({ name: 'wams-interop-ts', version: '1.0.0' }, { capabilities: {} });
const backgroundErrors = [];
client.onerror = (e) => backgroundErrors.push(`${step}: ${e?.message ?? e}`);

try {
  console.log(`${TAG}: @modelcontextprotocol/sdk ${sdkVersion}, node ${process.version}, ${url}`);
  step = 'initialize';
  await client.connect(transport);
  const server = client.getServerVersion();
  if (!transport.sessionId) fail('initialize returned no MCP-Session-Id');
  if (!client.getServerCapabilities()?.tools) fail('the server does not declare the tools capability');
  console.log(`initialize: ${server?.name}@${server?.version}, protocol ${transport.protocolVersion}, session ${transport.sessionId}`);

  step = 'ping';
  const pong = await client.ping();
  if (pong === null || typeof pong !== 'object' || Object.keys(pong).length !== 0) {
    fail(`ping answered ${JSON.stringify(pong)}, expected {}`);
  }
  console.log('ping: ok');

  step = 'tools/list';
  const names = [];
  let cursor;
  let pages = 0;
  do {
    const page = await client.listTools(cursor === undefined ? {} : { cursor });
    pages++;
    names.push(...page.tools.map((t) => t.name));
    cursor = page.nextCursor;
    if (pages > 100) fail('more than 100 pages: the cursor does not end');
  } while (cursor !== undefined);
  const missing = expected.filter((n) => !names.includes(n));
  const extra = names.filter((n) => !expected.includes(n));
  const dupes = names.filter((n, i) => names.indexOf(n) !== i);
  if (missing.length || extra.length || dupes.length || names.length !== expected.length) {
    fail(
      `tool names differ from ${path.basename(expectedFile)}: got ${names.length}, expected ${expected.length}; ` +
        `missing [${missing.join(', ')}], unexpected [${extra.join(', ')}], duplicated [${dupes.join(', ')}]`,
    );
  }
  console.log(`tools/list: ${names.length} tools in ${pages} page(s), as expected`);

  step = 'tools/call ping';
  const result = await client.callTool({ name: 'ping', arguments: {} });
  const text = result.content?.[0]?.type === 'text' ? result.content[0].text : undefined;
  if (result.isError || text !== 'pong') fail(`expected text "pong", got ${JSON.stringify(result)}`);
  console.log('tools/call ping: pong');

  step = 'DELETE session';
  await transport.terminateSession();
  if (transport.sessionId !== undefined) fail('the session id is still set after DELETE');
  console.log('DELETE session: ok');

  step = 'close';
  await client.close();
} catch (e) {
  fail(`${e?.name ?? 'Error'}: ${e?.message ?? e}${e?.code !== undefined ? ` (code ${e.code})` : ''}`);
}
step = 'answer content types';
if (answers !== undefined) {
  const want = answers === 'sse' ? 'text/event-stream' : 'application/json';
  const other = postAnswerTypes.filter((t) => t !== want);
  if (postAnswerTypes.length === 0 || other.length) {
    fail(`expected every POST answer as ${want}, got [${postAnswerTypes.join(', ')}]`);
  }
  console.log(`answers: ${postAnswerTypes.length} POST answers, all ${want}`);
}
if (backgroundErrors.length) fail(`transport reported errors: ${backgroundErrors.join(' | ')}`);
console.log(`${TAG}: OK`);
process.exit(0);
