// The web page in real Chromium against a real fleet, which chromium_test.go
// (make e2e-web) starts: it opens the page with its token, picks the
// service's revision, opens main.go, clicks the line marked
// //@trace(work), fills the form, waits for hits with values in the
// timeline and inline, opens one as a variable tree, removes the
// tracepoint, and saves screenshots. It prints one JSON line of figures.
import { createRequire } from 'node:module';
import path from 'node:path';

const { RIPTRACE_E2E_CACHE: cache, WEB_URL: url, WEB_LINE: line, WEB_REV: rev, WEB_OUT: out } = process.env;
const { chromium } = createRequire(path.join(cache, 'code-server', 'x.js'))('playwright-core');
const started = Date.now();
const step = (msg) => console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const figures = {};
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 850 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.setDefaultTimeout(60_000);

  // 1. Open the page; first paint as the browser measured it.
  const t0 = Date.now();
  await page.goto(url, { waitUntil: 'load' });
  figures.loadMs = Date.now() - t0;
  figures.firstPaintMs = await page.evaluate(() => {
    const p = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint') || performance.getEntriesByType('paint')[0];
    return p ? Math.round(p.startTime) : -1;
  });
  step(`page loaded in ${figures.loadMs} ms, first contentful paint at ${figures.firstPaintMs} ms`);
  if (await page.evaluate(() => location.hash !== '')) throw new Error('the token stayed in the URL');

  // 2. The fleet lists the host and the service's revision, fetched.
  await page.locator('#fleet .proc', { hasText: 'attached' }).first().waitFor();
  const revBtn = page.locator(`.rev-btn[data-rev="${rev}"]`);
  await page.locator('#services .ok', { hasText: 'ready' }).waitFor();
  step('the fleet shows the service, its revision fetched');
  await revBtn.click();

  // 3. main.go opens; a click on the marked line's number opens the form.
  await page.locator('.file[data-path="main.go"]').waitFor();
  await page.locator('.cm-content', { hasText: '@trace(work)' }).waitFor();
  step('main.go is open at the revision');
  await page.locator('.cm-lineNumbers .cm-gutterElement', { hasText: new RegExp(`^${line}$`) }).click();
  await page.locator('dialog#form[open]').waitFor();
  await page.fill('input[name=logMessage]', 'n={n} m={m}');
  await page.click('#formok');
  await page.locator('.tp-marker').waitFor();
  step('the tracepoint is set: a marker in the gutter');

  // 4. Hits arrive with values: in the timeline and inline on the line.
  const hit = page.locator('#timeline .hit', { hasText: 'n=' }).first();
  await hit.waitFor();
  await page.locator('.hitinfo', { hasText: '×' }).waitFor();
  await page.locator('#tracepoints .st.ok', { hasText: 'installed' }).waitFor();
  step('hits arrive in the timeline and inline');
  figures.hitText = (await hit.textContent()).slice(0, 120);

  // 5. One hit opens as a variable tree.
  await hit.click({ position: { x: 5, y: 5 } });
  await page.locator('#timeline .vars .var .name', { hasText: /^n$/ }).first().waitFor();
  step('a hit opened as a variable tree');
  await page.screenshot({ path: path.join(out, 'web.png') });

  // 6. Remove it: the list empties and the marker goes.
  await page.locator('#tracepoints button.remove').first().click();
  await page.locator('#tracepoints .tp').waitFor({ state: 'detached' });
  await page.locator('.tp-marker').waitFor({ state: 'detached' });
  step('the tracepoint is removed');
  await page.screenshot({ path: path.join(out, 'web-removed.png') });
  console.log(JSON.stringify(figures));
} finally {
  await browser.close();
}
