import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { chromium } from 'playwright-core';
import { startBackend } from './helpers/backends.js';
import { startLb } from './helpers/lb.js';
import { JarClient, testAgent } from './helpers/client.js';

const TOKEN = 'dashboard-test-token';

describe('dashboard in a real headless browser', () => {
  it('lists the backends; Drain on node-3 (after the token) shows it draining; readable at desktop and phone width', async () => {
    const bs = await Promise.all(['node-1', 'node-2', 'node-3'].map((id) => startBackend(id)));
    const lb = await startLb(`
listeners: [ { name: web, port: 0, host: 127.0.0.1, pool: app } ]
pools:
  app:
    affinity: { mode: cookie, cookie: { secrets: ["dashboard-secret-value"] } }
    backends:
${bs.map((b) => `      - { id: ${b.id}, url: "${b.url}" }`).join('\n')}
admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }
`);
    const agent = testAgent();
    for (let i = 0; i < 9; i++) await new JarClient(lb.url, agent).fetch('/');
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
    onTestFinished(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const origin = `http://127.0.0.1:${lb.app.adminPort()}`;
    const foreign: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(origin)) foreign.push(r.url());
    });
    await page.goto(`http://127.0.0.1:${lb.app.adminPort()}/`);
    // The token is asked once, then kept in sessionStorage.
    await page.fill('#token', TOKEN);
    await page.click('#token-form [type=submit]');
    for (const b of bs) await page.locator(`[data-backend="${b.id}"] [data-field="status"]`).filter({ hasText: /^up$/ }).waitFor({ timeout: 5000 });
    expect(await page.evaluate(() => sessionStorage.getItem('lb.token'))).toBe(TOKEN);
    const started = Date.now();
    await page.click('[data-backend="node-3"] [data-action="drain"]');
    await page.locator('[data-backend="node-3"] [data-field="status"]').filter({ hasText: 'draining' }).waitFor({ timeout: 2000 });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(lb.app.registry.get('node-3')!.adminState).toBe('draining');
    const dir = join('test-artifacts');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'dashboard-1280x800.png'), fullPage: true });
    // Phone width: nothing overflows horizontally.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(dir, 'dashboard-390.png'), fullPage: true });
    // The page works offline: every request it made went to the admin listener itself.
    expect(errors).toEqual([]);
    expect(foreign).toEqual([]);
  });
});
