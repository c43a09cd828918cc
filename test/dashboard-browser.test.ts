/**
 * The dashboard (/cache/ui/) in headless Chromium, over the project's own server (embedded
 * backend) after real work: images pulled from a real registry (one twice, one also through the
 * registry door), one pinned, one saved, a dangling one pruned, a collection run. The page must
 * show what the JSON endpoints and `image ls` say, draw its plots, sort by keyboard, log no
 * errors, and with access control on ask for a token, refuse a wrong one and accept a right one.
 * Screenshots go to test-artifacts/.
 */

import type { Readable } from 'node:stream';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { HANDOVER_MARGIN_MS } from '../lib/engine/job-deadline.ts';
import { createRouter } from '../lib/engine/router.ts';
import type { ImageUsage } from '../lib/image-usage.ts';
import type { GcReport } from '../lib/ports/gc-report-log.ts';
import { launchChromium, openPage, screenshot } from './support/browser.ts';
import { type CacheServer, pullVia, startCacheServer } from './support/cache-server.ts';
import { generateImage } from './support/image-factory.ts';
import { parsePrometheusText } from './support/prometheus-text.ts';
import { pushImage } from './support/push.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';

let registry: RegistryServer;
let cache: CacheServer;
let browser: Browser;

async function get<T>(server: CacheServer, path: string): Promise<T> {
  const response = await fetch(new URL(path, server.url));
  expect(response.status, path).toBe(200);
  return (await response.json()) as T;
}

async function post(server: CacheServer, path: string): Promise<unknown> {
  const response = await fetch(new URL(path, server.url), { method: 'POST' });
  expect(response.status, path).toBe(200);
  return response.json();
}

async function pull(server: CacheServer, image: string, tag: string): Promise<void> {
  const result = await pullVia(server.url, { fromImage: image, tag });
  expect(result.status).toBe(200);
  expect(result.body).not.toContain('"error"');
}

/**
 * A pull behind a front door with a deadline (as on Lambda) runs as a job: the same catalog file
 * through a second composition whose router gets a deadline, as the Lambda adapters set it.
 */
async function pullAsJob(server: CacheServer, image: string, tag: string): Promise<void> {
  const config = parseServeArgs(['--data', server.dataDir, '--gc-interval', '0'], {
    IMAGE_CACHE_REGISTRIES: `docker.io=${registry.url}`,
  });
  const front = composeEmbedded(config);
  try {
    const response = await createRouter(front.context)({
      method: 'POST',
      path: '/v1.47/images/create',
      query: new URLSearchParams({ fromImage: image, tag }),
      headers: {},
      deadline: Date.now() + HANDOVER_MARGIN_MS + 30_000,
    });
    expect(response.status).toBe(200);
    let text = '';
    for await (const chunk of response.body as Readable) text += String(chunk);
    expect(text).toContain('Status: Downloaded newer image');
  } finally {
    await front.close();
  }
}

/** Waits until the page loaded its data (or showed the login), then answers how. */
async function loaded(page: Page): Promise<string | null> {
  await page.waitForSelector('body[data-loaded]');
  return page.getAttribute('body', 'data-loaded');
}

/** The images table as the page shows it: one object per row, with the cells' raw values. */
function imageRows(page: Page) {
  return page.$$eval('#images-body tr', (rows) =>
    rows.map((row) => {
      const cells = [...row.children] as HTMLElement[];
      return {
        id: cells[0]?.dataset.value ?? '',
        names: cells[0]?.textContent ?? '',
        size: Number(cells[1]?.dataset.value),
        lastUsed: cells[3]?.dataset.value ?? '',
        pins: cells[4]?.textContent ?? '',
        pulls: Number(cells[5]?.dataset.value),
      };
    }),
  );
}

