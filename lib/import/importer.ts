/**
 * The one way an image enters the catalog, whether a pull, a load or a registry client's fill
 * brought it: make its blobs present and live (the source knows how), build the manifest
 * records and the image summary, then commit manifests, blob touches and each name atomically.
 * A commit the catalog refuses because the collector took a blob it names (BlobNotLiveError)
 * has that blob made present again and is retried: the GC-safe retry of docs/architecture.md.
 * Nothing is named before every blob is live, so a failing import tags nothing (invariant 2).
 */
import type { Digest } from '../digest.ts';
import { BlobNotLiveError, DigestMismatchError, InvalidImageError } from '../errors.ts';
import { configLabels, type ImageConfig } from '../image-config.ts';
import type { Descriptor, RepositoryName } from '../model.ts';
import type { Clock } from '../ports/clock.ts';
import type { ImageCatalog, ImageSummary, ManifestRecord } from '../ports/image-catalog.ts';
import type { ImageSource, PresentBlob } from './image-source.ts';

export interface ImporterDeps {
  catalog: Pick<ImageCatalog, 'commitImage'>;
  clock: Clock;
}

/** A name to give the image; each is its own commit. */
export interface ImageName {
  repository: RepositoryName;
  /** The tag to point at the image; none names it by digest only. */
  tag?: string;
  /** Also record `repository@<source digest>` (a pull, or an archive's own manifest). */
  digestRef: boolean;
}

export interface ImportOptions {
  /** Blobs made present at once. */
  concurrency: number;
  /** Called once, after the config was checked and before the first layer is asked for. */
  onLayersStart?: () => void;
  /** Called as each layer is present and checked against the config. */
  onLayerPresent?: (layer: Descriptor, blob: PresentBlob) => void;
  /** A pull (not a load): the first commit counts one pull of the image. */
  pull?: boolean;
}

export interface ImportReport {
  /** The image manifest's record as the import offered it (a stored one is kept as is). */
  image: ManifestRecord;
  manifest: Digest;
  /** The config digest: Docker's image ID. */
  imageId: Digest;
  /** `repository:tag` of every tag committed. */
  tags: string[];
  /** Blobs this import stored, and blobs it found in the cache already. */
  blobs: { stored: Digest[]; present: Digest[] };
  /** Bytes of the blobs stored, and of all the image's blobs. */
  bytes: { stored: number; total: number };
}

const COMMIT_ATTEMPTS = 3;

/**
 * Imports `source` under `names` (none: the image is stored untagged). Throws what the source
 * threw, or BlobNotLiveError when the collector kept taking a blob through every attempt.
 */
export async function importImage(
  deps: ImporterDeps,
  source: ImageSource,
  names: readonly ImageName[],
  options: ImportOptions,
): Promise<ImportReport> {
  const content = new ImageContent(source, options);
  const now = deps.clock.now();
  const commits = names.length > 0 ? names : [undefined];
  let image: ManifestRecord | undefined;
  let uncounted = options.pull === true;
  for (const name of commits) {
    for (let attempt = 1; ; attempt++) {
      try {
        image ??= imageRecord(source, await content.summary(), now);
        await deps.catalog.commitImage({
          manifests: source.index ? [indexRecord(source.index, now), image] : [image],
          blobs: image.blobs,
          ...(name?.tag !== undefined && {
            tag: {
              repository: name.repository,
              tag: name.tag,
              manifest: image.digest,
              source: source.sourceDigest,
              ...(source.platform !== undefined && { platform: source.platform }),
            },
          }),
          ...(name?.digestRef && {
            digestRef: {
              repository: name.repository,
              digest: source.sourceDigest,
              manifest: image.digest,
            },
          }),
          ...(uncounted && { pulled: image.digest }),
          now: deps.clock.now(),
        });
        uncounted = false;
        break;
      } catch (error) {
        if (!(error instanceof BlobNotLiveError) || attempt >= COMMIT_ATTEMPTS) throw error;
        await content.again(error.digests);
      }
    }
  }
  return report(source, image!, names, content);
}

/** The config and layers of one import, made present once and again only when the GC took them. */
class ImageContent {
  readonly #source: ImageSource;
  readonly #options: ImportOptions;
  readonly #present = new Map<Digest, PresentBlob>();
  /** Per layer index: Docker's size of it (its files' bytes, else its blob size). */
  readonly #sizes: number[];
  #config?: ImageConfig;
  #announced = false;
  /** Whether the content phase failed part way: the next attempt starts it over. */
  #complete = false;

  constructor(source: ImageSource, options: ImportOptions) {
    this.#source = source;
    this.#options = options;
    this.#sizes = new Array<number>(source.layers.length).fill(0);
  }

  get present(): ReadonlyMap<Digest, PresentBlob> {
    return this.#present;
  }

