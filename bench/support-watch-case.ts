/**
 * One case of bench/watch.ts: a fresh cache (embedded or AWS on the emulators) watching N tags of
 * a local registry behind the counting proxy, measured step by step. The cache is composed in
 * process with a clock that the case moves forward by hand, so "every watch is due" and "the tag
 * TTL has expired" take no waiting; everything else (registry, proxy, DynamoDB Local, fauxqs,
 * the in-process job runner) is real and runs on wall time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import { type Composition, composeAws, composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import type { Digest } from '../lib/digest.ts';
import { createRouter } from '../lib/engine/router.ts';
import { InProcessDispatcher } from '../lib/jobs/in-process-dispatcher.ts';
import { parsePullParams, parseReference, repositoryName } from '../lib/reference.ts';
import { freshResourceNames } from '../test/support/aws-emulators.ts';
import { bodyBytes } from '../test/support/aws-save-backend.ts';
import { generateImage } from '../test/support/image-factory.ts';
import { pushImage } from '../test/support/push.ts';
import type { RegistryServer } from '../test/support/registry-server.ts';
import { log, median, seconds } from './support.ts';
import { type CountingProxy, startCountingProxy } from './support-counting-proxy.ts';

export type Backend = 'embedded' | 'aws';

/** What reached the upstream in one step, by kind. */
export interface Upstream {
  heads: number;
  manifestGets: number;
  blobGets: number;
  other: number;
}

/** A timed step: wall time, upstream requests, DynamoDB requests (AWS only). */
export interface Step {
  ms: number;
  upstream: Upstream;
  dynamo?: { total: number; byOperation: Record<string, number> };
}

export interface CaseResult {
  backend: Backend;
  watches: number;
  moved: number;
  /** Median PUT /cache/watch of a new watch, early and late in the creation. */
  putFirstMs: number;
  putLastMs: number;
  list: Step;
  unchanged: Step;
  /** The pass itself, then until every moved tag's new image is stored. */
  movedPass: Step & { pullsStarted: number };
  movedStored: Step;
  cronSequential: Step;
  cronFour: Step;
  /** The cron job at 4 at once, on the same 10% moved (it pulls them inline). */
  cronFourMoved: Step;
}

const HOUR = 3_600_000;
const MANIFEST_PATH = /^\/v2\/.+\/manifests\/[^/]+$/;
const BLOB_PATH = /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/;

function upstreamOf(proxy: CountingProxy): Upstream {
  const seen: Upstream = { heads: 0, manifestGets: 0, blobGets: 0, other: 0 };
  for (const [key, n] of proxy.counts) {
    const [method, path = ''] = key.split(' ');
    if (method === 'HEAD' && MANIFEST_PATH.test(path)) seen.heads += n;
    else if (method === 'GET' && MANIFEST_PATH.test(path)) seen.manifestGets += n;
    else if (method === 'GET' && BLOB_PATH.test(path)) seen.blobGets += n;
    else seen.other += n;
  }
  return seen;
}

