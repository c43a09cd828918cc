import type { Readable } from 'node:stream';
import type { Clock } from '../../lib/ports/clock.ts';
import type { UpstreamRepository } from '../../lib/ports/upstream.ts';
import { HttpUpstream, type HttpUpstreamOptions } from '../../lib/registry/http-upstream.ts';
import { FakeRegistry, type FakeRegistryOptions } from './fake-registry.ts';

/**
 * Shared setup for HttpUpstream tests: fake registries and clients that are closed after each
 * test, millisecond backoff so retries do not slow the suite, and a clock tests can move.
 */

export const REGISTRY = 'fake.test';
export const FAST_RETRY = { attempts: 4, baseDelayMs: 1, maxDelayMs: 5 };

export function repoOf(repository: string, registry = REGISTRY): UpstreamRepository {
  return { registry, repository };
}

export class ManualClock implements Clock {
  #now: number;
  constructor(start = Date.UTC(2024, 0, 1)) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}

export class Harness {
  readonly #registries: FakeRegistry[] = [];
  readonly #upstreams: HttpUpstream[] = [];

  async registry(options: FakeRegistryOptions = {}): Promise<FakeRegistry> {
    const registry = await FakeRegistry.start(options);
    this.#registries.push(registry);
    return registry;
  }

  upstream(registry: FakeRegistry, options: Partial<HttpUpstreamOptions> = {}): HttpUpstream {
    const upstream = new HttpUpstream({
      registries: new Map([[REGISTRY, registry.url]]),
      retry: FAST_RETRY,
      ...options,
    });
    this.#upstreams.push(upstream);
    return upstream;
  }

  async close(): Promise<void> {
    await Promise.all(this.#upstreams.splice(0).map((upstream) => upstream.close()));
    await Promise.all(this.#registries.splice(0).map((registry) => registry.close()));
  }
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Resolves with the error a promise rejected with; fails the test when it resolved. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the promise to reject, it resolved');
}
