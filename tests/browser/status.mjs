// Status-page driver for tests/status_page.rs: `node status.mjs URL SCREENSHOT`. Opens the admin status page in
// Debian's Chromium (headless, fresh profile), waits until the page's script has refreshed it once (its <main>
// carries a newer data-generated), saves a full-page screenshot and prints one JSON line with what the DOM shows:
// {"ok":true,"refreshed":true,"cells":{id: text},"routes":{name:{streams,ups,states:{…},rows:[{key,upstream,ws,sse,
// "long-poll",buffered}]}},"console":[…]}.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
const executablePath = process.env.PUSHBRIDGE_CHROMIUM || '/usr/bin/chromium';
const profile = mkdtempSync(join(tmpdir(), 'pushbridge-status-'));
let context;
const consoleLines = [];

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1200, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
  });
  // Without it Chromium refuses the page's own requests to loopback (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
  await context.grantPermissions(['local-network-access']).catch(() => {});
  const page = await context.newPage();
  page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error}`));
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  const first = await page.getAttribute('main', 'data-generated');
  // The script swaps <main> for a freshly fetched one every 2 s.
  await page.waitForFunction(
    (before) => document.querySelector('main').dataset.generated !== before,
    first,
    { timeout: 10000, polling: 100 },
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  const dom = await page.evaluate(() => {
    const cells = {};
    for (const el of document.querySelectorAll('main [id]')) cells[el.id] = el.textContent.trim();
    const routes = {};
    for (const section of document.querySelectorAll('section.route')) {
      const text = (sel) => section.querySelector(sel)?.textContent.trim();
      const states = {};
      for (const el of section.querySelectorAll('[class^="n-"]')) states[el.className.slice(2)] = el.textContent.trim();
      const rows = [...section.querySelectorAll('tr.stream')].map((tr) => {
        const cell = (sel) => tr.querySelector(sel)?.textContent.trim();
        return {
          key: tr.cells[0].textContent,
          keyHtml: tr.cells[0].innerHTML,
          upstream: tr.cells[1].textContent,
          ws: cell('.sub-ws'),
          sse: cell('.sub-sse'),
          'long-poll': cell('.sub-long-poll'),
          buffered: cell('.buffered'),
        };
      });
      routes[section.dataset.route] = { streams: text('.streams'), ups: text('.ups'), states, rows };
    }
    return { cells, routes, injected: document.querySelectorAll('main b, main img').length };
  });
  process.stdout.write(JSON.stringify({ ok: true, refreshed: true, ...dom, console: consoleLines }) + '\n');
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error.message || error), console: consoleLines }) + '\n');
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