/** Runs `work` over `items`, `width` at a time. */
async function each<T>(items: T[], width: number, work: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** The watched tags: `repositories` repositories of n / repositories tags each. */
function tagNames(prefix: string, n: number, repositories: number): [string, string][] {
  return Array.from({ length: n }, (_, i) => [
    `library/${prefix}-r${i % repositories}`,
    `t${Math.floor(i / repositories)}`,
  ]);
}

export interface CaseSetup {
  backend: Backend;
  watches: number;
  repositories: number;
  movedPercent: number;
  registry: RegistryServer;
  /** Names the case's repositories; default `w<watches>-<backend>`. */
  prefix?: string;
}

async function compose(backend: Backend, proxyUrl: string, dataDir: string, clock: () => number) {
  const env = {
    IMAGE_CACHE_REGISTRIES: `docker.io=${proxyUrl}`,
    // The budget is what item 2 protects a real registry with; here it would cap the moved tags.
    IMAGE_CACHE_BACKGROUND_BUDGET: 'docker.io=1000000/h',
  };
  const args = ['--data', dataDir, '--tag-ttl', '5m'];
  if (backend === 'embedded') {
    return composeEmbedded(parseServeArgs(args, env), { clock: { now: clock } });
  }
  const names = freshResourceNames();
  const config = parseServeArgs([...args, '--backend', 'aws', '--create-resources'], {
    ...env,
    IMAGE_CACHE_BUCKET: names.bucket,
    IMAGE_CACHE_TABLE: names.table,
  });
  return composeAws(config, { clock: { now: clock } });
}

export async function runCase(setup: CaseSetup): Promise<CaseResult> {
  const { backend, watches: n } = setup;
  const prefix = `${setup.prefix ?? `w${n}`}-${backend}`;
  const tags = tagNames(prefix, n, setup.repositories);
  const moved = tags.filter((_, i) => i % Math.round(100 / setup.movedPercent) === 0);
  log(`${backend} ${n}: pushing ${setup.repositories} images under ${n} tags ...`);
  for (let r = 0; r < setup.repositories; r++) {
    const image = await generateImage({ seed: `${prefix}-r${r}`, layers: 1 });
    const repository = `library/${prefix}-r${r}`;
    const own = tags.filter(([repo]) => repo === repository).map(([, tag]) => tag);
    await pushImage({ url: setup.registry.url, repository }, image, { tags: own });
  }
  const proxy = await startCountingProxy(setup.registry.url);
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-watch-'));
  let offset = 0;
  const composition = await compose(backend, proxy.url, dataDir, () => Date.now() + offset);
  try {
    return await measureCase(setup, composition, proxy, tags, moved, (ms) => {
      offset += ms;
    });
  } finally {
    await composition.close();
    await proxy.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function measureCase(
  setup: CaseSetup,
  composition: Composition,
  proxy: CountingProxy,
  tags: [string, string][],
  moved: [string, string][],
  advance: (ms: number) => void,
): Promise<CaseResult> {
  const { context, operations } = composition;
  const router = createRouter(context);
  const catalog = context.catalog instanceof DynamoCatalog ? context.catalog : undefined;
  const dispatcher = context.jobs?.dispatcher;
  if (!(dispatcher instanceof InProcessDispatcher)) {
    throw new Error('the bench needs jobs run in this process (no job queue)');
  }
  const label = `${setup.backend} ${setup.watches}`;
  const began = performance.now();
  const say = (message: string) =>
    log(`${label} +${seconds(performance.now() - began)} s: ${message}`);
  const call = async (method: string, path: string, query: Record<string, string> = {}) => {
    const response = await router({ method, path, query: new URLSearchParams(query), headers: {} });
    const body = (await bodyBytes(response)).toString();
    if (response.status >= 300 || body.includes('"error"')) {
      throw new Error(`${method} ${path} answered ${response.status}: ${body.slice(0, 300)}`);
    }
    return body;
  };
  const step = async (work: () => Promise<void>): Promise<Step> => {
    proxy.reset();
    catalog?.requests.reset();
    const started = performance.now();
    await work();
    const ms = performance.now() - started;
    return {
      ms,
      upstream: upstreamOf(proxy),
      ...(catalog && {
        dynamo: { total: catalog.requests.total, byOperation: catalog.requests.byOperation() },
      }),
    };
  };

  say(`filling the cache (not timed) ...`);
  await each(tags, 8, async ([repo, tag]) => {
    await context.pulls.pull(parsePullParams(`docker.io/${repo}`, tag));
  });

  say(`creating the watches with PUT /cache/watch, 4 at once ...`);
  const putTimes: number[] = [];
  await each(tags, 4, async ([repo, tag]) => {
    const started = performance.now();
    await call('PUT', `/cache/watch/docker.io/${repo}:${tag}`, { every: '1h' });
    putTimes.push(performance.now() - started);
  });
  const tenth = Math.max(1, Math.floor(putTimes.length / 10));

  const listTimes: number[] = [];
  const list = await step(async () => {
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const body = JSON.parse(await call('GET', '/cache/watch')) as { watches: unknown[] };
      listTimes.push(performance.now() - started);
      if (body.watches.length !== tags.length) throw new Error('the listing lacks watches');
    }
  });
  list.ms = median(listTimes);
  if (list.dynamo) list.dynamo.total /= 5;

  const pass = async (expectChanged: number) => {
    // A whole interval later every watch is due, whatever its phase.
    advance(HOUR + 1000);
    let pulls = 0;
    const measured = await step(async () => {
      const report = await operations.checkWatches();
      if (report.due !== tags.length || report.checked !== tags.length || report.failed > 0) {
        throw new Error(`${label}: pass checked ${JSON.stringify(report)}`);
      }
      if (report.changed !== expectChanged) {
        throw new Error(`${label}: ${report.changed} changed, expected ${expectChanged}`);
      }
      pulls = report.changed;
    });
    return { ...measured, pullsStarted: pulls };
  };

  say(`pass over ${tags.length} unchanged tags ...`);
  const unchanged = await pass(0);

  const moveTags = async (generation: number) => {
    const digests = new Map<string, Digest>();
    await each(moved, 4, async ([repo, tag]) => {
      const image = await generateImage({ seed: `${repo}-${tag}-${generation}`, layers: 1 });
      await pushImage({ url: setup.registry.url, repository: repo }, image, { tags: [tag] });
      digests.set(`${repo}:${tag}`, image.digest);
    });
    return digests;
  };
  const verifyMoved = async (digests: Map<string, Digest>) => {
    for (const [repo, tag] of moved) {
      const stored = await context.catalog.getTag(
        repositoryName(parseReference(`docker.io/${repo}`)),
        tag,
      );
      if (stored?.source !== digests.get(`${repo}:${tag}`)) {
        throw new Error(`${label}: ${repo}:${tag} is not stored at its new digest`);
      }
    }
  };

  say(`pass with ${moved.length} of the tags moved ...`);
  const firstMove = await moveTags(1);
  const movedStarted = performance.now();
  const movedPass = await pass(moved.length);
  // The pulls were dispatched during the pass; counted from the pass's start until the last ends.
  await dispatcher.idle();
  const movedStored: Step = {
    ms: performance.now() - movedStarted,
    upstream: upstreamOf(proxy),
    ...(catalog && {
      dynamo: { total: catalog.requests.total, byOperation: catalog.requests.byOperation() },
    }),
  };
  await verifyMoved(firstMove);

  const cron = (width: number) => async () => {
    // Past the tag TTL: each pull asks the upstream again, as a nightly cron job's would.
    advance(HOUR);
    await each(tags, width, async ([repo, tag]) => {
      await call('POST', '/images/create', { fromImage: `docker.io/${repo}`, tag });
    });
  };
  say(`peer, a cron job pulling every tag (sequentially) ...`);
  const cronSequential = await step(cron(1));
  say(`peer, a cron job pulling every tag (4 at once) ...`);
  const cronFour = await step(cron(4));
  say(`peer, 4 at once with ${moved.length} tags moved ...`);
  const secondMove = await moveTags(2);
  const cronFourMoved = await step(cron(4));
  await verifyMoved(secondMove);

  return {
    backend: setup.backend,
    watches: tags.length,
    moved: moved.length,
    putFirstMs: median(putTimes.slice(0, tenth)),
    putLastMs: median(putTimes.slice(-tenth)),
    list,
    unchanged,
    movedPass,
    movedStored,
    cronSequential,
    cronFour,
    cronFourMoved,
  };
}
