/**
 * The Lambda handlers write what their invocation counted into the hourly history at its end:
 * one UpdateItem when the counters grew, nothing when they did not, and the scheduled prune
 * leaves the storage gauges beside its counts. DynamoDB Local and fauxqs stand in for AWS; the
 * runtime is primed with a totals source the test counts by hand, as CacheMetrics will be.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import { type LambdaRuntime, lambdaRuntime } from '../lib/lambda/runtime.ts';
import { zeroTotals } from '../lib/metrics/stats-recorder.ts';
import type { StatsReport } from '../lib/stats/stats-report.ts';
import { apiEvent, lambdaContext } from './support/lambda-http-event.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';

const totals = zeroTotals();
let stack: ServerlessStack;
let runtime: LambdaRuntime;
let catalog: DynamoCatalog;

beforeAll(async () => {
  stack = await startServerlessStack('stats-lambda');
  // Primed before the first invocation, so the container's runtime has the totals source.
  runtime = await lambdaRuntime(process.env, { totals: () => totals });
  catalog = runtime.composition.context.catalog as DynamoCatalog;
}, 120_000);

afterAll(async () => {
  await stack?.close();
  await stopServerlessProcess();
});

describe('the Lambda handlers flush the stats at the end of each invocation', () => {
  it('api: one UpdateItem with what the invocation counted, none when nothing changed', async () => {
    const { handler } = await import('../functions/api.ts');
    totals.requests += 2;
    totals.manifestHits += 1;
    catalog.requests.reset();
    expect((await handler(apiEvent('GET', '/_ping'), lambdaContext(30_000))).statusCode).toBe(200);
    expect(catalog.requests.byOperation()).toEqual({ UpdateItem: 1 });
    expect((await catalog.listHours(0)).map((hour) => hour.counters)).toEqual([
      { requests: 2, manifestHits: 1 },
    ]);

    catalog.requests.reset();
    expect((await handler(apiEvent('GET', '/_ping'), lambdaContext(30_000))).statusCode).toBe(200);
    expect(catalog.requests.byOperation()).toEqual({});

    const answer = await handler(
      apiEvent('GET', '/cache/stats', { authorization: `Bearer ${stack.tokens.read}` }, 'since=1h'),
      lambdaContext(30_000),
    );
    expect(answer.statusCode).toBe(200);
    const report = JSON.parse(answer.body ?? '') as StatsReport;
    expect(report.totals).toEqual(totals);
    expect(report.pullsSaved).toBe(1);
  });

  it('prune: the storage gauges of its collection and its own counts', async () => {
    const { handler } = await import('../functions/prune.ts');
    totals.gcRuns += 1;
    await handler();
    const hours = await catalog.listHours(0);
    expect(hours).toHaveLength(1);
    expect(hours[0]?.counters).toEqual({ requests: 2, manifestHits: 1, gcRuns: 1 });
    expect(hours[0]?.gauges).toMatchObject({ storedBytes: 0, storedBlobs: 0, images: 0 });
    expect(hours[0]?.gauges.storageMeasuredAt).toBeGreaterThan(Date.now() - 60_000);
  });
});
