// The web page in real Chromium on the demo fleet, which
// chromium_test.go's TestChromiumDemo starts: gateway, orders and payments
// under steady checkouts, on two agents, with this repository as the
// services' remote. It traces one line in each service from the page,
// grouped by order id, waits for one request's hits from the three
// services in the timeline, in the order they ran, saves a screenshot and
// removes the tracepoints. It prints one JSON line of figures.
import { createRequire } from 'node:module';
import path from 'node:path';

const { RIPTRACE_E2E_CACHE: cache, WEB_URL: url, WEB_LINES: linesJSON, WEB_OUT: out } = process.env;
const lines = JSON.parse(linesJSON);
const { chromium } = createRequire(path.join(cache, 'code-server', 'x.js'))('playwright-core');
const started = Date.now();
const step = (msg) => console.error(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const figures = {};
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.setDefaultTimeout(90_000);
  await page.goto(url, { waitUntil: 'load' });
  figures.firstPaintMs = await page.evaluate(() => Math.round((performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint') || { startTime: -1 }).startTime));

  // The one module of the three services, its revision fetched.
  await page.locator('#services .ok', { hasText: 'ready' }).waitFor();
  const t0 = Date.now();
  await page.locator('.rev-btn').first().click();
  await page.locator('#tree details.dir').first().waitFor();
  figures.treeMs = Date.now() - t0;
  figures.treeFiles = await page.evaluate(() => document.querySelectorAll('#tree > .file, #tree details').length);
  step(`the repository's tree opened in ${figures.treeMs} ms`);

  for (const { path: file, line, group } of lines) {
    // Open the file through the tree: demo/, then the service's folder.
    const parts = file.split('/');
    let scope = page.locator('#tree');
    for (const dir of parts.slice(0, -1)) {
      const d = scope.locator(':scope > details.dir', { has: page.locator(':scope > summary', { hasText: new RegExp(`^${dir}/$`) }) });
      if (!(await d.evaluate((e) => e.open))) await d.locator(':scope > summary').click();
      scope = d;
    }
    await page.locator(`.file[data-path="${file}"]`).click();
    await page.locator('#filebar', { hasText: file }).waitFor();
    await page.locator('.cm-content', { hasText: 'package main' }).waitFor();
    // Bring the line into the editor's view: it draws only what shows.
    await page.locator('.cm-scroller').evaluate((s, n) => {
      const h = s.querySelector('.cm-line').getBoundingClientRect().height;
      s.scrollTop = Math.max(0, (n - 10) * h);
    }, line);
    await page.locator('.cm-lineNumbers .cm-gutterElement', { hasText: new RegExp(`^${line}$`) }).click();
    await page.locator('dialog#form[open]').waitFor();
    await page.fill('input[name=group]', group);
    await page.click('#formok');
    await page.locator('dialog#form[open]').waitFor({ state: 'detached' });
    await page.locator('.tp-marker').waitFor();
    step(`traced ${file}:${line}, grouped by ${group}`);
  }

  // One request's hits from the three services, in one block, in order.
  const block = page.locator('#timeline .group')
    .filter({ has: page.locator('.hit', { hasText: 'priceOrder' }) })
    .filter({ has: page.locator('.hit', { hasText: 'charge' }) })
    .filter({ has: page.locator('.hit', { hasText: 'checkout' }) }).first();
  await block.waitFor();
  const rows = await block.locator('.hit').allTextContents();
  figures.request = rows.map((r) => r.slice(0, 110));
  const orders = rows.map((r) => Number(r.match(/^#(\d+)/)[1]));
  if (orders.some((o, i) => i > 0 && o <= orders[i - 1])) throw new Error(`the block is not in timeline order: ${orders}`);
  step('one request, three services, in the order they ran');
  await block.locator('.hit', { hasText: 'priceOrder' }).first().click({ position: { x: 5, y: 5 } });
  await page.locator('#timeline .vars .var .name', { hasText: /^o$/ }).first().waitFor();
  await block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(out, 'web-demo.png') });

  // Remove every tracepoint from the list.
  await page.click('#paused');
  while (await page.locator('#tracepoints button.remove').count()) {
    const n = await page.locator('#tracepoints .tp').count();
    await page.locator('#tracepoints button.remove').first().click();
    await page.waitForFunction((want) => document.querySelectorAll('#tracepoints .tp').length < want, n);
  }
  step('tracepoints removed');
  console.log(JSON.stringify(figures));
} catch (e) {
  const pages = browser.contexts().flatMap((c) => c.pages());
  if (pages.length) {
    await pages[0].screenshot({ path: path.join(out, 'web-demo-failed.png') });
    console.error('the page said:', (await pages[0].locator('body').innerText()).slice(0, 3000));
  }
  throw e;
} finally {
  await browser.close();
}
