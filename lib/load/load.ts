/**
 * `docker load` for the cache. One pass over the archive stores every file that may be a blob
 * (hashed while it streams; `blobs/sha256/<hex>` must hash to its name) and keeps only the small
 * JSON members in memory; then the images are resolved and checked completely (formats.ts);
 * only then is anything tagged. A rejected load tags nothing: the blobs it stored are referenced
 * by no manifest, so the collector reclaims them after its grace window.
 */
import { createHash } from 'node:crypto';
import { finished, pipeline, type Readable } from 'node:stream';
import type { Digest } from '../digest.ts';
import { DigestMismatchError, ImageCacheError, InvalidArgumentError } from '../errors.ts';
import { type ImageName, importImage } from '../import/importer.ts';
import { countLayerFiles } from '../layer-stats.ts';
import { MAX_JSON_BYTES } from '../media-types.ts';
import type { BlobStore } from '../ports/blob-store.ts';
import type { Clock } from '../ports/clock.ts';
import type { ImageCatalog } from '../ports/image-catalog.ts';
import { familiarString, repositoryName } from '../reference.ts';
import { TeeStream } from '../tee-stream.ts';
import { waitForDeletion } from '../wait-for-deletion.ts';
import { archiveSource } from './archive-source.ts';
import {
  type ArchiveFormat,
  type ArchiveIndex,
  type PlannedImage,
  planImages,
  type StoredMember,
} from './formats.ts';
import { type ArchiveStats, archiveError, type LoadLimits, readArchive } from './tar-reader.ts';

export interface LoadDeps {
  catalog: ImageCatalog;
  blobs: BlobStore;
  clock: Clock;
  /** How long to wait for the collector to finish deleting a blob the load needs. */
  deletionWaitMs?: number;
}

export interface LoadedImage {
  id: Digest;
  manifest: Digest;
  tags: string[];
}

export interface LoadResult {
  format: ArchiveFormat;
  images: LoadedImage[];
  /** What Docker prints: `Loaded image: nginx:latest` or `Loaded image ID: sha256:...`. */
  messages: string[];
  stats: ArchiveStats;
}

export interface LoadOptions {
  limits: LoadLimits;
  /** Bytes of the body read so far, for progress reporting. */
  onProgress?: (bytes: number) => void;
}

/** Members kept in memory; everything else streams to the BlobStore or is discarded. */
const BUFFERED_MEMBERS = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);
/** Classic per-layer metadata (`<id>/json`, `<id>/VERSION`): not needed to rebuild the image. */
const LEGACY_METADATA = /^[^/]+\/(json|VERSION)$/;
const BLOB_PATH = /^blobs\/sha256\/([a-f0-9]{64})$/;
const RECORD_ATTEMPTS = 3;
const MAX_IN_FLIGHT = 4;
const COALESCE_BYTES = 256 * 1024;

export async function loadArchive(
  body: Readable,
  deps: LoadDeps,
  options: LoadOptions,
): Promise<LoadResult> {
  const stats: ArchiveStats = { compression: 'none', bodyBytes: 0, tarBytes: 0 };
  const scan = new ArchiveScan(deps);
  try {
    for await (const entry of readArchive(body, options.limits, stats)) {
      if (entry.kind === 'link') scan.addLink(entry.path, entry.target);
      else await scan.addFile(entry.path, entry.size, entry.stream);
      options.onProgress?.(stats.bodyBytes);
    }
    await scan.settle();
  } catch (error) {
    await scan.settle().catch(() => {});
    // A blob write fails with a vague stream error when the archive itself broke underneath.
    throw stats.error ?? (error instanceof ImageCacheError ? error : archiveError(error));
  }
  const { format, images } = await planImages(scan.index());
  const loaded: LoadedImage[] = [];
  const messages: string[] = [];
  for (const image of images) {
    loaded.push(await commit(deps, scan, image));
    const last = loaded.at(-1)!;
    if (last.tags.length === 0) messages.push(`Loaded image ID: ${last.id}`);
    for (const tag of last.tags) messages.push(`Loaded image: ${tag}`);
  }
  return { format, images: loaded, messages, stats };
}

