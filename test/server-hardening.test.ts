import { existsSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import {
  CACHE_BACKENDS,
  type CacheBackend,
  type CacheServer,
  pullVia,
  startCacheServer,
} from './support/cache-server.ts';
import { FakeRegistry, pushImage } from './support/fake-registry.ts';

/**
 * What a hostile client, or an upstream as slow as one, does to the server over real sockets:
 * malformed URLs, bodies trickled after a refusal or in place of an upload, a download left
 * running by a client that went away. Each must end quickly and clearly, and the server must
 * keep serving.
 */

interface RawExchange {
  response: string;
  /** Bytes of body the client got to send before the server closed the connection. */
  sent: number;
  /** Whether the server closed the connection while the client still had body to send. */
  cutOff: boolean;
}

/**
 * Sends `head`, then a body one byte every `everyMs` until `maxBytes` or until the server closes
 * the connection; answers what came back.
 */
function trickle(port: number, head: string, everyMs: number, maxBytes: number) {
  return new Promise<RawExchange>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let response = '';
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.on('data', (chunk) => {
      response += chunk.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ response, sent, cutOff: sent < maxBytes });
    });
    socket.on('connect', () => {
      socket.write(head);
      timer = setInterval(() => {
        if (sent >= maxBytes) {
          clearInterval(timer);
          socket.end();
          return;
        }
        socket.write('x');
        sent++;
      }, everyMs);
    });
    socket.setTimeout(60_000, () => reject(new Error('no answer within 60s')));
  });
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}

function bodyOf(response: string): string {
  return response.slice(response.indexOf('\r\n\r\n') + 4);
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(CACHE_BACKENDS)('the server against hostile clients (%s backend)', (backend) => {
  let registry: FakeRegistry;
  let cache: CacheServer | undefined;
  const start = async (flags: string[] = []) => {
    cache = await startCacheServer({
      registries: `docker.io=${registry.url.origin}`,
      flags: ['--gc-interval', '0', ...flags],
      backend: backend as CacheBackend,
    });
    return cache;
  };

  beforeEach(async () => {
    registry = await FakeRegistry.start();
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await cache?.close();
    cache = undefined;
    await registry.close();
  });

  afterAll(async () => {
    if (backend === 'aws') await stopAwsEmulators();
  });

  it.each(['/images/%ff/json', '/v1.47/images/%E0%A4%A/json', '/images/%/history'])(
    'answers %s with a 400 and no stack trace, before authentication',
    async (path) => {
      const errors = vi.spyOn(console, 'error');
      const server = await start(['--require-auth']);
      const response = await fetch(`${server.url}${path}`);
      expect(response.status).toBe(400);
      const body = await response.json();
      expect(body).toEqual({ message: 'malformed percent-encoding in the request path' });
      expect(errors).not.toHaveBeenCalled();
    },
  );

  it('cuts off a body trickled after its 401 within seconds, having sent the 401', async () => {
    const server = await start(['--require-auth']);
    const head =
      'POST /v1.47/images/load HTTP/1.1\r\nHost: cache\r\nContent-Type: application/x-tar\r\n' +
      'Content-Length: 1000000000000\r\n\r\n';
    // A byte every 100 ms for up to a minute: the server must not wait for it.
    const exchange = await trickle(server.port, head, 100, 600);
    expect(statusOf(exchange.response)).toBe(401);
    expect(exchange.cutOff).toBe(true);
    expect(exchange.sent).toBeLessThan(100);
    // Still serving.
    expect((await fetch(`${server.url}/_ping`)).status).toBe(200);
  });

  it('answers 408 to an upload that trickles, judged over --body-timeout', async () => {
    const server = await start(['--body-timeout', '2s', '--min-body-rate', '1KiB']);
    const head =
      'POST /v1.47/images/load HTTP/1.1\r\nHost: cache\r\nContent-Type: application/x-tar\r\n' +
      'Content-Length: 10000000\r\n\r\n';
    const exchange = await trickle(server.port, head, 50, 1200);
    expect(statusOf(exchange.response)).toBe(408);
    expect(JSON.parse(bodyOf(exchange.response)).message).toMatch(/request body too slow/);
    expect(exchange.cutOff).toBe(true);
    expect(await server.manifestDigests()).toEqual([]);
    if (backend === 'embedded') {
      const tmp = join(server.dataDir, 'blobs/tmp');
      await until(
        () => !existsSync(tmp) || readdirSync(tmp).length === 0,
        'the load to release its temp file',
      );
    }
    expect((await fetch(`${server.url}/_ping`)).status).toBe(200);
  });

  it('gives up a dripping download once its client left, closing the upstream connection', async () => {
    const server = await start(['--stall-timeout', '1s']);
    const image = pushImage(registry, 'library/drip', '1', { layerSizes: [200_000] });
    const layerPath = registry.blobPath('library/drip', image.layers[0]!.digest);
    // Ten bytes a second, for as long as anyone listens.
    registry.inject(layerPath, { kind: 'slow', chunkBytes: 1, delayMs: 100 });
    const abort = new AbortController();
    const url = `${server.url}/images/create?fromImage=drip&tag=1`;
    const response = await fetch(url, { method: 'POST', signal: abort.signal });
    const reader = response.body!.getReader();
    let seen = '';
    while (!seen.includes('Downloading')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`pull ended early: ${seen}`);
      seen += Buffer.from(value).toString();
    }
    await until(() => registry.active(layerPath) === 1, 'the layer download to start');
    abort.abort();
    await until(() => registry.active(layerPath) === 0, 'the upstream connection to close');
    if (backend === 'embedded') {
      const tmp = join(server.dataDir, 'blobs/tmp');
      await until(() => readdirSync(tmp).length === 0, 'the temp file to go');
    }
    // The same pull works once the registry serves at speed again.
    const again = await pullVia(server.url, { fromImage: 'drip', tag: '1' });
    expect(again.body).toContain('Downloaded newer image for drip:1');
  });

  it('keeps a slow download going while its client waits', async () => {
    const server = await start(['--stall-timeout', '1s']);
    const image = pushImage(registry, 'library/patient', '1', { layerSizes: [100_000] });
    const layerPath = registry.blobPath('library/patient', image.layers[0]!.digest);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    registry.inject(layerPath, {
      kind: 'slow',
      chunkBytes: 16 * 1024,
      delayMs: 1,
      gate: { afterBytes: 1000, open: gate },
    });
    const pull = pullVia(server.url, { fromImage: 'patient', tag: '1' });
    await until(() => registry.active(layerPath) === 1, 'the layer download to start');
    // Three stall windows without a byte: a waiting client keeps it alive.
    await new Promise((r) => setTimeout(r, 3000));
    expect(registry.active(layerPath)).toBe(1);
    open();
    expect((await pull).body).toContain('Downloaded newer image for patient:1');
  });
});
