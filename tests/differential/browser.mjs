// Chromium driver for tests/differential.rs: Debian's Chromium through playwright-core (the copy .ci/browser-deps
// installs for tests/browser), one fresh context per command, accepting the suite's test certificate. One JSON command
// per line on stdin, one JSON answer per line on stdout (first line out: {"ready":true,"version":…}); EOF ends it.
//   {"op":"cookies","url":…,"cookies":[{"name","value"}…]}
//       the cookies set for the URL's origin, then a navigation to it → {"status","body","protocol"} (protocol: the
//       navigation's nextHopProtocol, "h2" or "http/1.1")
//   {"op":"ws","page":…,"url":…,"steps":[…]}
//       loads `page` (same origin, so over HTTP/2 the WebSocket can use RFC 8441 on its connection), then opens
//       `url` with subprotocols chat, superchat and runs the steps of client_driver.py's "ws" →
//       {"subprotocol","extensions","messages":[{"text"}|{"hex"}],"close":{"code","reason"},"protocol"}
import { createInterface } from 'node:readline';

const { chromium } = await import(new URL('../browser/node_modules/playwright-core/index.mjs', import.meta.url));
const executablePath = process.env.PUSHBRIDGE_CHROMIUM || '/usr/bin/chromium';

function reply(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

async function withPage(browser, fn) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.grantPermissions(['local-network-access']).catch(() => {});
  try {
    const page = await context.newPage();
    return await fn(context, page);
  } finally {
    await context.close().catch(() => {});
  }
}

async function cookies(browser, cmd) {
  return withPage(browser, async (context, page) => {
    await context.addCookies(cmd.cookies.map((c) => ({ name: c.name, value: c.value, url: cmd.url })));
    const response = await page.goto(cmd.url, { waitUntil: 'load', timeout: 15000 });
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol ?? null);
    return { status: response.status(), body: await response.text(), protocol };
  });
}

async function websocket(browser, cmd) {
  return withPage(browser, async (context, page) => {
    const loaded = await page.goto(cmd.page, { waitUntil: 'load', timeout: 15000 });
    const jar = (await context.cookies()).map((c) => `${c.name}=${c.value}; path=${c.path}`);
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol ?? null);
    const out = await page.evaluate(
      ([url, steps]) =>
        new Promise((resolve) => {
          const result = { messages: [], close: null, subprotocol: null, extensions: null };
          const inbox = [];
          let waiter = null;
          let closed = null;
          const ws = new WebSocket(url, ['chat', 'superchat']);
          ws.binaryType = 'arraybuffer';
          const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
          ws.onmessage = (e) => {
            inbox.push(typeof e.data === 'string' ? { text: e.data } : { hex: hex(e.data) });
            if (waiter) waiter();
          };
          ws.onclose = (e) => {
            closed = { code: e.code, reason: e.reason };
            if (waiter) waiter();
          };
          const next = (ms) =>
            new Promise((res) => {
              waiter = res;
              setTimeout(res, ms);
            });
          const run = async () => {
            await new Promise((res, rej) => {
              ws.onopen = res;
              ws.onerror = () => rej(new Error('websocket error before open'));
            }).catch((e) => {
              result.error = String(e.message);
            });
            result.subprotocol = ws.protocol || null;
            result.extensions = ws.extensions || null;
            for (const step of steps) {
              if (result.error) break;
              if ('send' in step) ws.send(step.send);
              else if ('send_len' in step) ws.send('x'.repeat(step.send_len));
              else if ('send_hex' in step) ws.send(new Uint8Array(step.send_hex.match(/../g).map((h) => parseInt(h, 16))));
              else if ('recv' in step) {
                const deadline = Date.now() + 10000;
                while (!inbox.length && !closed && Date.now() < deadline) await next(deadline - Date.now());
                if (inbox.length) result.messages.push(inbox.shift());
              } else if ('close' in step) ws.close(step.close[0], step.close[1]);
            }
            const deadline = Date.now() + 10000;
            while (!closed && Date.now() < deadline) await next(deadline - Date.now());
            result.close = closed;
            resolve(result);
          };
          run();
        }),
      [cmd.url, cmd.steps],
    );
    return { ...out, protocol, page_status: loaded.status(), jar };
  });
}

async function main() {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
  });
  try {
    reply({ ready: true, version: browser.version() });
    for await (const line of createInterface({ input: process.stdin })) {
      if (!line.trim()) continue;
      try {
        const cmd = JSON.parse(line);
        if (cmd.op === 'cookies') reply(await cookies(browser, cmd));
        else if (cmd.op === 'ws') reply(await websocket(browser, cmd));
        else reply({ error: `unknown op ${cmd.op}` });
      } catch (error) {
        reply({ error: String(error.message || error).split('\n')[0] });
      }
    }
  } finally {
    await browser.close().catch(() => {});
  }
}

try {
  await main();
} catch (error) {
  reply({ ready: false, error: String(error.message || error) });
  process.exitCode = 1;
}