  /** Makes every blob present (first call, or after a failed one) and answers the summary. */
  async summary(): Promise<ImageSummary> {
    if (!this.#complete) {
      await this.#ensureAll();
      this.#complete = true;
    }
    const config = this.#config!;
    return {
      configDigest: this.#source.config.digest,
      ...(config.created ? { created: config.created } : {}),
      os: config.os,
      architecture: config.architecture,
      ...(config.variant ? { variant: config.variant } : {}),
      size: this.#sizes.reduce((a, b) => a + b, 0),
      labels: configLabels(config),
    };
  }

  /** The collector took `digests` before the commit: make those present again. */
  async again(digests: readonly string[]): Promise<void> {
    if (!this.#complete) return; // The next summary() makes everything present anyway.
    const { config, layers } = this.#source;
    for (const digest of digests) {
      if (digest === config.digest) {
        await this.#ensureConfig(true);
        continue;
      }
      const index = layers.findIndex((l) => l.digest === digest);
      // A blob the catalog names that is not this image's: nothing to fetch can fix that.
      if (index === -1) throw new BlobNotLiveError(digests);
      await this.#ensureLayer(index, true);
    }
  }

  async #ensureAll(): Promise<void> {
    const again = this.#present.size > 0;
    await this.#ensureConfig(again);
    const diffIds = this.#config!.rootfs.diff_ids;
    const layers = this.#source.layers;
    if (diffIds.length !== layers.length) {
      throw new InvalidImageError(
        `${this.#source.manifest.digest} has ${layers.length} layers, but its config lists ${diffIds.length} (rootfs.diff_ids)`,
      );
    }
    if (!this.#announced) {
      this.#announced = true;
      this.#options.onLayersStart?.();
    }
    let next = 0;
    let failure: unknown;
    // After a failure no new layer starts, but those under way finish before the import
    // answers, so no download outlives the request that started it.
    const worker = async () => {
      while (next < layers.length && failure === undefined) {
        await this.#ensureLayer(next++, again);
      }
    };
    const workers = Math.max(1, Math.min(this.#options.concurrency, layers.length));
    await Promise.all(
      Array.from({ length: workers }, () =>
        worker().catch((error: unknown) => {
          failure ??= error;
        }),
      ),
    );
    if (failure !== undefined) throw failure;
  }

  async #ensureConfig(again: boolean): Promise<void> {
    const config = this.#source.config;
    this.#remember(config.digest, await this.#source.ensureBlob(config, { isLayer: false, again }));
    this.#config = await this.#source.readConfig();
  }

  async #ensureLayer(index: number, again: boolean): Promise<void> {
    const layer = this.#source.layers[index]!;
    const blob = await this.#source.ensureBlob(layer, { isLayer: true, again });
    const wanted = this.#config!.rootfs.diff_ids[index];
    // Checked per image, not per blob: the same layer may be named by a correct config and a
    // hostile one. Only a zstd layer without a decoder has no diff_id to compare.
    if (blob.diffId !== undefined && blob.diffId !== wanted) {
      throw new DigestMismatchError(
        `layer ${layer.digest} unpacks to ${blob.diffId}, but the config says ${wanted} (diff_id mismatch)`,
      );
    }
    this.#sizes[index] = blob.unpackedSize ?? layer.size;
    this.#remember(layer.digest, blob);
    this.#options.onLayerPresent?.(layer, blob);
  }

  /** A blob stored by an earlier attempt stays "stored" when a retry finds it present. */
  #remember(digest: Digest, blob: PresentBlob): void {
    const earlier = this.#present.get(digest);
    this.#present.set(digest, earlier && !earlier.existed ? { ...blob, existed: false } : blob);
  }
}

function imageRecord(source: ImageSource, summary: ImageSummary, now: number): ManifestRecord {
  return {
    digest: source.manifest.digest,
    mediaType: source.manifest.mediaType,
    raw: source.manifest.raw,
    blobs: [source.config.digest, ...source.layers.map((l) => l.digest)],
    children: [],
    image: summary,
    createdAt: now,
    lastUsedAt: now,
  };
}

function indexRecord(index: NonNullable<ImageSource['index']>, now: number): ManifestRecord {
  return {
    digest: index.digest,
    mediaType: index.mediaType,
    raw: index.raw,
    blobs: [],
    children: index.children,
    createdAt: now,
    lastUsedAt: now,
  };
}

function report(
  source: ImageSource,
  image: ManifestRecord,
  names: readonly ImageName[],
  content: ImageContent,
): ImportReport {
  const stored: Digest[] = [];
  const present: Digest[] = [];
  const bytes = { stored: 0, total: 0 };
  const seen = new Set<Digest>();
  for (const blob of [source.config, ...source.layers]) {
    if (seen.has(blob.digest)) continue;
    seen.add(blob.digest);
    bytes.total += blob.size;
    if (content.present.get(blob.digest)?.existed === false) {
      stored.push(blob.digest);
      bytes.stored += blob.size;
    } else {
      present.push(blob.digest);
    }
  }
  return {
    image,
    manifest: image.digest,
    imageId: source.config.digest,
    tags: names.flatMap((n) => (n.tag === undefined ? [] : [`${n.repository}:${n.tag}`])),
    blobs: { stored, present },
    bytes,
  };
}
