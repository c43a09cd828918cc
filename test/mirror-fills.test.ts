import { describe, expect, it } from 'vitest';
import type { Digest } from '../lib/digest.ts';
import { MirrorFills } from '../lib/mirror/fills.ts';
import type { Platform, Reference } from '../lib/model.ts';
import { generateImage, generateIndex } from './support/image-factory.ts';

/**
 * Which pull a registry client's requests turn into, and when: the fill is the one place that
 * decides what the catalog tags for the registry door (the HTTP and client tests see the
 * result; these pin the decisions themselves).
 */

const repo = { registry: 'docker.io', repository: 'library/app' };

function recorder(options: { downloading?: Set<Digest> } = {}) {
  const pulls: { ref: Reference; platform?: Platform }[] = [];
  return {
    pulls,
    runner: {
      pull: async (ref: Reference, platform: Platform | undefined) => {
        pulls.push({ ref, ...(platform && { platform }) });
      },
      downloading: (digest: Digest) => options.downloading?.has(digest) ?? false,
    },
  };
}

const served = (image: { digest: Digest; bytes: Buffer; mediaType: string }) => ({
  digest: image.digest,
  raw: image.bytes,
  mediaType: image.mediaType,
});

describe('MirrorFills', () => {
  it('pulls an image under the tag a client named, once the client went quiet', async () => {
    const image = await generateImage({ seed: 'fills-tag', layers: 1 });
    const { pulls, runner } = recorder();
    const fills = new MirrorFills(runner, { quietMs: 50 });
    await fills.manifestServed({ ...repo, tag: '1' }, served(image), { stored: false });
    fills.blobRequested(image.layers[0]!.digest);
    expect(pulls).toEqual([]);
    await fills.idle();
    expect(pulls).toEqual([{ ref: { ...repo, tag: '1' } }]);
  });

  it('pulls nothing for an image the catalog already holds', async () => {
    const image = await generateImage({ seed: 'fills-stored', layers: 1 });
    const { pulls, runner } = recorder();
    const fills = new MirrorFills(runner, { quietMs: 10 });
    await fills.manifestServed({ ...repo, tag: '1' }, served(image), { stored: true });
    await fills.idle();
    expect(pulls).toEqual([]);
  });

  it('waits while a client still downloads one of its blobs', async () => {
    const image = await generateImage({ seed: 'fills-busy', layers: 1 });
    const busy = new Set<Digest>([image.layers[0]!.digest]);
    const { pulls, runner } = recorder({ downloading: busy });
    const fills = new MirrorFills(runner, { quietMs: 20 });
    await fills.manifestServed({ ...repo, tag: '1' }, served(image), { stored: false });
    await new Promise((r) => setTimeout(r, 150));
    expect(pulls).toEqual([]);
    busy.clear();
    await fills.idle();
    expect(pulls).toHaveLength(1);
  });

  it('pulls the platform a client picked from an index, under the tag it resolved with a HEAD', async () => {
    const index = await generateIndex({
      seed: 'fills-index',
      platforms: ['linux/amd64', 'linux/arm64/v8'],
      layers: 1,
    });
    const { pulls, runner } = recorder();
    const fills = new MirrorFills(runner, { quietMs: 10 });
    // containerd: HEAD by tag, GET the index by digest, GET the platform manifest by digest.
    fills.tagResolved({ ...repo, tag: '2' }, index.digest);
    await fills.manifestServed({ ...repo, digest: index.digest }, served(index), { stored: false });
    const arm = index.images[1]!;
    await fills.manifestServed({ ...repo, digest: arm.digest }, served(arm), { stored: false });
    await fills.idle();
    expect(pulls).toEqual([
      { ref: { ...repo, tag: '2' }, platform: expect.objectContaining({ architecture: 'arm64' }) },
    ]);
  });

  it('pulls through the index digest a client pinned, so the index is stored too', async () => {
    const index = await generateIndex({
      seed: 'fills-pinned',
      platforms: ['linux/amd64'],
      layers: 1,
    });
    const { pulls, runner } = recorder();
    const fills = new MirrorFills(runner, { quietMs: 10 });
    await fills.manifestServed({ ...repo, digest: index.digest }, served(index), { stored: false });
    const amd = index.images[0]!;
    await fills.manifestServed({ ...repo, digest: amd.digest }, served(amd), { stored: false });
    await fills.idle();
    expect(pulls).toEqual([
      {
        ref: { ...repo, digest: index.digest },
        platform: expect.objectContaining({ architecture: 'amd64' }),
      },
    ]);
  });

  it('starts the fill with the manifest when immediate (a Lambda front: a job)', async () => {
    const image = await generateImage({ seed: 'fills-now', layers: 1 });
    const { pulls, runner } = recorder();
    const fills = new MirrorFills(runner, { immediate: true });
    await fills.manifestServed({ ...repo, tag: '3' }, served(image), { stored: false });
    // Already started when the answer goes out: no timer is left to a frozen function.
    expect(pulls).toEqual([{ ref: { ...repo, tag: '3' } }]);
  });

  it('keeps the sizes a served manifest gave its blobs', async () => {
    const image = await generateImage({ seed: 'fills-sizes', layers: 2 });
    const fills = new MirrorFills(recorder().runner, { quietMs: 10 });
    await fills.manifestServed({ ...repo, tag: '1' }, served(image), { stored: true });
    for (const blob of image.blobs) expect(fills.sizeOf(blob.digest)).toBe(blob.size);
  });
});
