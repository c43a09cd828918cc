/**
 * One set of behaviours every HTTP front door onto the router must show alike (as hono runs one
 * suite over every runtime): the Node server, the API Gateway HTTP API adapter and the streaming
 * function URL adapter. Each front's test file is one line: `frontDoorSuite('<kind>')`; the
 * harness (test/support/front-doors.ts) starts that front on 127.0.0.1 against real back ends,
 * with access control on and a real docker-registry upstream serving generated images.
 *
 * What differs between fronts by design (their limits, their own 413 bodies, buffering against
 * streaming, S3 redirects) stays in each front's own tests; what is here must hold on all three.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex } from '../../lib/digest.ts';
import { UI_ASSETS } from '../../lib/engine/ui-routes.ts';
import {
  FAULTY_REGISTRY,
  type FrontDoorKind,
  type FrontDoorUnderTest,
  startFrontDoor,
} from '../support/front-doors.ts';
import { type GeneratedImage, generateImage } from '../support/image-factory.ts';
import { pushImage } from '../support/push.ts';
import { readTar } from '../support/save-fixtures.ts';

/**
 * sha256 of `GET /images/get?names=small:1` for the image generated from seed 'front-small'.
 * The same constant for every front is the byte comparison across them (each runs in its own
 * test process). A deliberate change to the save format changes it: run one front's file and
 * take the digest its failure prints.
 */
const SMALL_SAVE_SHA256 = '2cc1d7143d576390ca67df2821535576b492d5278d522c4822f3d45c2c2b1612';