/** What one pass over the archive learned; blobs are recorded live as soon as they are stored. */
class ArchiveScan {
  readonly #deps: LoadDeps;
  readonly #files = new Map<string, StoredMember>();
  readonly #json = new Map<string, Buffer>();
  readonly #links = new Map<string, string>();
  /** Discarded members by path, with their digest, to tell agreeing duplicates from others. */
  readonly #discarded = new Map<string, Digest>();
  /** Paths of regular files seen, stored or still in flight. */
  readonly #fileNames = new Set<string>();
  readonly #inFlight = new Set<Promise<void>>();
  #failure: unknown;

  constructor(deps: LoadDeps) {
    this.#deps = deps;
  }

  index(): ArchiveIndex {
    return {
      files: this.#files,
      json: this.#json,
      links: this.#links,
      readSmall: (digest, label) => this.#readSmall(digest, label),
    };
  }

  addLink(path: string, target: string): void {
    if (target === path) throw new InvalidArgumentError(`link ${path} points to itself`);
    const previous = this.#links.get(path);
    if (previous !== undefined && previous !== target) this.#duplicate(path);
    if (this.#fileNames.has(path) || this.#json.has(path) || this.#discarded.has(path)) {
      this.#duplicate(path);
    }
    this.#links.set(path, target);
  }

