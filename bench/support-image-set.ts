/**
 * Many small distinct images for the benchmarks that count per image (bench/warm.ts):
 * `library/<prefix>-<i>:1`, each two small random layers of its own (no shared base, so every
 * image costs its own blobs), generated from a seed and pushed a few at a time. The counting
 * proxy's tallies are summed per kind of upstream request here too.
 */
import { generateImage } from '../test/support/image-factory.ts';
import { pushImage } from '../test/support/push.ts';
import type { RegistryServer } from '../test/support/registry-server.ts';
import { log, seconds } from './support.ts';

export interface SmallImage {
  /** `docker.io/library/<prefix>-<i>:1`, as a CI list names it. */
  reference: string;
  repository: string;
  /** The compressed bytes a pull moves: manifest and blobs. */
  bytes: number;
}

const PUSHES_AT_ONCE = 8;

export async function pushSmallImages(
  registry: RegistryServer,
  count: number,
  prefix: string,
  seed: string,
): Promise<SmallImage[]> {
  const started = performance.now();
  const images: SmallImage[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const image = await generateImage({ seed: `${seed}-${i}`, format: 'docker', layers: 2 });
      const repository = `library/${prefix}-${i}`;
      await pushImage({ url: registry.url, repository }, image, { tags: ['1'] });
      images[i] = {
        reference: `docker.io/${repository}:1`,
        repository,
        bytes: image.bytes.length + image.blobs.reduce((sum, b) => sum + b.size, 0),
      };
    }
  };
  await Promise.all(Array.from({ length: PUSHES_AT_ONCE }, worker));
  log(`generated and pushed ${count} small images in ${seconds(performance.now() - started)} s`);
  return images;
}

export interface UpstreamCounts {
  manifestGets: number;
  manifestHeads: number;
  blobGets: number;
  /** Everything else: `/v2/` pings, token requests, blob HEADs. */
  other: number;
}

/** The counting proxy's `<METHOD> <path>` tallies, by what they cost a registry's limits. */
export function upstreamCounts(counts: ReadonlyMap<string, number>): UpstreamCounts {
  const sum: UpstreamCounts = { manifestGets: 0, manifestHeads: 0, blobGets: 0, other: 0 };
  for (const [key, n] of counts) {
    const [method, path = ''] = key.split(' ');
    if (/\/manifests\/[^/]+$/.test(path) && method === 'GET') sum.manifestGets += n;
    else if (/\/manifests\/[^/]+$/.test(path) && method === 'HEAD') sum.manifestHeads += n;
    else if (/\/blobs\/sha256:[0-9a-f]{64}$/.test(path) && method === 'GET') sum.blobGets += n;
    else sum.other += n;
  }
  return sum;
}
