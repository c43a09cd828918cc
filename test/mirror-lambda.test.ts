import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ApiGatewayLocal } from './support/api-gateway-local.ts';
import { FakeRegistry } from './support/fake-registry.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { startApiFunctionGateway } from './support/lambda-fronts.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';

/**
 * The registry door behind API Gateway (functions/api.ts, buffered answers of 6 MB, 30 s) on the
 * AWS backend's emulators: a stored blob is a 307 to a presigned S3 URL (no byte through
 * Lambda); a blob not stored yet that fits the answer streams through; one that does not is sent
 * to the upstream's own CDN when the registry redirects blob GETs, or asked to come back (429
 * with Retry-After) while the fill stores it.
 */
afterAll(stopServerlessProcess);

describe('registry door behind API Gateway (local) on S3 and DynamoDB', () => {
  let stack: ServerlessStack;
  let gateway: ApiGatewayLocal;
  let ghcr: FakeRegistry;
  let cdn: FakeRegistry;
  let small: GeneratedImage;
  let big: GeneratedImage;
  let auth: Record<string, string>;

  const serve = (registry: FakeRegistry, repo: string, image: GeneratedImage) => {
    for (const blob of image.blobs) registry.addBlob(blob.bytes!);
    registry.addManifest(repo, '1', image.bytes, image.mediaType);
  };
  const get = (path: string, init: RequestInit = {}) =>
    fetch(`http://${gateway.hostPort}${path}`, {
      redirect: 'manual',
      ...init,
      headers: { ...auth, ...(init.headers as Record<string, string>) },
    });
  const sha = (bytes: ArrayBuffer) =>
    `sha256:${createHash('sha256').update(Buffer.from(bytes)).digest('hex')}`;

  beforeAll(async () => {
    ghcr = await FakeRegistry.start();
    cdn = await FakeRegistry.start();
    stack = await startServerlessStack('mirror-lambda', {
      registries: { 'ghcr.io': ghcr.url.origin },
    });
    auth = { authorization: `Bearer ${stack.tokens.admin}` };
    small = await generateImage({ seed: 'mirror-lambda-small', layers: [{ files: [50_000] }] });
    // Incompressible and past what a buffered Lambda answer carries.
    big = await generateImage({
      seed: 'mirror-lambda-big',
      layers: [{ files: [7 * 1024 * 1024] }],
    });
    serve(ghcr, 'org/small', small);
    serve(ghcr, 'org/big', big);
    for (const blob of big.blobs) cdn.addBlob(blob.bytes!);
    gateway = await startApiFunctionGateway();
  });

  afterAll(async () => {
    await gateway?.close();
    await stack?.close();
    await ghcr?.close();
    await cdn?.close();
  });

  it('streams a small blob it does not hold, then answers it from S3 with a redirect', async () => {
    const manifest = await get('/v2/ghcr.io/org/small/manifests/1');
    expect(manifest.status).toBe(200);
    const layer = small.layers[0]!;
    const cold = await get(`/v2/ghcr.io/org/small/blobs/${layer.digest}`);
    expect(cold.status).toBe(200);
    expect(sha(await cold.arrayBuffer())).toBe(layer.digest);
    const warm = await get(`/v2/ghcr.io/org/small/blobs/${layer.digest}`);
    expect(warm.status).toBe(307);
    const location = warm.headers.get('location')!;
    expect(new URL(location).searchParams.get('X-Amz-Signature')).toBeTruthy();
    // A Go client drops Authorization on another host: the URL alone must do.
    const fromS3 = await fetch(location);
    expect(fromS3.status).toBe(200);
    expect(sha(await fromS3.arrayBuffer())).toBe(layer.digest);
    expect(ghcr.count(ghcr.blobPath('org/small', layer.digest), 'GET')).toBe(1);
  });

  it("sends a large blob it does not hold to the upstream's CDN, then stores it", async () => {
    await get('/v2/ghcr.io/org/big/manifests/1');
    const layer = big.layers[0]!;
    const path = ghcr.blobPath('org/big', layer.digest);
    ghcr.inject(path, { kind: 'redirect', to: cdn.cdnUrl(layer.digest), times: 100 });
    const response = await get(`/v2/ghcr.io/org/big/blobs/${layer.digest}`);
    expect(response.status).toBe(307);
    expect(response.headers.get('location')).toBe(cdn.cdnUrl(layer.digest));
    // The fill (in process here; a worker job on AWS) stores it meanwhile.
    await vi.waitFor(
      async () => {
        const again = await get(`/v2/ghcr.io/org/big/blobs/${layer.digest}`);
        expect(again.status).toBe(307);
        expect(again.headers.get('location')).toContain('X-Amz-Signature');
      },
      { timeout: 30_000, interval: 500 },
    );
  });

  it('asks the client to come back when the upstream serves a large blob itself', async () => {
    const other = await generateImage({
      seed: 'mirror-lambda-direct',
      layers: [{ files: [7 * 1024 * 1024] }],
    });
    serve(ghcr, 'org/direct', other);
    const layer = other.layers[0]!;
    const response = await get(`/v2/ghcr.io/org/direct/blobs/${layer.digest}`);
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('10');
    expect((await response.json()).errors[0].code).toBe('TOOMANYREQUESTS');
  });
});