type Line = Record<string, unknown> & { errorDetail?: { message?: string } };

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export function frontDoorSuite(kind: FrontDoorKind): void {
  describe(`front door: ${kind}`, () => {
    let front: FrontDoorUnderTest;
    let small: GeneratedImage;
    let other: GeneratedImage;
    let broken: GeneratedImage;

    beforeAll(async () => {
      front = await startFrontDoor(kind);
      [small, other, broken] = await Promise.all([
        generateImage({ seed: 'front-small', format: 'docker', layers: 2 }),
        generateImage({ seed: 'front-other', format: 'oci', layers: 1 }),
        generateImage({ seed: 'front-broken', format: 'oci', layers: [{ files: [200_000] }] }),
      ]);
      const { url } = front.registry;
      await pushImage({ url, repository: 'library/small' }, small, { tags: ['1'] });
      await pushImage({ url, repository: 'library/other' }, other, { tags: ['1'] });
      // Its manifest is served whole, its layer never: the pull fails once progress has begun.
      front.faulty.serveImage('org/broken', broken, '1');
      const layer = broken.layers[0]!;
      front.faulty.inject(front.faulty.blobPath('org/broken', layer.digest), {
        kind: 'corrupt',
        times: 1000,
      });
    }, 120_000);

    afterAll(async () => {
      await front?.close();
    });

    /** A request with the admin token, or `token` ('' sends none); redirects are not followed. */
    const call = (path: string, init: RequestInit = {}, token = front.tokens.admin) =>
      fetch(`${front.url}${path}`, {
        redirect: 'manual',
        ...init,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(init.headers as Record<string, string>),
        },
      });
    const pull = (image: string, tag: string, token?: string) =>
      call(
        `/images/create?${new URLSearchParams({ fromImage: image, tag })}`,
        { method: 'POST' },
        token,
      );
    const lines = async (response: Response): Promise<Line[]> =>
      (await response.text())
        .split('\n')
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line) as Line);

    describe('pull status', () => {
      it('answers 200 with progress lines for a pull that works, and stores the image', async () => {
        const response = await pull('library/small', '1');
        expect(response.status).toBe(200);
        const progress = await lines(response);
        expect(progress[0]).toMatchObject({
          status: expect.stringMatching(/Pulling from library\/small/),
        });
        expect(progress.at(-1)).toMatchObject({
          status: 'Status: Downloaded newer image for small:1',
        });
        expect(progress.some((line) => line.errorDetail)).toBe(false);
        expect(await front.manifestDigests()).toContain(small.digest);
      });

      it('holds the status until the first line: a pull failing before it answers 404', async () => {
        const response = await pull('library/small', 'missing');
        expect(response.status).toBe(404);
        expect(response.headers.get('content-type')).toMatch(/^application\/json/);
        const body = (await response.json()) as { message: string };
        expect(body.message).toMatch(/small:missing/);
      });

      it('reports a failure after progress began as errorDetail in the stream', async () => {
        const response = await pull(`${FAULTY_REGISTRY}/org/broken`, '1');
        expect(response.status).toBe(200);
        const progress = await lines(response);
        expect(progress[0]).toMatchObject({ status: expect.stringMatching(/Pulling from/) });
        const last = progress.at(-1)!;
        expect(last.errorDetail?.message).toEqual(expect.any(String));
        expect(last.error).toBe(last.errorDetail?.message);
        expect(await front.manifestDigests()).not.toContain(broken.digest);
      });
    });

    describe('access control, before any handler runs', () => {
      it("refuses a request without a token with 401 and Docker's challenge, pulling nothing", async () => {
        const response = await pull('library/other', '1', '');
        expect(response.status).toBe(401);
        expect(response.headers.get('www-authenticate')).toBe('Bearer realm="image-cache"');
        expect(((await response.json()) as { message: string }).message).toMatch(
          /authentication required/,
        );
        expect(await front.manifestDigests()).not.toContain(other.digest);
      });

      it('refuses a token of too small a scope with 403, deleting nothing', async () => {
        const before = await front.manifestDigests();
        const response = await call('/images/small:1', { method: 'DELETE' }, front.tokens.read);
        expect(response.status).toBe(403);
        expect(((await response.json()) as { message: string }).message).toMatch(
          /needs scope write/,
        );
        expect(await front.manifestDigests()).toEqual(before);
        expect(before).toContain(small.digest);
      });

      it('challenges an anonymous registry client towards the token endpoint', async () => {
        const response = await call('/v2/', {}, '');
        expect(response.status).toBe(401);
        expect(response.headers.get('www-authenticate')).toMatch(
          /^Bearer realm="https?:\/\/[^"]+\/v2\/token",service="image-cache"$/,
        );
      });
    });

    it("refuses a body past the front's own limit with 413, loading nothing", async () => {
      const before = await front.manifestDigests();
      const response = await call('/images/load', {
        method: 'POST',
        headers: { 'content-type': 'application/x-tar' },
        body: randomBytes(front.bodyLimit + 4096),
      });
      expect(response.status).toBe(413);
      await response.arrayBuffer();
      expect(await front.manifestDigests()).toEqual(before);
    });

    it('saves the same bytes on every front', async () => {
      const response = await call('/images/get?names=small%3A1');
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/x-tar');
      const saved = Buffer.from(await response.arrayBuffer());
      const members = await readTar(saved);
      for (const blob of [small.configBlob, ...small.layers]) {
        const member = members.find((m) => m.name === `blobs/sha256/${digestHex(blob.digest)}`);
        expect(member && sha256Hex(member.data)).toBe(digestHex(blob.digest));
      }
      expect(sha256Hex(saved)).toBe(SMALL_SAVE_SHA256);
    });

    it("serves the dashboard's files without a token, the same on every front, and its data with one", async () => {
      const page = await call('/cache/ui/', {}, '');
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      const html = await page.text();
      expect(html).toContain('<title>image-cache dashboard</title>');
      for (const [name, type] of [
        [UI_ASSETS.style, 'text/css; charset=utf-8'],
        [UI_ASSETS.script, 'text/javascript; charset=utf-8'],
      ] as const) {
        expect(html).toContain(`"${name}"`);
        const asset = await call(`/cache/ui/${name}`, {}, '');
        expect(asset.status).toBe(200);
        expect(asset.headers.get('content-type')).toBe(type);
        expect(asset.headers.get('cache-control')).toContain('immutable');
        // The bundle's bytes, whole: the name is their hash.
        expect(sha256Hex(Buffer.from(await asset.arrayBuffer())).slice(0, 16)).toBe(
          name.split('.')[1],
        );
      }
      expect((await call('/cache/images', {}, '')).status).toBe(401);
      const images = await call('/cache/images', {}, front.tokens.read);
      expect(images.status).toBe(200);
      expect(Array.isArray(await images.json())).toBe(true);
      const jobs = await call('/cache/jobs', {}, front.tokens.read);
      expect(jobs.status).toBe(200);
      expect(Array.isArray(await jobs.json())).toBe(true);
    });

    describe('registry API', () => {
      const manifestPath = '/v2/library/small/manifests/1';

      it('answers the ping', async () => {
        const response = await call('/v2/');
        expect(response.status).toBe(200);
        expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
      });

      it('answers a manifest GET with its bytes, digest, length and type', async () => {
        const response = await call(manifestPath, { headers: { accept: small.mediaType } });
        expect(response.status).toBe(200);
        expect(response.headers.get('docker-content-digest')).toBe(small.digest);
        expect(response.headers.get('content-type')).toBe(small.mediaType);
        // A streaming front sends the length as chunks; the bytes must still be all there.
        expect(response.headers.get('content-length')).toBe(
          front.streamsChunked ? null : String(small.bytes.length),
        );
        expect(Buffer.from(await response.arrayBuffer()).equals(small.bytes)).toBe(true);
      });

      it("answers a manifest HEAD with the GET's headers, Content-Length included, and no body", async () => {
        const response = await call(manifestPath, {
          method: 'HEAD',
          headers: { accept: small.mediaType },
        });
        expect(response.status).toBe(200);
        expect(response.headers.get('docker-content-digest')).toBe(small.digest);
        expect(response.headers.get('content-type')).toBe(small.mediaType);
        expect(response.headers.get('content-length')).toBe(String(small.bytes.length));
        expect((await response.arrayBuffer()).byteLength).toBe(0);
      });

      it('answers a blob GET with its bytes (or a redirect to them)', async () => {
        const layer = small.layers[0]!;
        let response = await call(`/v2/library/small/blobs/${layer.digest}`);
        if (response.status === 307) {
          // A stored blob on S3 is a presigned URL that needs no token (clients drop it there).
          response = await fetch(response.headers.get('location')!);
        }
        expect(response.status).toBe(200);
        expect(`sha256:${sha256Hex(Buffer.from(await response.arrayBuffer()))}`).toBe(layer.digest);
      });

      it('answers an unknown manifest with 404 and the OCI error body', async () => {
        const response = await call('/v2/library/small/manifests/nope');
        expect(response.status).toBe(404);
        expect(response.headers.get('content-type')).toMatch(/^application\/json/);
        const body = (await response.json()) as { errors: Array<{ code: string }> };
        expect(body.errors[0]?.code).toBe('MANIFEST_UNKNOWN');
      });
    });
  });
}
