// The reference and client SSE reader of tests/stream_differential.rs: node `eventsource` 4.x (a third-party WHATWG
// EventSource) and, on request, Chromium's own EventSource (Debian's /usr/bin/chromium through playwright-core from
// tests/browser/node_modules, started on first use). One JSON object per line on stdin, events out on stdout:
//   {"op":"open","id":"r1","url":"http://…","names":["message","update"]}
//   {"op":"browser","id":"b1","page":"http://app/…page","url":"http://app/…stream","names":[…]}
//       (the page must be served by the stream's own origin: EventSource is then same-origin)
//   {"op":"close","id":"r1"}                                       → {"id":"r1","kind":"closed"}
// Per reader: {"id","kind":"open"} (response headers arrived: each (re)connection), {"id","kind":"event","event",
// "data","lastEventId"}, {"id","kind":"error","message"} (a failed or ended connection; it reconnects by itself).
// The first line out is {"ready":true,"eventsource":"<version>"}; EOF on stdin closes everything and exits.
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EventSource } from 'eventsource';

const here = dirname(fileURLToPath(import.meta.url));
const readers = new Map();
let browser = null;

function out(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function listen(id, source, names) {
  source.addEventListener('open', () => out({ id, kind: 'open' }));
  source.addEventListener('error', (e) => out({ id, kind: 'error', message: String(e.message || e.code || '') }));
  for (const name of names) {
    source.addEventListener(name, (e) =>
      out({ id, kind: 'event', event: e.type, data: e.data, lastEventId: e.lastEventId }),
    );
  }
}

async function startBrowser() {
  const require = createRequire(join(here, '..', 'browser', 'package.json'));
  const { chromium } = require('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'pushbridge-sdiff-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.PUSHBRIDGE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
  // Without it Chromium refuses a page's requests to loopback (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
  await context.grantPermissions(['local-network-access']).catch(() => {});
  await context.exposeBinding('__report', (_source, value) => out(value));
  return { context, profile };
}

async function openInBrowser(cmd) {
  browser ??= startBrowser();
  const { context } = await browser;
  const page = await context.newPage();
  await page.goto(cmd.page, { waitUntil: 'load', timeout: 15000 });
  await page.evaluate(([id, url, names]) => {
    const source = new EventSource(url);
    source.addEventListener('open', () => window.__report({ id, kind: 'open' }));
    source.addEventListener('error', () => window.__report({ id, kind: 'error', message: 'browser' }));
    for (const name of names) {
      source.addEventListener(name, (e) =>
        window.__report({ id, kind: 'event', event: e.type, data: e.data, lastEventId: e.lastEventId }),
      );
    }
    window.__sources = window.__sources || [];
    window.__sources.push(source);
  }, [cmd.id, cmd.url, cmd.names]);
  readers.set(cmd.id, { close: () => page.close() });
}

async function handle(cmd) {
  if (cmd.op === 'open') {
    const source = new EventSource(cmd.url);
    listen(cmd.id, source, cmd.names);
    readers.set(cmd.id, { close: () => source.close() });
  } else if (cmd.op === 'browser') {
    await openInBrowser(cmd);
  } else if (cmd.op === 'close') {
    const reader = readers.get(cmd.id);
    readers.delete(cmd.id);
    await reader?.close();
    out({ id: cmd.id, kind: 'closed' });
  } else {
    out({ id: cmd.id, kind: 'error', message: `unknown op ${cmd.op}` });
  }
}

const version = JSON.parse(readFileSync(join(here, 'node_modules', 'eventsource', 'package.json'), 'utf8')).version;
out({ ready: true, eventsource: version });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (error) {
    out({ kind: 'error', message: `bad command: ${error}` });
    continue;
  }
  handle(cmd).catch((error) => out({ id: cmd.id, kind: 'error', message: `fatal: ${error.message || error}` }));
}
for (const reader of readers.values()) {
  await Promise.resolve(reader.close()).catch(() => {});
}
if (browser) {
  const started = await browser.catch(() => null);
  if (started) {
    await started.context.close().catch(() => {});
    rmSync(started.profile, { recursive: true, force: true });
  }
}
process.exit(0);
