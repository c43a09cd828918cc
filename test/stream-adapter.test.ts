import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { Context } from 'aws-lambda';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { composeEmbedded } from '../lib/composition.ts';
import { parseServeArgs } from '../lib/config.ts';
import type { HttpRequest, HttpResponse } from '../lib/engine/http.ts';
import { createRouter } from '../lib/engine/router.ts';
import { httpApiDeadline, toHttpRequest } from '../lib/lambda/http-api-adapter.ts';
import {
  HTTP_INTEGRATION_CONTENT_TYPE,
  sendStreamed,
  streamDeadline,
} from '../lib/lambda/stream-adapter.ts';
import {
  type FunctionUrlLocal,
  type FunctionUrlLocalOptions,
  type StreamingHandler,
  startFunctionUrlLocal,
} from './support/function-url-local.ts';

/** A Writable that keeps what it is given, with the runtime stream's setContentType. */
class Collector extends Writable {
  chunks: Buffer[] = [];
  contentType: string | undefined;
  setContentType(type: string) {
    this.contentType = type;
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void) {
    this.chunks.push(chunk);
    callback();
  }
  bytes() {
    return Buffer.concat(this.chunks);
  }
}

/** A streaming handler that answers every event with what `respond` gives for its request. */
function streaming(
  respond: (request: HttpRequest, context: Context) => Promise<HttpResponse>,
  options: { limit?: number; saveRedirect?: string } = {},
): StreamingHandler {
  return async (event, responseStream, context) => {
    await sendStreamed(
      responseStream,
      () => respond(toHttpRequest(event, streamDeadline(context)), context),
      options,
    );
  };
}

const started: FunctionUrlLocal[] = [];
afterAll(async () => {
  await Promise.all(started.map((door) => door.close()));
});
async function functionUrl(options: FunctionUrlLocalOptions): Promise<FunctionUrlLocal> {
  const door = await startFunctionUrlLocal(options);
  started.push(door);
  return door;
}

const tar = { 'Content-Type': 'application/x-tar' };

