import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex } from '../lib/digest.ts';
import { VIEWER_HEADERS } from '../lib/lambda/viewer-headers.ts';
import { systemClock } from '../lib/ports/clock.ts';
import { prepareSave } from '../lib/save/save.ts';
import {
  type FunctionUrlLocal,
  type StreamingHandler,
  startFunctionUrlLocal,
} from './support/function-url-local.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { pushImage } from './support/push.ts';
import { readTar } from './support/save-fixtures.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';

/**
 * The streaming front door without AWS: functions/api-stream.ts behind a local Lambda function
 * URL with InvokeMode RESPONSE_STREAM (payload 2.0 events, 6 MB requests, 200 MB streamed
 * responses throttled to 2 MB/s after the first 6 MB), on the same back end as serverless-e2e
 * (test/support/serverless-stack.ts). The judge is the real docker CLI with DOCKER_HOST on the
 * function URL: pull progress arrives as the pull runs, and `docker save` of an image past the
 * buffered 6 MB works without a redirect.
 */
afterAll(stopServerlessProcess);

const MiB = 1024 * 1024;

describe('serverless streaming: docker CLI -> function URL (local) -> api-stream Lambda -> S3 + DynamoDB', () => {
  let stack: ServerlessStack;
  let door: FunctionUrlLocal;
  /** The same function with its response cap lowered to 8 MiB. */
  let capped: FunctionUrlLocal;
  let small: GeneratedImage;
  let big: GeneratedImage;
  /** The first bytes of the pull's progress that reached the client. */
  let firstProgress: string | undefined;

  beforeAll(async () => {
    stack = await startServerlessStack('function-url-e2e');
    small = await generateImage({ seed: 'furl-small', format: 'docker', layers: 2 });
    // Incompressible: about 16 MiB saved, well past a buffered answer, under the stream's cap.
    big = await generateImage({
      seed: 'furl-big',
      format: 'oci',
      layers: [{ files: [6 * MiB] }, { files: [5 * MiB] }, { files: [5 * MiB] }],
    });
    const { url } = stack.registry;
    await pushImage({ url, repository: 'library/small' }, small, { tags: ['1'] });
    await pushImage({ url, repository: 'library/big' }, big, { tags: ['1'] });

    const fn = (await import('../functions/api-stream.ts')) as {
      streamHandler: StreamingHandler;
      createStreamHandler(options: { limit: number }): StreamingHandler;
    };
    door = await startFunctionUrlLocal({
      handler: fn.streamHandler,
      onFirstBody: (record, bytes) => {
        if (record.rawPath.endsWith('/images/create')) firstProgress ??= bytes.toString();
      },
    });
    capped = await startFunctionUrlLocal({
      handler: fn.createStreamHandler({ limit: 8 * MiB }),
    });
  });

  afterAll(async () => {
    await door?.close();
    await capped?.close();
    await stack?.close();
  });

  const cli = (args: string[], token?: string) => stack.docker(door.hostPort, args, token);
  const lastInvocation = (on = door) => on.invocations.at(-1)!;

  it('pulls with progress streamed while the pull runs', async () => {
    const result = await cli(['pull', 'big:1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Digest: ${big.digest}`);
    expect(result.stdout).toContain('Status: Downloaded newer image for big:1');
    const pull = door.invocations.find((i) => i.rawPath.endsWith('/images/create'))!;
    expect(pull).toMatchObject({ status: 200, invoked: true });
    expect(pull.cut).toBeUndefined();
    // The first lines went out on their own, long before the last ones (16 MiB later).
    expect(firstProgress).toMatch(/Pulling from library\/big/);
    expect(firstProgress).not.toMatch(/Download complete|Pull complete|Digest:/);
    expect(pull.endMs! - pull.firstBodyByteMs!).toBeGreaterThan(100);
    expect((await stack.adapters.catalog.listManifests()).map((m) => m.digest)).toContain(
      big.digest,
    );
    expect((await cli(['pull', 'small:1'])).code).toBe(0);
  });

  it('lists the pulled images', async () => {
    const ls = await cli(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
    expect(ls.code).toBe(0);
    expect(ls.stdout.trim().split('\n').sort()).toEqual(
      [
        `big:1 ${digestHex(big.configBlob.digest).slice(0, 12)}`,
        `small:1 ${digestHex(small.configBlob.digest).slice(0, 12)}`,
      ].sort(),
    );
  });

  // What CloudFront's origin access control delivers: its SigV4 signature as Authorization, the
  // URL's own host, and the viewer's two in the copies the viewer-request function made.
  it('behind CloudFront, routes with the viewer token and host from their copies', async () => {
    const throughCloudFront = (copies: Record<string, string>) =>
      fetch(`${door.url}/images/json`, {
        headers: {
          authorization: 'AWS4-HMAC-SHA256 Credential=ASIA.../lambda/aws4_request, Signature=0f',
          'x-amz-cf-id': 'cf-request-id',
          ...copies,
        },
      });
    const viewer = {
      [VIEWER_HEADERS.authorization]: `Bearer ${stack.tokens.read}`,
      [VIEWER_HEADERS.host]: 'images.example.com',
    };
    expect((await throughCloudFront(viewer)).status).toBe(200);
    expect((await throughCloudFront({})).status).toBe(401);
    // Without CloudFront's request id the copies are not read: the signature is refused.
    const direct = await fetch(`${door.url}/images/json`, {
      headers: { authorization: 'AWS4-HMAC-SHA256 Signature=0f', ...viewer },
    });
    expect(direct.status).toBe(401);
  });

  it('saves an image past 6 MB with docker save -o, streamed whole and verifiable', async () => {
    const out = join(stack.work.path, 'big.tar');
    const result = await cli(['save', '-o', out, 'big:1'], stack.tokens.read);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const saved = await readFile(out);
    expect(saved.length).toBeGreaterThan(16 * MiB);
    expect(lastInvocation()).toMatchObject({
      rawPath: expect.stringMatching(/\/images\/get$/),
      status: 200,
      bodyBytes: saved.length,
    });
    expect(lastInvocation().cut).toBeUndefined();

    const members = await readTar(saved);
    const manifest = JSON.parse(members.find((m) => m.name === 'manifest.json')!.data.toString());
    expect(manifest).toEqual([
      expect.objectContaining({
        Config: `blobs/sha256/${digestHex(big.configBlob.digest)}`,
        RepoTags: ['big:1'],
        Layers: big.layers.map((layer) => `blobs/sha256/${digestHex(layer.digest)}`),
      }),
    ]);
    for (const layer of big.layers) {
      const member = members.find((m) => m.name === `blobs/sha256/${digestHex(layer.digest)}`);
      expect(member?.size).toBe(layer.size);
      expect(createHash('sha256').update(member!.data).digest('hex')).toBe(digestHex(layer.digest));
    }
    // The same bytes the S3 export (and the redirect behind API Gateway) serves.
    const tarball = await prepareSave({ ...stack.adapters, clock: systemClock }, ['big:1']);
    const chunks: Buffer[] = [];
    for await (const chunk of tarball.open()) chunks.push(chunk as Buffer);
    expect(saved.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('answers a save past the response cap with a 413 naming the fast path', async () => {
    const result = await stack.docker(capped.hostPort, [
      'save',
      '-o',
      join(stack.work.path, 'capped.tar'),
      'big:1',
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/streamed Lambda response/);
    expect(result.stderr).toMatch(/presigned download/);
    expect(result.stderr).toContain('.lambda-url.us-east-1.on.aws/');
    expect(result.stderr).toContain('/images/get?names=big%3A1&redirect=1');
    expect(result.stderr).toContain('image-cache save');
    expect(lastInvocation(capped)).toMatchObject({ status: 413, invoked: true });
    // The refusal came before any of the tar: the body is the error JSON alone.
    expect(lastInvocation(capped).bodyBytes).toBeLessThan(1024);
    // Under the cap, the same function streams.
    const smallSave = await stack.docker(capped.hostPort, [
      'save',
      '-o',
      join(stack.work.path, 'small.tar'),
      'small:1',
    ]);
    expect(smallSave.code).toBe(0);
  });

  // The 413 itself is the local function URL's model of Lambda; ours is the CLI's report of it.
  it('reports the 413 for a load body over 6 MB and stores nothing (the stand-in answers as Lambda)', async () => {
    const archive = join(stack.work.path, 'too-big.tar');
    await writeFile(archive, randomBytes(6 * MiB + 4096));
    const before = await stack.adapters.catalog.listManifests();
    const result = await cli(['load', '-i', archive]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Request must be smaller than 6291456 bytes/);
    expect(lastInvocation()).toMatchObject({ status: 413, invoked: false });
    expect(await stack.adapters.catalog.listManifests()).toEqual(before);
  });
});
