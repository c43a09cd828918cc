import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpRequest } from '../lib/engine/http.ts';
import { HANDOVER_MARGIN_MS } from '../lib/engine/job-deadline.ts';
import type { Router } from '../lib/engine/router.ts';
import { stopAwsEmulators } from './support/aws-emulators.ts';
import {
  type AwsSaveBackend,
  getRequest,
  startAwsSaveBackend,
} from './support/aws-save-backend.ts';
import { runCliAgainst } from './support/cli-capture.ts';
import { startDeadlineDoor } from './support/deadline-door.ts';
import { type SeededImage, seedImage } from './support/seed-images.ts';
import { type TempDir, tempDir } from './support/tmp.ts';

/**
 * Save exports behind a front door with a deadline (`request.deadline`, set by the Lambda
 * adapters): an export not in storage yet runs as a job on the in-process dispatcher. The
 * export's S3 writes can be held (AwsSaveBackend.holdExportWrites), so "the job cannot finish
 * before the deadline" is a fact of the test, not a matter of timing.
 */
afterAll(async () => {
  await stopAwsEmulators();
});

describe('save exports as jobs past the deadline', () => {
  let backend: AwsSaveBackend;
  let router: Router;
  let token: string;
  let work: TempDir;

  beforeAll(async () => {
    backend = await startAwsSaveBackend();
    ({ router, token } = backend);
    work = await tempDir('save-export-jobs');
  });

  afterAll(async () => {
    await backend?.close();
    await work?.cleanup();
  });

  /** A fresh image per test, so no export of it exists yet. */
  const seed = (name: string): Promise<SeededImage> =>
    seedImage(backend.composition.context, {
      name,
      layers: [[`${name}-layer`, 64 * 1024]],
      tags: [[`docker.io/library/${name}`, '1']],
      now: Date.now(),
    });
  /** `followMs` left to follow the job: 0 answers with the job at once unless it ended. */
  const withDeadline = (request: Omit<HttpRequest, 'deadline'>, followMs = 0): HttpRequest => ({
    ...request,
    deadline: Date.now() + HANDOVER_MARGIN_MS + followMs,
  });
  const streamed = (names: string) => backend.streamedSave(names);
  const download = async (url: string) => {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    return Buffer.from(await response.arrayBuffer());
  };
  const waitJob = async (url: string) => {
    const response = await router(getRequest(url, 'wait=30', token));
    expect(response.status).toBe(200);
    return JSON.parse(String(response.body));
  };

  it('answers 202 with the job, which exports; the same request then gets a 307', async () => {
    await seed('handed');
    const tar = await streamed('handed:1');
    const release = backend.holdExportWrites();
    backend.writes.length = 0;
    const request = getRequest('/images/get', 'names=handed:1&redirect=1', token);
    const first = await router(withDeadline(request));
    release();
    expect(first.status).toBe(202);
    const pending = JSON.parse(String(first.body));
    expect(first.headers).toMatchObject({
      Location: `/cache/jobs/${pending.id}`,
      'Retry-After': expect.stringMatching(/^\d+$/),
    });
    expect(pending).toMatchObject({
      kind: 'export',
      request: { kind: 'export', names: ['handed:1'] },
    });
    expect(['queued', 'running']).toContain(pending.status);

    const job = await waitJob(pending.url);
    expect(job).toMatchObject({
      status: 'succeeded',
      result: {
        kind: 'export',
        key: expect.stringMatching(/^[a-f0-9]{64}$/),
        size: tar.length,
        url: expect.any(String),
        expires: expect.any(String),
      },
    });
    // Progress as Docker's messages: the upload's bytes against the tarball's size.
    expect(job.progress.layers).toContainEqual(
      expect.objectContaining({
        status: 'Export complete',
        progressDetail: { current: tar.length, total: tar.length },
      }),
    );
    expect((await download(job.result.url)).equals(tar)).toBe(true);
    expect(backend.writes).toEqual(['PutObjectCommand']);

    const again = await router(withDeadline(request));
    expect(again.status).toBe(307);
    const location = again.headers?.Location ?? '';
    expect(new URL(location).pathname).toMatch(new RegExp(`/exports/${job.result.key}\\.tar$`));
    expect((await download(location)).equals(tar)).toBe(true);
    expect(backend.writes).toEqual(['PutObjectCommand']);
  });

  it('lets two concurrent requests for the same images share one job and one upload', async () => {
    await seed('shared');
    const release = backend.holdExportWrites();
    backend.writes.length = 0;
    // Two spellings of the same image, one as a redirect and one as GET /cache/exports.
    const [redirect, exported] = await Promise.all([
      router(withDeadline(getRequest('/images/shared:1/get', 'redirect=1', token))),
      router(withDeadline(getRequest('/cache/exports', 'names=docker.io/library/shared:1', token))),
    ]);
    release();
    expect([redirect.status, exported.status]).toEqual([202, 202]);
    const ids = [redirect, exported].map((r) => JSON.parse(String(r.body)).id);
    expect(ids[0]).toBe(ids[1]);
    expect(await waitJob(`/cache/jobs/${ids[0]}`)).toMatchObject({ status: 'succeeded' });
    expect(backend.writes).toEqual(['PutObjectCommand']);

    // The export is there now: GET /cache/exports answers its URL at once.
    const ready = await router(withDeadline(getRequest('/cache/exports', 'names=shared:1', token)));
    expect(ready.status).toBe(200);
    const body = JSON.parse(String(ready.body));
    expect(body).toEqual({
      url: expect.any(String),
      size: expect.any(Number),
      expires: expect.any(String),
    });
    expect((await download(body.url)).equals(await streamed('shared:1'))).toBe(true);
  });

  it('answers at once as before when the job ends in time, and with its error when it fails', async () => {
    await seed('intime');
    backend.writes.length = 0;
    const inTime = await router(
      withDeadline(getRequest('/images/get', 'names=intime:1&redirect=1', token), 20_000),
    );
    expect(inTime.status).toBe(307);
    expect(backend.writes).toEqual(['PutObjectCommand']);

    const broken = await seed('broken');
    await backend.blobs.delete(broken.layers[0]!.digest);
    const failed = await router(
      withDeadline(getRequest('/cache/exports', 'names=broken:1', token), 20_000),
    );
    // The record is live, so the route's resolution passes: the job's read finds the bytes gone.
    expect(failed.status).toBe(404);
    expect(JSON.parse(String(failed.body)).message).toContain(broken.layers[0]!.digest);
  });

  it('answers an unknown name with 404 at once, and without a deadline exports in the request', async () => {
    backend.writes.length = 0;
    const unknown = await router(
      withDeadline(getRequest('/images/get', 'names=nope:1&redirect=1', token), 20_000),
    );
    expect(unknown.status).toBe(404);
    const unknownExport = await router(
      withDeadline(getRequest('/cache/exports', 'names=nope:1', token), 20_000),
    );
    expect(unknownExport.status).toBe(404);
    expect(backend.writes).toEqual([]);

    // No deadline (the Node server): the export is written in the request, however long.
    await seed('direct');
    const direct = await router(getRequest('/images/get', 'names=direct:1&redirect=1', token));
    expect(direct.status).toBe(307);
    expect(backend.writes).toEqual(['PutObjectCommand']);
  });

  it('lets the CLI save through a 202: it waits on the job, then downloads the export; or fails', async () => {
    await seed('viacli');
    const tar = await streamed('viacli:1');
    const release = backend.holdExportWrites();
    // The upload waits until the CLI follows the job: the save request surely hands over.
    const releasing = Object.assign(
      (request: HttpRequest) => {
        if (request.path.startsWith('/cache/jobs/')) release();
        return router(request);
      },
      { routes: router.routes },
    );
    const door = await startDeadlineDoor(releasing, { followMs: 200 });
    try {
      const out = join(work.path, 'viacli.tar');
      const { code, stderr } = await runCliAgainst(
        door.url,
        ['save', '-o', out, 'viacli:1'],
        token,
      );
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect((await readFile(out)).equals(tar)).toBe(true);
      expect(door.requests[0]).toBe('GET /images/get');
      expect(door.requests.filter((r) => r === 'GET /images/get')).toHaveLength(1);
      expect(door.requests.filter((r) => r.startsWith('GET /cache/jobs/'))).not.toEqual([]);

      // A failed export (whether in time or after the hand-over) is the CLI's error, no file.
      const broken = await seed('clibroken');
      await backend.blobs.delete(broken.layers[0]!.digest);
      const failedOut = join(work.path, 'clibroken.tar');
      const failed = await runCliAgainst(door.url, ['save', '-o', failedOut, 'clibroken:1'], token);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toContain(broken.layers[0]!.digest);
      await expect(readFile(failedOut)).rejects.toThrow(/ENOENT/);
    } finally {
      release();
      await door.close();
    }
  });
});