beforeAll(async () => {
  registry = await startRegistry();
  const images = {
    nginx: await generateImage({ seed: 'ui-nginx', format: 'docker', layers: 2 }),
    busybox: await generateImage({ seed: 'ui-busybox', format: 'oci', layers: 1 }),
    appOld: await generateImage({ seed: 'ui-app-1', format: 'docker', layers: 1 }),
    appNew: await generateImage({ seed: 'ui-app-2', format: 'docker', layers: 1 }),
    redis: await generateImage({ seed: 'ui-redis', format: 'oci', layers: 1 }),
  };
  const at = (repository: string) => ({ url: registry.url, repository });
  await pushImage(at('library/nginx'), images.nginx, { tags: ['latest', '1.27'] });
  await pushImage(at('library/busybox'), images.busybox, { tags: ['1'] });
  await pushImage(at('library/redis'), images.redis, { tags: ['7'] });
  await pushImage(at('team/app'), images.appOld, { tags: ['0'] });
  await pushImage(at('team/app'), images.appNew, { tags: ['1'] });
  // No watch schedule: the watched tag below stays unchecked while the page is read.
  cache = await startCacheServer({
    registries: `docker.io=${registry.url}`,
    flags: ['--watch-tick', '0'],
  });

  await pull(cache, 'nginx', '1.27');
  await pull(cache, 'busybox', '1');
  await pull(cache, 'busybox', '1'); // from the cache: a pull all the same
  // A daemon using the cache as its mirror: a registry-door manifest GET is a pull too.
  const mirrored = await fetch(new URL('/v2/library/busybox/manifests/1', cache.url), {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  expect(mirrored.status).toBe(200);
  await mirrored.arrayBuffer();
  await pull(cache, 'team/app', '1');
  // Pulled by digest only: a dangling image (no tag), for prune.
  await pull(cache, 'team/app', images.appOld.digest);

  const pin = await fetch(new URL('/cache/pins/nginx:1.27?note=release', cache.url), {
    method: 'PUT',
  });
  expect(pin.status).toBe(201);
  const saved = await fetch(new URL('/images/busybox:1/get', cache.url));
  expect(saved.status).toBe(200);
  await saved.arrayBuffer();
  const pruned = (await post(cache, '/images/prune')) as { ImagesDeleted: unknown[] | null };
  expect(pruned.ImagesDeleted?.length).toBeGreaterThan(0);
  await post(cache, '/cache/gc?grace=0s');
  await pullAsJob(cache, 'docker.io/library/redis', '7');
  // Stored already: the watch starts no job, and its first check is within the hour.
  const watched = await fetch(new URL('/cache/watch/busybox:1?every=1h', cache.url), {
    method: 'PUT',
  });
  expect(watched.status).toBe(201);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await cache?.close();
  await registry?.stop();
});

describe('the dashboard in Chromium (embedded backend, access control off)', () => {
  it('shows the images as the catalog has them: names, sizes, pins and pull counts', async () => {
    const listing = await get<ImageUsage[]>(cache, '/cache/images');
    const ls = await get<Array<{ Id: string; Size: number; RepoTags: string[] }>>(
      cache,
      '/images/json',
    );
    // The listing agrees with `docker image ls` (the peer), image for image.
    expect(listing.map((i) => [i.Id, i.Size, [...i.RepoTags].sort()]).sort()).toEqual(
      ls.map((i) => [i.Id, i.Size, [...i.RepoTags].sort()]).sort(),
    );
    const byName = new Map(listing.map((i) => [i.RepoTags[0], i]));
    expect([...byName.keys()].sort()).toEqual(['busybox:1', 'nginx:1.27', 'redis:7', 'team/app:1']);
    // What was done: two Engine API pulls and a registry GET of busybox, one pull of nginx, one
    // of the tagged app (the one pulled by digest was pruned with its count).
    expect(byName.get('busybox:1')?.Pulls).toBe(3);
    expect(byName.get('nginx:1.27')?.Pulls).toBe(1);
    expect(byName.get('team/app:1')?.Pulls).toBe(1);
    expect(byName.get('redis:7')?.Pulls).toBe(1);
    expect(byName.get('nginx:1.27')?.Pins).toEqual([
      { Name: 'docker.io/library/nginx:1.27', Note: 'release', ExpiresAt: null },
    ]);
    expect(byName.get('busybox:1')?.Pins).toEqual([]);
    // The manifests listed are those in the catalog.
    const stored = new Set(await cache.manifestDigests());
    for (const image of listing) for (const m of image.Manifests) expect(stored.has(m)).toBe(true);

    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    expect(await loaded(page)).toBe('true');
    const rows = await imageRows(page);
    expect(rows.map((r) => r.id).sort()).toEqual(listing.map((i) => i.Id).sort());
    for (const image of listing) {
      const row = rows.find((r) => r.id === image.Id)!;
      expect(row.names).toBe(image.RepoTags.join(', '));
      expect(row.size).toBe(image.Size);
      expect(row.pulls).toBe(image.Pulls);
      expect(row.lastUsed).toBe(image.LastUsed);
      expect(row.pins).toBe(image.Pins.map((p) => p.Name).join(', ') || '-');
    }
    // Filtering by name narrows the table.
    await page.fill('#filter', 'busy');
    expect((await imageRows(page)).map((r) => r.names)).toEqual(['busybox:1']);
    await page.fill('#filter', '');
    await screenshot(page, 'dashboard-overview');
    expect(problems).toEqual([]);
  });

  it('shows the collections /cache/gc reports, as a table and a plot', async () => {
    const reports = await get<GcReport[]>(cache, '/cache/gc');
    // The prune's collection and the manual one.
    expect(reports.map((r) => r.trigger).sort()).toEqual(['manual', 'prune']);
    expect(reports.some((r) => r.deleted.bytes > 0)).toBe(true);
    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    await loaded(page);
    const shown = await page.$$eval('#gc-body tr', (rows) =>
      rows.map((row) => ({
        id: (row.children[0] as HTMLElement).dataset.value,
        trigger: row.children[1]?.textContent,
        deleted: Number((row.children[2] as HTMLElement).dataset.value),
      })),
    );
    expect(shown).toEqual(
      reports.map((r) => ({ id: r.id, trigger: r.trigger, deleted: r.deleted.bytes })),
    );
    // The plot: one bar per collection, oldest first, each bar's value the bytes it deleted.
    const bars = await page.$$eval('#gc-plot svg rect.bar', (rects) =>
      rects.map((r) => ({
        value: Number(r.getAttribute('data-value')),
        height: Number(r.getAttribute('height')),
      })),
    );
    expect(bars.map((b) => b.value)).toEqual(reports.map((r) => r.deleted.bytes).reverse());
    expect(bars.some((b) => b.height > 0)).toBe(true);
    expect(await page.getAttribute('#gc-plot svg', 'role')).toBe('img');
    expect(problems).toEqual([]);
  });

  it('shows the running and recent jobs /cache/jobs lists', async () => {
    const jobs = await get<Array<{ id: string; kind: string; status: string; subject: string }>>(
      cache,
      '/cache/jobs',
    );
    // The pull behind a deadline ran as a job and finished.
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ kind: 'pull', status: 'succeeded' });
    expect(jobs[0]!.subject).toContain('redis');
    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    await loaded(page);
    const shown = await page.$$eval('#jobs-body tr', (rows) =>
      rows.map((row) => ({
        id: (row.children[0] as HTMLElement).dataset.value,
        kind: row.children[1]?.textContent,
        subject: row.children[2]?.textContent,
        status: row.children[3]?.textContent,
      })),
    );
    expect(shown).toEqual(
      jobs.map((j) => ({ id: j.id, kind: j.kind, subject: j.subject, status: j.status })),
    );
    expect(await page.textContent('#jobs-count')).toContain('0 running or queued, 1 ended');
    expect(problems).toEqual([]);
  });

  it('shows the watched tags /cache/watch lists, with their next check', async () => {
    const { watches } = await get<{
      watches: Array<{ name: string; reference: string; every: string; nextCheck: string }>;
    }>(cache, '/cache/watch');
    expect(watches.map((w) => w.reference)).toEqual(['busybox:1']);
    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    await loaded(page);
    const shown = await page.$$eval('#watches-body tr', (rows) =>
      rows.map((row) => ({
        name: (row.children[0] as HTMLElement).dataset.value,
        reference: row.children[0]?.textContent,
        every: row.children[1]?.textContent,
        platforms: row.children[2]?.textContent,
        lastCheck: row.children[3]?.textContent,
      })),
    );
    expect(shown).toEqual(
      watches.map((w) => ({
        name: w.name,
        reference: w.reference,
        every: w.every,
        platforms: 'default',
        lastCheck: 'never',
      })),
    );
    expect(await page.textContent('#watches-budgets')).toContain(
      'docker.io: 0 of 10 background pulls this hour',
    );
    expect(problems).toEqual([]);
  });

  it('lists the allow-listed registries, and says when there is no history yet', async () => {
    const registries = await get<Array<{ Name: string; Credentials: string }>>(
      cache,
      '/cache/registries',
    );
    const { page } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    await loaded(page);
    const shown = await page.$$eval('#upstreams-body tr', (rows) =>
      rows.map((row) => [row.children[0]?.textContent, row.children[2]?.textContent]),
    );
    expect(shown).toEqual(registries.map((r) => [r.Name, r.Credentials]));
  });

  it('sorts the images by a column from the keyboard (Enter, then Space)', async () => {
    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    await loaded(page);
    const header = page.locator('#images th[data-sort="size"]');
    await header.locator('button').focus();
    await page.keyboard.press('Enter');
    expect(await header.getAttribute('aria-sort')).toBe('ascending');
    const up = (await imageRows(page)).map((r) => r.size);
    expect(up).toEqual([...up].sort((a, b) => a - b));
    await page.keyboard.press('Space');
    expect(await header.getAttribute('aria-sort')).toBe('descending');
    const down = (await imageRows(page)).map((r) => r.size);
    expect(down).toEqual([...up].reverse());
    // Only the sorted column claims an order.
    expect(await page.getAttribute('#images th[data-sort="name"]', 'aria-sort')).toBe('none');
    await screenshot(page, 'dashboard-sorted-by-size');
    expect(problems).toEqual([]);
  });

  it('is served with a strict policy, cacheable assets and under 60 KB', async () => {
    const page = await fetch(new URL('/cache/ui/', cache.url));
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    const html = await page.text();
    const assets = [...html.matchAll(/(?:href|src)="(app\.[0-9a-f]{16}\.(?:css|js))"/g)].map(
      (m) => m[1]!,
    );
    expect(assets).toHaveLength(2);
    let total = Buffer.byteLength(html);
    for (const name of assets) {
      const asset = await fetch(new URL(`/cache/ui/${name}`, cache.url));
      expect(asset.status).toBe(200);
      expect(asset.headers.get('cache-control')).toContain('immutable');
      total += Buffer.byteLength(await asset.text());
    }
    expect(total).toBeLessThan(60_000);
    const redirect = await fetch(new URL('/cache/ui', cache.url), { redirect: 'manual' });
    expect(redirect.status).toBe(308);
    expect((await fetch(new URL('/cache/ui/app.0000000000000000.js', cache.url))).status).toBe(404);
  });

  it('plots storage against the budget, the hit ratio and the pulls saved from /cache/stats', async () => {
    const stats = await get<{
      hitRatio: number | null;
      pullsSaved: number;
      hours: unknown[];
      storage: { storedBytes: number; images: number };
    }>(cache, '/cache/stats?since=720h');
    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', cache.url).href);
    await loaded(page);
    expect(Number(await page.getAttribute('[data-figure="storedBytes"]', 'data-value'))).toBe(
      stats.storage.storedBytes,
    );
    expect(Number(await page.getAttribute('[data-figure="images"]', 'data-value'))).toBe(
      stats.storage.images,
    );
    expect(Number(await page.getAttribute('#traffic-totals', 'data-pulls-saved'))).toBe(
      stats.pullsSaved,
    );
    // The same figures as /metrics: this server's whole life is inside the window.
    const metrics = parsePrometheusText(await (await fetch(new URL('/metrics', cache.url))).text());
    const sum = (name: string, labels: Record<string, string> = {}) =>
      metrics.samples
        .filter(
          (m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v),
        )
        .reduce((total, m) => total + m.value, 0);
    expect(stats.pullsSaved).toBeGreaterThan(0);
    expect(sum('image_cache_lookups_total', { kind: 'manifest', result: 'hit' })).toBe(
      stats.pullsSaved,
    );
    expect(sum('image_cache_stored_bytes')).toBe(
      Number(await page.getAttribute('[data-figure="storedBytes"]', 'data-value')),
    );
    expect(sum('image_cache_images')).toBe(
      Number(await page.getAttribute('[data-figure="images"]', 'data-value')),
    );
    expect(await page.locator('#storage-plot svg circle').count()).toBeGreaterThan(0);
    expect(await page.locator('#saved-plot svg rect.bar').count()).toBeGreaterThan(0);
    expect(await page.textContent('#storage-projection')).toContain('straight line');
    await screenshot(page, 'dashboard-history');
    expect(problems).toEqual([]);
  });
});

