// Browser driver for tests/browser.rs: launches Debian's Chromium (headless, fresh profile) through playwright-core
// and answers commands, one JSON object per line on stdin, with one JSON line each on stdout:
//   {"op":"open","page":"p1","url":"http://…/?stream=…","old_browser":false}   → {"ok":true}
//   {"op":"wait","page":"p1","count":20,"transport":"ws","timeout_ms":20000}  → {"ok":true,"state":{…}}
//       waits until the page holds at least `count` events, (when given) its latest transport is `transport`,
//       (with "cursor":true) its client holds a cursor, and (when given) at least `transport_errors` transport
//       errors were reported; state = {"transports":[…],"ids":[…],"events":[…],"errors":[…],"timeline":[…],
//       "cursor":…,"console":[…]}: the test page's window.__pb, its client's lastEventId() and what the page logged
//       (shown by the Rust test when an assertion fails).
//   {"op":"mark","page":"p1","what":"restarted"}                               → {"ok":true,"t":1234}
//       adds {t, kind:"mark", what} to the page's timeline (t: ms since the page's connect()).
//   {"op":"reload","page":"p1"}                                               → {"ok":true}
//       reloads the page in the same tab (its sessionStorage survives, as in a real page session)
//   {"op":"close","page":"p1"}                                                → {"ok":true}
//   {"op":"ws_probe","page":"p1","url":"ws://…"}  → {"ok":true,"extensions":"…","protocol":"…","data":"…"}
//       opens a WebSocket from the page (subprotocol pushbridge.envelope.v1) and returns its first message
// The first line out is {"ready":true,"version":"…"}. EOF on stdin closes the browser and exits.
// `old_browser` deletes WebSocket and EventSource before any page script runs (a browser with neither).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.PUSHBRIDGE_CHROMIUM || '/usr/bin/chromium';
const profile = mkdtempSync(join(tmpdir(), 'pushbridge-chromium-'));
const pages = new Map();
const consoles = new Map();
let context;

function reply(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

async function state(name, page) {
  const seen = await page.evaluate(() => {
    const pb = window.__pb || { transports: [], events: [], errors: [], timeline: [] };
    return {
      transports: pb.transports.slice(),
      ids: pb.events.filter((e) => e.id !== null).map((e) => e.id),
      events: pb.events.map((e) => e.event),
      errors: pb.errors.slice(),
      timeline: pb.timeline.slice(),
      cursor: pb.connection ? pb.connection.lastEventId() : null,
    };
  });
  return { ...seen, console: consoles.get(name) || [] };
}

async function handle(cmd) {
  if (cmd.op === 'open') {
    const page = await context.newPage();
    const log = [];
    consoles.set(cmd.page, log);
    page.on('console', (msg) => log.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (error) => log.push(`pageerror: ${error}`));
    if (cmd.old_browser) {
      await page.addInitScript(() => {
        delete window.WebSocket;
        delete window.EventSource;
      });
    }
    pages.set(cmd.page, page);
    await page.goto(cmd.url, { waitUntil: 'load', timeout: 15000 });
    return { ok: true };
  }
  const page = pages.get(cmd.page);
  if (!page) {
    return { ok: false, error: `no page ${cmd.page}` };
  }
  if (cmd.op === 'wait') {
    try {
      await page.waitForFunction(
        ([count, transport, cursor, errors]) => {
          const pb = window.__pb;
          if (!pb) return false;
          const latest = pb.transports[pb.transports.length - 1];
          const failed = pb.errors.filter((e) => e.startsWith('transport ')).length;
          return (
            pb.events.length >= count &&
            (!transport || latest === transport) &&
            (!cursor || pb.connection.lastEventId() !== null) &&
            failed >= errors
          );
        },
        [cmd.count || 0, cmd.transport || null, cmd.cursor === true, cmd.transport_errors || 0],
        { timeout: cmd.timeout_ms || 20000, polling: 50 },
      );
      return { ok: true, state: await state(cmd.page, page) };
    } catch (error) {
      return { ok: false, error: String(error.message || error).split('\n')[0], state: await state(cmd.page, page) };
    }
  }
  if (cmd.op === 'ws_probe') {
    // A WebSocket of the page's own, asking for the envelope subprotocol: what was negotiated and its first message.
    const seen = await page.evaluate((url) => new Promise((resolve) => {
      const ws = new WebSocket(url, ['pushbridge.envelope.v1']);
      const timer = setTimeout(() => resolve({ error: 'no message within 10 s' }), 10000);
      ws.onmessage = (m) => {
        clearTimeout(timer);
        resolve({ extensions: ws.extensions, protocol: ws.protocol, data: m.data });
        ws.close();
      };
      ws.onerror = () => { clearTimeout(timer); resolve({ error: 'WebSocket error' }); };
    }), cmd.url);
    return { ok: !seen.error, ...seen };
  }
  if (cmd.op === 'mark') {
    const t = await page.evaluate((what) => {
      window.__pb.at('mark', what);
      return window.__pb.timeline[window.__pb.timeline.length - 1].t;
    }, cmd.what);
    return { ok: true, t };
  }
  if (cmd.op === 'reload') {
    consoles.get(cmd.page).length = 0;
    await page.reload({ waitUntil: 'load', timeout: 15000 });
    return { ok: true };
  }
  if (cmd.op === 'close') {
    pages.delete(cmd.page);
    consoles.delete(cmd.page);
    await page.close();
    return { ok: true };
  }
  return { ok: false, error: `unknown op ${cmd.op}` };
}

async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  // Without it Chromium refuses the page's own requests to loopback (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
  await context.grantPermissions(['local-network-access']).catch(() => {});
  reply({ ready: true, version: context.browser()?.version() ?? 'unknown' });
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (error) {
      reply({ ok: false, error: `bad command: ${error}` });
      continue;
    }
    try {
      reply(await handle(cmd));
    } catch (error) {
      reply({ ok: false, error: String(error.message || error).split('\n')[0] });
    }
  }
}

try {
  await main();
} catch (error) {
  reply({ ready: false, error: String(error.message || error) });
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
