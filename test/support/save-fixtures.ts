/**
 * Images for the save tests, generated and pushed to a real docker-registry, then pulled into
 * a fresh cache server: two single-platform images on a shared base layer (Docker and OCI
 * media types, one with two tags), an image with an uncompressed and an empty layer under a
 * non-Hub registry name, and a multi-arch OCI index with attestations.
 */
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { type CacheBackend, type CacheServer, pullVia, startCacheServer } from './cache-server.ts';
import {
  type GeneratedImage,
  type GeneratedIndex,
  generateImage,
  generateIndex,
} from './image-factory.ts';
import { pushImage, pushIndex } from './push.ts';
import { type RegistryServer, startRegistry } from './registry-server.ts';

export interface SaveFixture {
  registry: RegistryServer;
  cache: CacheServer;
  /** A one-layer base shared by app, tool and multi. */
  base: GeneratedImage;
  /** docker.io/library/app, tags 1 and latest (Docker schema 2). */
  app: GeneratedImage;
  /** docker.io/team/tool:2 (OCI). */
  tool: GeneratedImage;
  /** localhost:5000/plain/img:3: an uncompressed layer and an empty one. */
  plain: GeneratedImage;
  /** docker.io/library/multi:1, pulled for linux/amd64. */
  multi: GeneratedIndex;
  multiAmd64: GeneratedImage;
  close(): Promise<void>;
}

export async function startSaveFixture(
  options: { backend?: CacheBackend } = {},
): Promise<SaveFixture> {
  const registry = await startRegistry();
  try {
    const base = await generateImage({ seed: 'save-base', layers: 1 });
    const app = await generateImage({
      seed: 'save-app',
      format: 'docker',
      baseLayers: base.layers,
      layers: 2,
    });
    const tool = await generateImage({
      seed: 'save-tool',
      format: 'oci',
      baseLayers: base.layers,
      layers: 1,
    });
    const plain = await generateImage({
      seed: 'save-plain',
      format: 'oci',
      layers: [{ files: [3000, 70000], compression: 'none' }, { empty: true }],
    });
    const multi = await generateIndex({
      seed: 'save-multi',
      format: 'oci',
      attestations: true,
      sharedLayers: base.layers,
      layers: 1,
    });
    const target = (repository: string) => ({ url: registry.url, repository });
    await pushImage(target('library/app'), app, { tags: ['1', 'latest'] });
    await pushImage(target('team/tool'), tool, { tags: ['2'] });
    await pushImage(target('plain/img'), plain, { tags: ['3'] });
    await pushIndex(target('library/multi'), multi, { tags: ['1'] });

    const cache = await startCacheServer({
      registries: `docker.io=${registry.url},localhost:5000=${registry.url}`,
      ...(options.backend && { backend: options.backend }),
    });
    for (const [fromImage, tag] of [
      ['app', '1'],
      ['app', 'latest'],
      ['team/tool', '2'],
      ['localhost:5000/plain/img', '3'],
      ['multi', '1'],
    ] as const) {
      const pulled = await pullVia(cache.url, { fromImage, tag, platform: 'linux/amd64' });
      const failed = pulled.messages.find((m) => m.error || m.errorDetail);
      if (pulled.status !== 200 || failed) {
        await cache.close();
        throw new Error(`pull ${fromImage}:${tag} failed: ${pulled.body}`);
      }
    }
    const multiAmd64 = multi.images.find((i) => i.platform.architecture === 'amd64')!;
    return {
      registry,
      cache,
      base,
      app,
      tool,
      plain,
      multi,
      multiAmd64,
      close: async () => {
        await cache.close();
        await registry.stop();
      },
    };
  } catch (error) {
    await registry.stop();
    throw error;
  }
}

export interface TarMember {
  name: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  data: Buffer;
}

/** Every member of a tar in archive order, contents in memory (test tarballs are small). */
export async function readTar(bytes: Buffer): Promise<TarMember[]> {
  const extract = tar.extract();
  const members: TarMember[] = [];
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => {
        chunks.push(c as Buffer);
      });
      stream.on('end', () => {
        members.push({
          name: header.name,
          type: header.type ?? 'file',
          size: header.size ?? 0,
          mode: header.mode ?? 0,
          uid: header.uid ?? -1,
          gid: header.gid ?? -1,
          mtime: header.mtime ? header.mtime.getTime() : -1,
          data: Buffer.concat(chunks),
        });
        next();
      });
      stream.on('error', reject);
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  Readable.from([bytes]).pipe(extract);
  await done;
  return members;
}

/** GET a save URL; the body is read whole (small test images). */
export async function fetchSave(
  baseUrl: string,
  pathAndQuery: string,
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const response = await fetch(`${baseUrl}${pathAndQuery}`);
  const body = Buffer.from(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

export function savePath(names: string[]): string {
  const query = new URLSearchParams();
  for (const name of names) query.append('names', name);
  return `/images/get?${query}`;
}