describe('the dashboard with access control on', () => {
  let guarded: CacheServer;

  beforeAll(async () => {
    guarded = await startCacheServer({
      registries: `docker.io=${registry.url}`,
      flags: ['--require-auth'],
    });
  });

  afterAll(async () => {
    await guarded?.close();
  });

  it('asks for a token, refuses a wrong one, and keeps a right one for the session only', async () => {
    const token = await guarded.token('read', 'dashboard');
    const { page, problems } = await openPage(browser);
    await page.goto(new URL('/cache/ui/', guarded.url).href);
    expect(await loaded(page)).toBe('login');
    expect(await page.isVisible('#login')).toBe(true);
    expect(await page.isVisible('#content')).toBe(false);
    // A labelled field: found by its label, as a screen reader announces it.
    const field = page.getByLabel('Token', { exact: true });
    await field.fill('not-a-token');
    await page.evaluate(() => document.body.removeAttribute('data-loaded'));
    await page.getByRole('button', { name: 'Open the dashboard' }).click();
    expect(await loaded(page)).toBe('login');
    expect(await page.textContent('#login-error')).toContain('refused this token (401)');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await screenshot(page, 'dashboard-token-refused');

    await field.fill(token);
    await page.evaluate(() => document.body.removeAttribute('data-loaded'));
    await field.press('Enter');
    expect(await loaded(page)).toBe('true');
    expect(await page.isVisible('#content')).toBe(true);
    expect(await page.isVisible('#login')).toBe(false);
    expect(await page.evaluate(() => sessionStorage.getItem('image-cache-token'))).toBe(token);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(await page.textContent('#images-body')).toContain('No images cached yet');
    await screenshot(page, 'dashboard-token-accepted');
    // Only the refused token's 401 was logged, nothing else.
    const others = problems.filter((p) => !p.text.includes('401'));
    expect(others).toEqual([]);
  });

  it('serves the page without a token but none of the data', async () => {
    expect((await fetch(new URL('/cache/ui/', guarded.url))).status).toBe(200);
    expect((await fetch(new URL('/cache/images', guarded.url))).status).toBe(401);
  });
});
