import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CreateBucketCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_UPLOAD_PARTS, uploadPartSize } from '../lib/adapters/s3/uploads.ts';
import { createToken } from '../lib/auth/tokens.ts';
import { DIRECT_LOAD_LIMIT } from '../lib/cli/commands/load.ts';
import type { CliContext } from '../lib/cli/context.ts';
import { ApiClient } from '../lib/cli/http.ts';
import { main } from '../lib/cli/main.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';
import {
  type ApiGatewayLocal,
  type HttpApiHandler,
  startApiGatewayLocal,
} from './support/api-gateway-local.ts';
import {
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from './support/aws-emulators.ts';
import { startEngine } from './support/engine-harness.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { docker25Members, tarBuffer, writeTarFile } from './support/tarballs.ts';
import { type TempDir, tempDir } from './support/tmp.ts';

const MiB = 1024 * 1024;

/**
 * Load through presigned S3 uploads in the deployed shape: functions/api.ts behind the local
 * API Gateway (10 MB requests), the AWS backend on the emulators, and the project's CLI in
 * process. Parts are 5 MiB here (IMAGE_CACHE_UPLOAD_PART_SIZE) so a 12 MB tarball is a
 * multipart upload of three parts.
 */
afterAll(async () => {
  await (await lambdaRuntime().catch(() => undefined))?.composition.close();
  await stopAwsEmulators();
});

describe('load through S3: POST /cache/loads + presigned parts + commit', () => {
  let gateway: ApiGatewayLocal;
  /** The same function behind a gateway that takes 4 MB, so a 6 MB direct load is refused. */
  let smallGateway: ApiGatewayLocal;
  let adapters: ReturnType<typeof openAwsAdapters>;
  let names: { bucket: string; table: string };
  let work: TempDir;
  let big: GeneratedImage;
  let medium: GeneratedImage;
  let bigTar: string;
  let mediumTar: string;
  let token = '';

  beforeAll(async () => {
    const [emulators, dir] = await Promise.all([awsEmulators(), tempDir('load-through-s3')]);
    work = dir;
    [big, medium] = await Promise.all([
      // Two layers: fauxqs takes at most 11 MiB in one request, and the load stores a layer of
      // unknown length with one PutObject below the 16 MiB part size.
      generateImage({
        seed: 's3-load-big',
        format: 'docker',
        layers: [{ files: [6 * MiB] }, { files: [6 * MiB] }],
      }),
      generateImage({ seed: 's3-load-medium', format: 'oci', layers: [{ files: [3 * MiB] }] }),
    ]);
    bigTar = join(work.path, 'big.tar');
    mediumTar = join(work.path, 'medium.tar');
    await writeTarFile(docker25Members([{ image: big, tags: ['big:1'] }]), bigTar);
    await writeTarFile(docker25Members([{ image: medium, tags: ['medium:1'] }]), mediumTar);

    names = freshResourceNames();
    adapters = openAwsAdapters(emulators, names);
    await adapters.catalog.createTable();
    await adapters.blobs.client.send(new CreateBucketCommand({ Bucket: names.bucket }));
    token = (await createToken(adapters.catalog, { scope: 'write' }, Date.now())).token;

    Object.assign(process.env, emulators.env, {
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
      IMAGE_CACHE_REGISTRIES: '',
      IMAGE_CACHE_UPLOAD_PART_SIZE: String(5 * MiB),
    });
    const { handler } = (await import('../functions/api.ts')) as { handler: HttpApiHandler };
    gateway = await startApiGatewayLocal({ handler });
    // A front door smaller than the files the CLI sends directly, to make it refuse one.
    smallGateway = await startApiGatewayLocal({ handler, payloadLimit: 2 * MiB });
  }, 120_000);

  afterAll(async () => {
    adapters?.close();
    await gateway?.close();
    await smallGateway?.close();
    await work?.cleanup();
  });

  async function cli(url: string, args: string[]) {
    let stdout = '';
    let stderr = '';
    const ctx: CliContext = {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
      env: { IMAGE_CACHE_URL: url, IMAGE_CACHE_TOKEN: token },
      client: () => new ApiClient({ baseUrl: url, token }),
      now: () => Date.now(),
    };
    const code = await main(args, ctx);
    return { code, stdout, stderr };
  }

  async function api(url: string, method: string, path: string, body?: string) {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { body }),
    });
    const text = await response.text();
    // biome-ignore lint/suspicious/noExplicitAny: tests check response bodies field by field
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, text, json };
  }

  async function uploadsLeft(): Promise<string[]> {
    const listed = await adapters.blobs.client.send(
      new ListObjectsV2Command({ Bucket: names.bucket, Prefix: 'staging/uploads/' }),
    );
    return (listed.Contents ?? []).map((o) => o.Key!);
  }

  it('loads a tarball over 10 MB through the CLI in presigned parts, then lists and inspects it', async () => {
    expect((await stat(bigTar)).size).toBeGreaterThan(10 * MiB);
    const before = gateway.invocations.length;
    const run = await cli(gateway.url, ['load', '-i', bigTar]);
    expect(run.stderr).not.toContain('Error');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('Loaded image: big:1\n');

    const calls = gateway.invocations.slice(before);
    // Past 10 MB the CLI goes to storage first: no body went through the gateway.
    expect(calls.map((c) => `${c.method} ${c.rawPath} ${c.status}`)).toEqual([
      'POST /cache/loads 201',
      expect.stringMatching(/^POST \/cache\/loads\/[^/]+\/commit 200$/),
    ]);

    const list = await api(gateway.url, 'GET', '/images/json');
    expect(list.status).toBe(200);
    const summary = list.json.find((i: { RepoTags: string[] }) => i.RepoTags.includes('big:1'));
    expect(summary.Id).toBe(big.configBlob.digest);
    const inspect = await api(gateway.url, 'GET', '/images/big:1/json');
    expect(inspect.status).toBe(200);
    expect(inspect.json.Id).toBe(big.configBlob.digest);
    expect(inspect.json.RootFS.Layers).toEqual(big.config.rootfs.diff_ids);
    expect(await uploadsLeft()).toEqual([]);
  }, 120_000);

  it('hands out parts sized for the upload and a commit path', async () => {
    const created = await api(gateway.url, 'POST', `/cache/loads?size=${12 * MiB + 1}`);
    expect(created.status).toBe(201);
    expect(created.json.partSize).toBe(5 * MiB);
    expect(created.json.parts.map((p: { number: number }) => p.number)).toEqual([1, 2, 3]);
    expect(created.json.commit).toBe(`/cache/loads/${created.json.id}/commit`);
    for (const part of created.json.parts) expect(part.url).toContain('X-Amz-Signature=');

    const small = await api(gateway.url, 'POST', '/cache/loads?size=1000');
    expect(small.status).toBe(201);
    expect(small.json.url).toContain('X-Amz-Signature=');
    expect(small.json.parts).toBeUndefined();

    expect((await api(gateway.url, 'POST', '/cache/loads')).status).toBe(400);
    const anonymous = await fetch(`${gateway.url}/cache/loads?size=1000`, { method: 'POST' });
    expect(anonymous.status).toBe(401);
  });

  it("falls back to the presigned path when the gateway's 413 refuses the direct load", async () => {
    const size = (await stat(mediumTar)).size;
    expect(size).toBeGreaterThan(2 * MiB);
    expect(size).toBeLessThan(DIRECT_LOAD_LIMIT);
    const before = smallGateway.invocations.length;
    const run = await cli(smallGateway.url, ['load', '-i', mediumTar]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('Loaded image: medium:1\n');
    const calls = smallGateway.invocations.slice(before);
    expect(calls.map((c) => `${c.method} ${c.rawPath} ${c.status} ${c.invoked}`)).toEqual([
      'POST /images/load 413 false',
      'POST /cache/loads 201 true',
      expect.stringMatching(/^POST \/cache\/loads\/[^/]+\/commit 200 true$/),
    ]);
    const inspect = await api(gateway.url, 'GET', '/images/medium:1/json');
    expect(inspect.json.Id).toBe(medium.configBlob.digest);
    expect(await uploadsLeft()).toEqual([]);
  }, 120_000);

  it('answers 400 to the commit of a hostile tarball, tags nothing, and removes the upload', async () => {
    const victim = await generateImage({ seed: 's3-load-hostile', layers: 1 });
    const hostile = await tarBuffer([
      ...docker25Members([{ image: victim, tags: ['victim:1'] }]),
      { name: '../evil', bytes: Buffer.from('x') },
    ]);
    const created = await api(gateway.url, 'POST', `/cache/loads?size=${hostile.length}`);
    expect(created.status).toBe(201);
    expect(created.json.url).toBeDefined();
    const put = await fetch(created.json.url, { method: 'PUT', body: new Uint8Array(hostile) });
    expect(put.status).toBe(200);
    const commit = await api(gateway.url, 'POST', created.json.commit, '{}');
    expect(commit.status).toBe(400);
    expect(commit.json.message).toMatch(/\S/);
    expect((await api(gateway.url, 'GET', '/images/victim:1/json')).status).toBe(404);
    expect(await uploadsLeft()).toEqual([]);
    // A second commit of the same upload finds nothing.
    expect((await api(gateway.url, 'POST', created.json.commit, '{}')).status).toBe(404);
  });

  it('answers 400 to a commit whose parts do not complete the upload', async () => {
    const created = await api(gateway.url, 'POST', `/cache/loads?size=${6 * MiB}`);
    expect(created.json.parts).toHaveLength(2);
    const noParts = await api(gateway.url, 'POST', created.json.commit, '{}');
    expect(noParts.status).toBe(400);
    const badBody = await api(gateway.url, 'POST', created.json.commit, '{"parts":[{"number":0}]}');
    expect(badBody.status).toBe(400);
    const bogus = await api(
      gateway.url,
      'POST',
      created.json.commit,
      JSON.stringify({
        parts: [
          { number: 1, etag: '"0"' },
          { number: 2, etag: '"0"' },
        ],
      }),
    );
    expect(bogus.status).toBe(400);
  });

  it('names the presigned path in the 413 of a direct load that is too large', async () => {
    const { router } = await lambdaRuntime();
    const response = await router({
      method: 'POST',
      path: '/images/load',
      query: new URLSearchParams(),
      headers: { authorization: `Bearer ${token}`, 'content-length': String(100 * 1024 ** 3) },
      body: Readable.from([]),
    });
    expect(response.status).toBe(413);
    expect(String(response.body)).toContain('POST /cache/loads');
  });
});

describe('load through S3 on the embedded backend', () => {
  it('answers POST /cache/loads with an error that says to POST /images/load', async () => {
    const engine = await startEngine();
    try {
      const created = await engine.call('POST', '/cache/loads', { size: '1000' });
      expect(created.status).toBe(404);
      expect(created.body.message).toContain('/images/load');
      const commit = await engine.call('POST', '/cache/loads/x/commit');
      expect(commit.status).toBe(404);
      expect(commit.body.message).toContain('/images/load');
    } finally {
      await engine.close();
    }
  });
});

describe('upload part sizes', () => {
  it('keeps the floor, and grows parts so any S3 object fits in the parts one answer lists', () => {
    expect(uploadPartSize(100 * MiB, 64 * MiB)).toBe(64 * MiB);
    expect(uploadPartSize(100 * MiB, 1)).toBe(5 * MiB);
    const huge = 5 * 1024 ** 4;
    const part = uploadPartSize(huge, 64 * MiB);
    expect(Math.ceil(huge / part)).toBeLessThanOrEqual(MAX_UPLOAD_PARTS);
    expect(part).toBeLessThanOrEqual(5 * 1024 ** 3);
    expect(part % MiB).toBe(0);
  });
});