  async addFile(path: string, size: number, stream: Readable): Promise<void> {
    if (this.#links.has(path)) this.#duplicate(path);
    if (BUFFERED_MEMBERS.has(path)) {
      const bytes = await readCapped(stream, size, path);
      const previous = this.#json.get(path);
      if (previous && !previous.equals(bytes)) this.#duplicate(path);
      this.#json.set(path, bytes);
      return;
    }
    if (LEGACY_METADATA.test(path)) {
      const digest = await hashAndDiscard(stream);
      const previous = this.#discarded.get(path);
      if (previous && previous !== digest) this.#duplicate(path);
      this.#discarded.set(path, digest);
      return;
    }
    this.#fileNames.add(path);
    // The next entry may stream in while this one is fsynced and recorded: wait only until
    // the entry was read, keeping a few stores in flight. finished() also settles for an entry
    // that failed before we got here (the archive ended inside it).
    const consumed = new Promise<void>((resolve) => finished(stream, () => resolve()));
    const task = this.#store(path, stream).then((stored) => {
      const previous = this.#files.get(path);
      if (previous && previous.digest !== stored.digest) this.#duplicate(path);
      this.#files.set(path, stored);
    });
    this.#inFlight.add(task);
    task.then(
      () => this.#inFlight.delete(task),
      (error: unknown) => {
        this.#inFlight.delete(task);
        this.#failure ??= error;
      },
    );
    await Promise.race([consumed, task.catch(() => {})]);
    this.#throwIfFailed();
    while (this.#inFlight.size >= MAX_IN_FLIGHT) {
      await Promise.race([...this.#inFlight].map((t) => t.catch(() => {})));
      this.#throwIfFailed();
    }
  }

  /** Waits for every store in flight; the first failure wins. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #duplicate(path: string): never {
    throw new InvalidArgumentError(
      `archive has ${path} more than once with different content; refusing an ambiguous archive`,
    );
  }

  async #store(path: string, stream: Readable): Promise<StoredMember> {
    const { blobs, clock } = this.#deps;
    const named = BLOB_PATH.exec(path)?.[1];
    const expected = named ? { digest: `sha256:${named}` as Digest } : undefined;
    const stats = countLayerFiles({ diffId: 'compressed-only' });
    // Socket-sized chunks would cost a thread-pool round trip each in the store's file writes.
    const tee = new TeeStream(stats.stream, { coalesceBytes: COALESCE_BYTES });
    // pipeline(), not pipe(): it passes on a failure the entry had before this line ran (an
    // archive cut inside it), which would otherwise leave the store waiting on its temp file
    // forever. Its own outcome is the write's, reported below.
    pipeline(stream, tee, () => {});
    let written: { digest: Digest; size: number };
    try {
      written = await blobs.write(tee, expected);
    } catch (error) {
      if (error instanceof DigestMismatchError) {
        throw new DigestMismatchError(
          `archive member ${path} does not hash to the digest its name says: ${error.message}`,
        );
      }
      throw error;
    }
    const member: StoredMember = { digest: written.digest, size: written.size };
    try {
      const layer = await stats.result;
      // An uncompressed layer is its own diff: the digest the store computed is the diff_id.
      member.layer = {
        compression: layer.compression,
        diffId: layer.compression === 'none' ? written.digest : layer.diffId,
        fileBytes: layer.fileBytes,
      };
    } catch (error) {
      member.layerError = (error as Error).message;
    }
    await this.record(member, clock.now());
    return member;
  }

  /**
   * Records a stored blob as live. When the collector holds the digest, wait for its deletion to
   * finish: if our bytes survived it (our rename came after its delete) record them again,
   * otherwise the archive is gone and the load must be sent again.
   */
  async record(member: StoredMember, now: number): Promise<void> {
    const { catalog, blobs } = this.#deps;
    for (let attempt = 1; attempt <= RECORD_ATTEMPTS; attempt++) {
      const state = await catalog.addBlob(
        {
          digest: member.digest,
          size: member.size,
          unpackedSize: member.layer?.fileBytes,
          diffId: member.layer?.diffId,
        },
        now,
      );
      if (state === 'live') return;
      await waitForDeletion(this.#deps.catalog, member.digest, this.#deps.deletionWaitMs);
      if (!(await blobs.stat(member.digest))) break;
    }
    throw new ImageCacheError(
      'BLOB_NOT_LIVE',
      `blob ${member.digest} was garbage collected while the archive was loading; load it again`,
    );
  }

  memberByDigest(digest: Digest): StoredMember | undefined {
    for (const member of this.#files.values()) if (member.digest === digest) return member;
    return undefined;
  }

  async #readSmall(digest: Digest, label: string): Promise<Buffer> {
    const stat = await this.#deps.blobs.stat(digest);
    if (!stat) throw new InvalidArgumentError(`${label} is not in the archive`);
    if (stat.size > MAX_JSON_BYTES) {
      throw new InvalidArgumentError(`${label} is larger than ${MAX_JSON_BYTES} bytes`);
    }
    const stream = await this.#deps.blobs.read(digest);
    return readCapped(stream, stat.size, label);
  }
}

/** Names and commits one checked image through the importer, the one way images enter. */
async function commit(
  deps: LoadDeps,
  scan: ArchiveScan,
  image: PlannedImage,
): Promise<LoadedImage> {
  const seenRepos = new Set<string>();
  const names: ImageName[] = image.tags.map((ref) => {
    const repository = repositoryName(ref);
    // The archive's own manifest is what `name@digest` means; a written one is not.
    const digestRef = image.manifestFromArchive && !seenRepos.has(repository);
    seenRepos.add(repository);
    return { repository, tag: ref.tag ?? 'latest', digestRef };
  });
  const source = archiveSource(image, scan, () => deps.clock.now());
  const imported = await importImage(deps, source, names, { concurrency: 1 });
  return {
    id: imported.imageId,
    manifest: imported.manifest,
    tags: image.tags.map((t) => familiarString(t)),
  };
}

async function readCapped(stream: Readable, size: number, label: string): Promise<Buffer> {
  if (size > MAX_JSON_BYTES) {
    stream.resume();
    throw new InvalidArgumentError(
      `${label} is ${size} bytes, more than the ${MAX_JSON_BYTES} bytes allowed for JSON`,
    );
  }
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream) {
    length += (chunk as Buffer).length;
    if (length > MAX_JSON_BYTES) {
      throw new InvalidArgumentError(`${label} is more than ${MAX_JSON_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function hashAndDiscard(stream: Readable): Promise<Digest> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}` as Digest;
}