describe('sendStreamed', () => {
  it('writes the JSON prelude, eight NUL bytes, then the body, without hop-by-hop headers', async () => {
    const out = new Collector();
    await sendStreamed(out, async () => ({
      status: 201,
      headers: { 'Content-Type': 'application/json', Connection: 'close', 'Content-Length': '12' },
      body: Readable.from(['{"id":', '"x"}\n']),
    }));
    const bytes = out.bytes();
    const end = bytes.indexOf(Buffer.alloc(8));
    expect(JSON.parse(bytes.subarray(0, end).toString())).toEqual({
      statusCode: 201,
      headers: { 'Content-Type': 'application/json' },
    });
    expect(bytes.subarray(end + 8).toString()).toBe('{"id":"x"}\n');
    expect(out.contentType).toBe(HTTP_INTEGRATION_CONTENT_TYPE);
    expect(out.writableFinished).toBe(true);
  });

  it("keeps a body-less answer's Content-Length in the prelude: a HEAD's, not framing", async () => {
    const out = new Collector();
    await sendStreamed(out, async () => ({
      status: 200,
      headers: {
        'Docker-Content-Digest': 'sha256:x',
        'Content-Length': '736',
        Connection: 'close',
      },
    }));
    const bytes = out.bytes();
    expect(JSON.parse(bytes.subarray(0, bytes.indexOf(Buffer.alloc(8))).toString())).toEqual({
      statusCode: 200,
      headers: { 'Docker-Content-Digest': 'sha256:x', 'Content-Length': '736' },
    });
  });

  it('goes through the runtime’s HttpResponseStream.from where the global exists', async () => {
    const preludes: unknown[] = [];
    vi.stubGlobal('awslambda', {
      streamifyResponse: (handler: unknown) => handler,
      HttpResponseStream: {
        from(stream: Writable, prelude: Record<string, unknown>) {
          preludes.push(prelude);
          return stream;
        },
      },
    });
    try {
      const out = new Collector();
      await sendStreamed(out, async () => ({ status: 204, headers: { 'Api-Version': '1.47' } }));
      expect(preludes).toEqual([{ statusCode: 204, headers: { 'Api-Version': '1.47' } }]);
      // No bytes of its own: the runtime writes the prelude before the (empty) first write.
      expect(out.bytes().length).toBe(0);
      expect(out.writableFinished).toBe(true);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('writes the prelude itself under the empty `awslambda` the AWS SDK leaves outside Lambda', async () => {
    vi.stubGlobal('awslambda', { InvokeStore: undefined });
    try {
      const out = new Collector();
      await sendStreamed(out, async () => ({ status: 204 }));
      expect(out.bytes().toString()).toBe(`{"statusCode":204,"headers":{}}${'\0'.repeat(8)}`);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('cuts a body of unknown length at the cap: the producer stops, the stream breaks', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 4096;
        this.push(Buffer.alloc(4096, 1));
      },
    });
    const out = new Collector();
    await sendStreamed(out, async () => ({ status: 200, headers: tar, body: endless }), {
      limit: 64 * 1024,
    });
    const body = out.bytes().subarray(out.bytes().indexOf(Buffer.alloc(8)) + 8);
    // The cap covers the prelude too: 16 KiB of it is kept free.
    expect(body.length).toBe(48 * 1024);
    expect(endless.destroyed).toBe(true);
    expect(produced).toBeLessThan(256 * 1024);
    // A short body must not look whole: the stream is destroyed with an error, never ended.
    expect(out.writableEnded).toBe(false);
    expect(out.destroyed).toBe(true);
    expect(out.errored?.message).toMatch(/cut at 49152 bytes/);
    expect(logged).toHaveBeenCalledWith(expect.any(String), out.errored);
    logged.mockRestore();
  });
});

describe('deadlines', () => {
  const remaining = (ms: number) => ({ getRemainingTimeInMillis: () => ms });
  it('HTTP API: 30 s or the function’s remaining time, whichever ends first, less 4 s', () => {
    expect(httpApiDeadline(remaining(900_000), 1_000_000)).toBe(1_026_000);
    expect(httpApiDeadline(remaining(12_000), 1_000_000)).toBe(1_008_000);
  });
  it('stream: the function’s remaining time less 10 s', () => {
    expect(streamDeadline(remaining(900_000), 1_000_000)).toBe(1_890_000);
  });
});

describe('function URL (local) with the stream adapter', () => {
  it('streams a binary body intact, and delivers a base64 binary request body', async () => {
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    let received: Buffer | undefined;
    const door = await functionUrl({
      handler: streaming(async (request) => {
        const chunks: Buffer[] = [];
        for await (const chunk of request.body ?? []) chunks.push(chunk as Buffer);
        received = Buffer.concat(chunks);
        // Many small chunks, as a tar writer produces them.
        const pieces = Array.from({ length: 48 }, (_, i) =>
          payload.subarray((i * payload.length) / 48, ((i + 1) * payload.length) / 48),
        );
        return { status: 200, headers: { ...tar, 'X-Extra': 'yes' }, body: Readable.from(pieces) };
      }),
    });
    const sent = Buffer.from([0xff, 0x00, 0xfe, 0x1f, 0x8b]);
    const response = await fetch(`${door.url}/v1.47/images/get?names=a`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: sent,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-extra')).toBe('yes');
    expect(response.headers.get('content-type')).toBe('application/x-tar');
    expect(Buffer.from(await response.arrayBuffer()).equals(payload)).toBe(true);
    expect(received).toEqual(sent);
    expect(door.invocations.at(-1)).toMatchObject({ status: 200, bodyBytes: payload.length });
  });

  it('sends the first bytes while the handler is still producing', async () => {
    const door = await functionUrl({
      handler: streaming(async () => ({
        status: 200,
        headers: { 'Content-Type': 'application/json' },
        body: Readable.from(
          (async function* () {
            yield '{"status":"Pulling fs layer"}\r\n';
            await new Promise((resolve) => setTimeout(resolve, 300));
            yield '{"status":"Pull complete"}\r\n';
          })(),
        ),
      })),
    });
    const response = await fetch(`${door.url}/images/create?fromImage=x`, { method: 'POST' });
    const reader = response.body!.getReader();
    const first = await reader.read();
    // The client holds the first line while the second one is 300 ms away.
    expect(new TextDecoder().decode(first.value)).toContain('Pulling fs layer');
    expect(door.invocations.at(-1)!.handlerSettledMs).toBeUndefined();
    while (!(await reader.read()).done);
    const record = door.invocations.at(-1)!;
    expect(record.handlerSettledMs! - record.firstBodyByteMs!).toBeGreaterThan(200);
  });

  it('answers an error before the head with Docker’s error JSON and no internal detail', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const door = await functionUrl({
      handler: streaming(async (request) => {
        if (request.path === '/throws') throw new Error('secret at 10.0.0.12');
        const failing = new Readable({
          read() {
            this.destroy(new Error('socket hang up at 10.0.0.12'));
          },
        });
        return { status: 200, headers: tar, body: failing };
      }),
    });
    for (const path of ['/throws', '/fails-before-first-chunk']) {
      const response = await fetch(`${door.url}${path}`);
      expect(response.status).toBe(500);
      const text = await response.text();
      expect(JSON.parse(text)).toEqual({ message: expect.any(String) });
      expect(text).not.toMatch(/10\.0\.0\.12/);
    }
    expect(logged).toHaveBeenCalled();
    logged.mockRestore();
  });

  it('breaks the connection when the body fails after the head was sent', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const door = await functionUrl({
      handler: streaming(async () => ({
        status: 200,
        headers: tar,
        body: Readable.from(
          (async function* () {
            yield Buffer.alloc(1024, 1);
            throw new Error('blob missing');
          })(),
        ),
      })),
    });
    const response = await fetch(`${door.url}/images/get?names=x`);
    expect(response.status).toBe(200);
    // A short tar must not look whole: the client sees the transfer fail.
    await expect(response.arrayBuffer()).rejects.toThrow();
    logged.mockRestore();
  });

  it('breaks the connection when a body of unknown length passes the cap', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const endless = new Readable({
      read() {
        this.push(Buffer.alloc(4096, 1));
      },
    });
    const door = await functionUrl({
      handler: streaming(async () => ({ status: 200, headers: tar, body: endless }), {
        limit: 64 * 1024,
      }),
    });
    const response = await fetch(`${door.url}/images/get?names=x`);
    expect(response.status).toBe(200);
    // The client sees the transfer fail, not a clean end of a short tar.
    await expect(response.arrayBuffer()).rejects.toThrow();
    expect(endless.destroyed).toBe(true);
    const record = door.invocations.at(-1)!;
    expect(record.cut).toBe('handler-error');
    expect(record.bodyBytes).toBeLessThanOrEqual(48 * 1024);
    logged.mockRestore();
  });

  it('answers 413 naming the S3 fast path when Content-Length passes the cap, reading nothing', async () => {
    let reads = 0;
    const body = new Readable({
      read() {
        reads += 1;
        this.push(null);
      },
    });
    const door = await functionUrl({
      handler: streaming(
        async () => ({
          status: 200,
          headers: { ...tar, 'Content-Length': String(300 * 2 ** 20) },
          body,
        }),
        {
          saveRedirect: 'https://x.lambda-url.us-east-1.on.aws/images/get?names=big%3A1&redirect=1',
        },
      ),
    });
    const response = await fetch(`${door.url}/images/get?names=big%3A1`);
    expect(response.status).toBe(413);
    const { message } = (await response.json()) as { message: string };
    expect(message).toMatch(/314572800 bytes, more than the \d+ bytes a streamed Lambda response/);
    expect(message).toMatch(/presigned download/);
    expect(message).toContain('/images/get?names=big%3A1&redirect=1');
    expect(message).toContain('image-cache save');
    expect(reads).toBe(0);
    expect(body.destroyed).toBe(true);
  });

  // The stand-in's model of Lambda, checked so the e2e tests built on it can trust it.
  it('the stand-in answers a request over 6 MB with Lambda’s 413, without invoking the handler', async () => {
    let calls = 0;
    const door = await functionUrl({
      handler: streaming(async () => {
        calls++;
        return { status: 200 };
      }),
    });
    const response = await fetch(`${door.url}/images/load`, {
      method: 'POST',
      headers: tar,
      body: randomBytes(6 * 1024 * 1024 + 1),
    });
    expect(response.status).toBe(413);
    expect(response.headers.get('x-amzn-errortype')).toBe('RequestEntityTooLargeException');
    expect(await response.json()).toEqual({
      Message: 'Request must be smaller than 6291456 bytes for the InvokeFunction operation',
    });
    // The event is what Lambda measures: 5 MB of binary is more than 6 MB in base64.
    const inflated = await fetch(`${door.url}/images/load`, {
      method: 'POST',
      headers: tar,
      body: randomBytes(5 * 1024 * 1024),
    });
    expect(inflated.status).toBe(413);
    expect(calls).toBe(0);
    expect(door.invocations.every((record) => !record.invoked)).toBe(true);
  });

  it('hands the route a deadline taken from the function’s remaining time', async () => {
    let deadline: number | undefined;
    const door = await functionUrl({
      timeoutMs: 60_000,
      handler: streaming(async (request) => {
        deadline = request.deadline;
        return { status: 204 };
      }),
    });
    const before = Date.now();
    const response = await fetch(`${door.url}/_ping`);
    expect(response.status).toBe(204);
    expect(deadline).toBeGreaterThanOrEqual(before + 49_000);
    expect(deadline).toBeLessThanOrEqual(Date.now() + 50_000);
  });

  it('throttles past the first bytes and cuts at the function timeout', async () => {
    const door = await functionUrl({
      unthrottledBytes: 64 * 1024,
      bytesPerSecond: 256 * 1024,
      timeoutMs: 2_000,
      handler: streaming(async (request) => ({
        status: 200,
        headers: tar,
        body: Readable.from(
          Array.from({ length: request.path === '/slow' ? 12 : 1024 }, () => Buffer.alloc(16384)),
        ),
      })),
    });
    // 64 KiB free, then 128 KiB at 256 KiB/s: about half a second.
    const t0 = performance.now();
    const ok = await fetch(`${door.url}/slow`);
    expect((await ok.arrayBuffer()).byteLength).toBe(12 * 16384);
    expect(performance.now() - t0).toBeGreaterThan(400);
    // 16 MiB at that rate would take a minute: the 2 s timeout cuts it.
    const cut = await fetch(`${door.url}/long`);
    await expect(cut.arrayBuffer()).rejects.toThrow();
    expect(door.invocations.at(-1)).toMatchObject({ cut: 'timeout' });
  });

  it('cuts a handler writing past the response cap', async () => {
    const door = await functionUrl({
      responseCap: 100_000,
      handler: async (_event, stream) => {
        stream.on('error', () => {});
        stream.setContentType('text/plain');
        for (let i = 0; i < 20 && !stream.destroyed; i++) stream.write(Buffer.alloc(10_000, 97));
        stream.end();
      },
    });
    const response = await fetch(door.url);
    // No prelude: the bytes are a plain 200 body of the stream's content type.
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain');
    await expect(response.text()).rejects.toThrow();
    expect(door.invocations.at(-1)).toMatchObject({ cut: 'cap', bodyBytes: 100_000 });
  });
});

describe('the real router behind the stream adapter', () => {
  it('answers the docker CLI’s HEAD /_ping with its headers and an empty body', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'image-cache-stream-'));
    const composition = composeEmbedded(parseServeArgs(['--data', dataDir], {}));
    try {
      const router = createRouter(composition.context);
      const door = await functionUrl({
        handler: streaming((request) => Promise.resolve(router(request))),
      });
      const ping = await fetch(`${door.url}/_ping`, { method: 'HEAD' });
      expect(ping.status).toBe(200);
      expect(ping.headers.get('api-version')).toBeTruthy();
      const missing = await fetch(`${door.url}/v1.47/images/nope:1/json`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ message: expect.stringMatching(/nope/) });
    } finally {
      await composition.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
