/**
 * What /metrics costs on a hot path: N warm blob GETs through the registry door (stored blob,
 * read from the store to the last byte) with the process's CacheMetrics counting, and the same
 * requests with a CacheMetrics whose counting methods do nothing, alternating rounds so both
 * see the same machine; then N and 10x N, and the time of one scrape after them.
 *
 *   npm run bench:metrics             N = 2,000 (and 20,000)
 *   npm run bench:metrics -- 500      another N
 *
 * Through the router without a socket, so the difference is not drowned in TCP: this is the
 * upper bound of what counting adds to a request.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import { sha256 } from '../lib/digest.ts';
import type { HttpResponse } from '../lib/engine/http.ts';
import { createRouter, type Router } from '../lib/engine/router.ts';
import { CacheMetrics } from '../lib/metrics/cache-metrics.ts';

/** The same object to the router, with the counting on the request path switched off. */
class Uncounted extends CacheMetrics {
  override request(): void {}
  override lookup(): void {}
  override bytesServed(): void {}
}

const BLOB_BYTES = 4096;
const ROUNDS = 5;

async function drain(response: HttpResponse): Promise<void> {
  const body = response.body;
  if (body instanceof Readable) for await (const _ of body);
}

async function timeGets(router: Router, path: string, count: number): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const response = await router({
      method: 'GET',
      path,
      query: new URLSearchParams(),
      headers: {},
    });
    if (response.status !== 200) throw new Error(`GET ${path}: ${response.status}`);
    await drain(response);
  }
  return performance.now() - started;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 2000);
  const dataDir = mkdtempSync(join(tmpdir(), 'image-cache-bench-metrics-'));
  const config = parseServeArgs(['--data', dataDir, '--gc-interval', '0'], {
    IMAGE_CACHE_REGISTRIES: 'docker.io=http://127.0.0.1:9',
  });
  const composition = composeEmbedded(config);
  try {
    const { context } = composition;
    const bytes = Buffer.alloc(BLOB_BYTES, 7);
    const digest = sha256(bytes);
    await context.blobs.write(Readable.from([bytes]), { digest, size: bytes.length });
    await context.catalog.addBlob({ digest, size: bytes.length }, Date.now());
    const path = `/v2/library/bench/blobs/${digest}`;
    const counted = createRouter(context);
    const uncounted = createRouter({ ...context, metrics: new Uncounted() });
    await timeGets(counted, path, 200);
    await timeGets(uncounted, path, 200);
    console.log(
      `warm blob GETs of ${BLOB_BYTES} bytes through the router, best of ${ROUNDS} rounds`,
    );
    console.log('requests | without metrics | with metrics | per request added');
    for (const count of [n, 10 * n]) {
      let best = { without: Number.POSITIVE_INFINITY, with: Number.POSITIVE_INFINITY };
      for (let round = 0; round < ROUNDS; round++) {
        best = {
          without: Math.min(best.without, await timeGets(uncounted, path, count)),
          with: Math.min(best.with, await timeGets(counted, path, count)),
        };
      }
      const added = ((best.with - best.without) / count) * 1000;
      console.log(
        `${count} | ${best.without.toFixed(0)} ms | ${best.with.toFixed(0)} ms | ${added.toFixed(2)} µs`,
      );
    }
    // The calls a counted blob GET makes, alone: what the rounds above cannot resolve.
    const alone = new CacheMetrics();
    const calls = 10 * n;
    const callsStarted = performance.now();
    for (let i = 0; i < calls; i++) {
      alone.lookup('blob', true, 'docker.io', 'registry');
      alone.bytesServed('registry', BLOB_BYTES);
      alone.request('registry', 200);
    }
    const perCall = ((performance.now() - callsStarted) / calls) * 1000;
    console.log(`the three counting calls of one blob GET, alone: ${perCall.toFixed(2)} µs`);
    const started = performance.now();
    const text = await context.metrics.prometheusText();
    console.log(`one scrape: ${(performance.now() - started).toFixed(2)} ms, ${text.length} bytes`);
  } finally {
    await composition.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
