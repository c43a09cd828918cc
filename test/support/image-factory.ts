/**
 * Deterministic test images: real tar layers (gzip or plain) with incompressible files,
 * image configs with rootfs and Dockerfile-like history, Docker schema2 and OCI manifests,
 * and multi-arch indexes. Everything derives from a seed, so a failing test reproduces.
 * Small images live in memory; with `dir` set, layers are streamed to files there so a
 * 1 GiB benchmark image never sits in memory.
 */
import { createCipheriv, createHash, type Hash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { type Digest, sha256 } from '../../lib/digest.ts';
import { MediaType } from '../../lib/media-types.ts';
import type { Descriptor, Platform } from '../../lib/model.ts';

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/**
 * Decisions (sizes, names) come from sfc32; bulk bytes from an AES-256-CTR keystream keyed by
 * the seed: deterministic, incompressible and fast enough that gzip, not generation, is the cost.
 */
export class Rng {
  readonly seed: string;
  #state = new Uint32Array(4);
  #keystream: ReturnType<typeof createCipheriv>;

  constructor(seed: string | number) {
    this.seed = String(seed);
    const key = createHash('sha256').update(`image-cache-rng:${this.seed}`).digest();
    for (let i = 0; i < 4; i++) this.#state[i] = key.readUInt32LE(i * 4);
    for (let i = 0; i < 16; i++) this.uint32();
    this.#keystream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }

  /** An independent stream for a named part, so adding a layer to one image never shifts another. */
  fork(label: string | number): Rng {
    return new Rng(`${this.seed}/${label}`);
  }

  uint32(): number {
    const s = this.#state;
    const [a, b, c, d] = [s[0]!, s[1]!, s[2]!, s[3]!];
    const t = (((a + b) | 0) + d) | 0;
    s[3] = (d + 1) | 0;
    s[0] = b ^ (b >>> 9);
    s[1] = (c + (c << 3)) | 0;
    s[2] = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  }

  /** An integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor((this.uint32() / 0x1_0000_0000) * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  word(length: number): string {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    let out = '';
    for (let i = 0; i < length; i++) out += alphabet[this.int(0, alphabet.length - 1)];
    return out;
  }

  /** Incompressible bytes; the keystream continues across calls. */
  bytes(length: number): Buffer {
    return this.#keystream.update(Buffer.alloc(length));
  }
}

// ---------------------------------------------------------------------------------------------
// Types

export interface GeneratedBlob {
  mediaType: string;
  digest: Digest;
  size: number;
  /** In-memory content; absent when the blob was streamed to `path`. */
  bytes?: Buffer;
  path?: string;
}

export type LayerCompression = 'gzip' | 'none';

export interface LayerSpec {
  /** Sizes of the regular files in the layer. */
  files?: number[];
  /** Or a total split into `fileCount` files of random proportions. */
  totalBytes?: number;
  fileCount?: number;
  /** A tar with no entries (1024 zero bytes), like the layer of Docker's empty `RUN`s. */
  empty?: boolean;
  compression?: LayerCompression;
  /** Adds a symlink entry; symlinks are not regular files and do not count in fileBytes. */
  symlink?: boolean;
  createdBy?: string;
}

export interface GeneratedLayer extends GeneratedBlob {
  compression: LayerCompression;
  /** sha256 of the uncompressed tar, as listed in the config's rootfs.diff_ids. */
  diffId: Digest;
  /** Size of the uncompressed tar. */
  tarSize: number;
  /** Sum of the sizes of the regular files: Docker's size of the layer. */
  fileBytes: number;
  fileCount: number;
  /** The regular files and their sizes, in tar order. */
  files: { name: string; size: number }[];
  createdBy: string;
}

export type ManifestFormat = 'docker' | 'oci';

export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created: string;
  config: {
    Env: string[];
    Cmd: string[];
    WorkingDir: string;
    Labels: Record<string, string>;
    ExposedPorts?: Record<string, Record<string, never>>;
    User?: string;
  };
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history: { created: string; created_by: string; comment?: string; empty_layer?: boolean }[];
}

export interface GeneratedImage {
  kind: 'image' | 'attestation';
  format: ManifestFormat;
  platform: Platform;
  mediaType: string;
  /** The raw manifest bytes; `digest` is their sha256. */
  bytes: Buffer;
  digest: Digest;
  size: number;
  manifest: Record<string, unknown>;
  config: ImageConfig;
  configBlob: GeneratedBlob & { bytes: Buffer };
  layers: GeneratedLayer[];
  /** Config then layers, without duplicates: what a push must upload. */
  blobs: GeneratedBlob[];
  /** Sum of the layers' fileBytes: what Docker shows as the image Size. */
  fileBytes: number;
}

export interface GeneratedIndex {
  format: ManifestFormat;
  mediaType: string;
  bytes: Buffer;
  digest: Digest;
  size: number;
  index: Record<string, unknown>;
  /** Platform images, in index order. */
  images: GeneratedImage[];
  /** Buildx-style attestation manifests (OCI only), listed after the images. */
  attestations: GeneratedImage[];
  /** Every blob of every child, without duplicates. */
  blobs: GeneratedBlob[];
}

/** Schema2 has no official name for plain tar layers; this is what crane and kaniko write. */
export const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
/** sha256 of a tar with no entries: the diff_id of every empty layer Docker makes. */
export const EMPTY_LAYER_DIFF_ID =
  'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef' as Digest;

// ---------------------------------------------------------------------------------------------
// Layers

export interface LayerOptions {
  /** Stream the layer to a file in this folder (named by its hex digest) instead of memory. */
  dir?: string;
  gzipLevel?: number;
  mtime?: Date;
}

const STREAM_CHUNK = 1024 * 1024;

/** Splits `total` into `parts` non-negative integers of random proportions. */
export function splitBytes(rng: Rng, total: number, parts: number): number[] {
  const weights = Array.from({ length: parts }, () => rng.int(1, 1000));
  const sum = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((total * w) / sum));
  sizes[0]! += total - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

function fileSizes(rng: Rng, spec: LayerSpec): number[] {
  if (spec.empty) return [];
  if (spec.files) return spec.files;
  if (spec.totalBytes !== undefined) {
    const count = spec.fileCount ?? Math.max(1, Math.ceil(spec.totalBytes / (64 * 1024 * 1024)));
    return splitBytes(rng, spec.totalBytes, count);
  }
  const sizes = Array.from({ length: rng.int(1, 5) }, () => rng.int(1, 64 * 1024));
  sizes.push(0);
  return sizes;
}

class HashTap extends Transform {
  readonly hash: Hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    callback(null, chunk);
  }
  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}` as Digest;
  }
}

/** tar-stream's (streamx) sink for a streamed entry. */
type EntrySink = ReturnType<tar.Pack['entry']>;

/** Writes `size` random bytes into a streaming entry, honouring its backpressure. */
function writeEntry(entry: EntrySink, rng: Rng, size: number): void {
  let left = size;
  const pump = (): void => {
    while (left > 0) {
      const chunk = rng.bytes(Math.min(STREAM_CHUNK, left));
      left -= chunk.length;
      if (!entry.write(chunk)) {
        entry.once('drain', pump);
        return;
      }
    }
    entry.end(null);
  };
  pump();
}

type EntryHeader = Partial<tar.Header> & { name: string };

/** Adds an entry and resolves once the pack consumed it (tar-stream wants one at a time). */
function addEntry(pack: tar.Pack, header: EntryHeader, rng?: Rng): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolve());
    const size = header.size ?? 0;
    if (!rng) {
      pack.entry(header, done);
      return;
    }
    if (size <= STREAM_CHUNK) {
      pack.entry(header, rng.bytes(size), done);
      return;
    }
    // Errors of the entry reach `done` through the pack.
    writeEntry(pack.entry(header, done), rng, size);
  });
}

/** Generates one layer: directories, random regular files and optionally a symlink. */
export async function generateLayer(
  seed: Rng | string,
  spec: LayerSpec = {},
  options: LayerOptions = {},
): Promise<GeneratedLayer> {
  const rng = typeof seed === 'string' ? new Rng(seed) : seed;
  const compression = spec.compression ?? 'gzip';
  const mtime = options.mtime ?? new Date(Date.UTC(2024, 0, 1));
  const sizes = fileSizes(rng, spec);
  const root = `${rng.pick(['opt', 'usr/share', 'srv', 'var/lib'])}/${rng.word(8)}`;
  const files = sizes.map((size, i) => ({
    name: `${root}/${i % 3 === 2 ? 'data/' : ''}f${i}-${rng.word(6)}.bin`,
    size,
  }));
  const common = { mtime, uid: 0, gid: 0, uname: 'root', gname: 'root' };

  const pack = tar.pack();
  const produce = async (): Promise<void> => {
    if (files.length > 0) {
      const parts = root.split('/');
      for (let i = 1; i <= parts.length; i++) {
        const name = `${parts.slice(0, i).join('/')}/`;
        await addEntry(pack, { ...common, name, type: 'directory', mode: 0o755 });
      }
      await addEntry(pack, { ...common, name: `${root}/data/`, type: 'directory', mode: 0o755 });
    }
    for (const file of files) {
      await addEntry(
        pack,
        { ...common, name: file.name, type: 'file', mode: 0o644, size: file.size },
        rng,
      );
    }
    if (spec.symlink && files.length > 0) {
      const name = `${root}/link-${rng.word(4)}`;
      await addEntry(pack, {
        ...common,
        name,
        type: 'symlink',
        linkname: `/${files[0]!.name}`,
        mode: 0o777,
      });
    }
    pack.finalize();
  };

  const tarTap = new HashTap();
  const blobTap = new HashTap();
  const chunks: Buffer[] = [];
  const tmpPath = options.dir ? join(options.dir, `layer-${randomUUID()}.tmp`) : undefined;
  const sink: Writable | ((source: AsyncIterable<Buffer>) => Promise<void>) = tmpPath
    ? createWriteStream(tmpPath)
    : async (source) => {
        for await (const chunk of source) chunks.push(chunk);
      };
  const stages =
    compression === 'gzip'
      ? pipeline(pack, tarTap, createGzip({ level: options.gzipLevel ?? 1 }), blobTap, sink)
      : pipeline(pack, tarTap, blobTap, sink);
  const produced = produce().catch((error: unknown) => {
    pack.destroy(error as Error);
    throw error;
  });
  await Promise.all([stages, produced]);

  const digest = blobTap.digest();
  const layer: GeneratedLayer = {
    // OCI by default; assembleImage sets the Docker type for schema2 manifests.
    mediaType: layerMediaType('oci', compression),
    digest,
    size: blobTap.size,
    compression,
    diffId: tarTap.digest(),
    tarSize: tarTap.size,
    fileBytes: sizes.reduce((a, b) => a + b, 0),
    fileCount: files.length,
    files,
    createdBy: spec.createdBy ?? `RUN /bin/sh -c install-${rng.word(6)} # buildkit`,
  };
  if (tmpPath && options.dir) {
    layer.path = join(options.dir, digest.slice('sha256:'.length));
    await rename(tmpPath, layer.path);
  } else {
    layer.bytes = Buffer.concat(chunks);
  }
  return layer;
}

function layerMediaType(format: ManifestFormat, compression: LayerCompression): string {
  if (format === 'oci') return compression === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayer;
  return compression === 'gzip' ? MediaType.dockerLayerGzip : DOCKER_LAYER_TAR;
}

// ---------------------------------------------------------------------------------------------
// Images

export interface ImageOptions {
  seed: string | number;
  format?: ManifestFormat;
  /** `linux/arm64/v8` or a Platform; default linux/amd64. */
  platform?: string | Platform;
  /** Layer specs, or a count of small random layers; default 3. */
  layers?: LayerSpec[] | number;
  /** Layers generated elsewhere, placed before the image's own (a shared base). */
  baseLayers?: GeneratedLayer[];
  labels?: Record<string, string>;
  /** Streams layers to files in this folder (big images). */
  dir?: string;
  gzipLevel?: number;
  /** Layers generated at once; default the number of CPUs (at least 2). */
  concurrency?: number;
  /** JSON indentation of the manifest; default 3 spaces for Docker (as dockerd pushes), none for OCI. */
  indent?: number;
}

export function parsePlatform(value: string | Platform): Platform {
  if (typeof value !== 'string') return value;
  const [os, architecture, variant] = value.split('/');
  if (!os || !architecture) throw new Error(`invalid platform: ${value}`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

function json(value: unknown, indent?: number): Buffer {
  return Buffer.from(indent ? JSON.stringify(value, null, indent) : JSON.stringify(value));
}

function uniqueBlobs(blobs: GeneratedBlob[]): GeneratedBlob[] {
  const seen = new Map<Digest, GeneratedBlob>();
  for (const blob of blobs) if (!seen.has(blob.digest)) seen.set(blob.digest, blob);
  return [...seen.values()];
}

export async function generateImage(options: ImageOptions): Promise<GeneratedImage> {
  const rng = new Rng(options.seed);
  const created = new Date(Date.UTC(2024, 0, 1) + rng.int(0, 365 * 24 * 3600) * 1000);
  const specs: LayerSpec[] =
    typeof options.layers === 'number' || options.layers === undefined
      ? Array.from({ length: options.layers ?? 3 }, () => ({}))
      : options.layers;
  // Each layer has its own forked Rng, so generating them concurrently stays deterministic;
  // zlib runs on the libuv pool, so this uses more than one core for big images.
  const own: GeneratedLayer[] = new Array(specs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < specs.length; i = next++) {
      own[i] = await generateLayer(rng.fork(`layer-${i}`), specs[i]!, {
        dir: options.dir,
        gzipLevel: options.gzipLevel,
        mtime: created,
      });
    }
  };
  const workers = Math.min(
    specs.length,
    options.concurrency ?? Math.max(2, availableParallelism()),
  );
  await Promise.all(Array.from({ length: workers }, worker));
  return assembleImage({ ...options, layers: [...(options.baseLayers ?? []), ...own], created });
}

export interface AssembleOptions extends Omit<ImageOptions, 'layers' | 'baseLayers'> {
  layers: GeneratedLayer[];
  created?: Date;
}

/** Builds config and manifest around existing layers (e.g. the same layers in two formats). */
export function assembleImage(options: AssembleOptions): GeneratedImage {
  const rng = new Rng(`${options.seed}/assemble`);
  const format = options.format ?? 'oci';
  const platform = parsePlatform(options.platform ?? 'linux/amd64');
  const start = options.created ?? new Date(Date.UTC(2024, 0, 1));
  let clock = start.getTime() - 60_000 * (options.layers.length + 4);
  const at = () => {
    clock += rng.int(1, 30_000);
    return new Date(clock).toISOString();
  };

  const history: ImageConfig['history'] = [];
  const nop = (created_by: string) =>
    history.push({
      created: at(),
      created_by,
      comment: 'buildkit.dockerfile.v0',
      empty_layer: true,
    });
  for (const [i, layer] of options.layers.entries()) {
    const createdBy =
      i === 0 ? `/bin/sh -c #(nop) ADD file:${layer.diffId.slice(7)} in / ` : layer.createdBy;
    history.push({
      created: at(),
      created_by: createdBy,
      ...(i > 0 ? { comment: 'buildkit.dockerfile.v0' } : {}),
    });
    if (i === 0)
      history.push({
        created: at(),
        created_by: '/bin/sh -c #(nop)  CMD ["/bin/sh"]',
        empty_layer: true,
      });
  }
  const seedEnv = `IMAGE_SEED=${options.seed}`;
  nop(`ENV ${seedEnv}`);
  const labels = { 'org.opencontainers.image.title': `test-${rng.word(6)}`, ...options.labels };
  nop(
    `LABEL ${Object.entries(labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  );
  nop('WORKDIR /app');
  nop('EXPOSE map[8080/tcp:{}]');
  nop('CMD ["/app/run"]');

  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    created: history.at(-1)!.created,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', seedEnv],
      Cmd: ['/app/run'],
      WorkingDir: '/app',
      Labels: labels,
      ExposedPorts: { '8080/tcp': {} },
    },
    rootfs: { type: 'layers', diff_ids: options.layers.map((l) => l.diffId) },
    history,
  };
  const configBytes = json(config);
  const configBlob = {
    mediaType: format === 'oci' ? MediaType.ociConfig : MediaType.dockerConfig,
    digest: sha256(configBytes),
    size: configBytes.length,
    bytes: configBytes,
  };
  const layers = options.layers.map((l) => ({
    ...l,
    mediaType: layerMediaType(format, l.compression),
  }));
  const mediaType = format === 'oci' ? MediaType.ociManifest : MediaType.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: configBlob.mediaType, digest: configBlob.digest, size: configBlob.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const bytes = json(manifest, options.indent ?? (format === 'docker' ? 3 : undefined));
  return {
    kind: 'image',
    format,
    platform,
    mediaType,
    bytes,
    digest: sha256(bytes),
    size: bytes.length,
    manifest,
    config,
    configBlob,
    layers,
    blobs: uniqueBlobs([configBlob, ...layers]),
    fileBytes: layers.reduce((sum, l) => sum + l.fileBytes, 0),
  };
}

/** A buildx-style attestation manifest (in-toto SPDX layer) for `subject`. */
function attestationFor(subject: GeneratedImage, seed: string): GeneratedImage {
  const statementBytes = json({
    _type: 'https://in-toto.io/Statement/v0.1',
    predicateType: 'https://spdx.dev/Document',
    subject: [{ name: `pkg:docker/test@${seed}`, digest: { sha256: subject.digest.slice(7) } }],
    predicate: { spdxVersion: 'SPDX-2.3', name: `sbom-${seed}` },
  });
  const statement: GeneratedLayer = {
    mediaType: IN_TOTO_MEDIA_TYPE,
    digest: sha256(statementBytes),
    size: statementBytes.length,
    bytes: statementBytes,
    compression: 'none',
    diffId: sha256(statementBytes),
    tarSize: statementBytes.length,
    fileBytes: 0,
    fileCount: 0,
    files: [],
    createdBy: '',
  };
  const config: ImageConfig = {
    architecture: 'unknown',
    os: 'unknown',
    created: subject.config.created,
    config: { Env: [], Cmd: [], WorkingDir: '', Labels: {} },
    rootfs: { type: 'layers', diff_ids: [statement.diffId] },
    history: [],
  };
  const configBytes = json({
    architecture: 'unknown',
    os: 'unknown',
    config: {},
    rootfs: config.rootfs,
  });
  const configBlob = {
    mediaType: MediaType.ociConfig,
    digest: sha256(configBytes),
    size: configBytes.length,
    bytes: configBytes,
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: configBlob.mediaType, digest: configBlob.digest, size: configBlob.size },
    layers: [
      {
        mediaType: IN_TOTO_MEDIA_TYPE,
        digest: statement.digest,
        size: statement.size,
        annotations: { 'in-toto.io/predicate-type': 'https://spdx.dev/Document' },
      },
    ],
  };
  const bytes = json(manifest);
  return {
    kind: 'attestation',
    format: 'oci',
    platform: { os: 'unknown', architecture: 'unknown' },
    mediaType: MediaType.ociManifest,
    bytes,
    digest: sha256(bytes),
    size: bytes.length,
    manifest,
    config,
    configBlob,
    layers: [statement],
    blobs: [configBlob, statement],
    fileBytes: 0,
  };
}

export interface IndexOptions extends Omit<ImageOptions, 'platform' | 'baseLayers'> {
  /** Default linux/amd64 and linux/arm64/v8. */
  platforms?: (string | Platform)[];
  /** Add an attestation manifest per platform, as `docker buildx build` does (OCI only). */
  attestations?: boolean;
  /** Layers shared by every platform (placed first), to exercise blob dedup across children. */
  sharedLayers?: GeneratedLayer[];
  annotations?: Record<string, string>;
}

/** An OCI index (format `oci`) or a Docker manifest list (format `docker`). */
export async function generateIndex(options: IndexOptions): Promise<GeneratedIndex> {
  const format = options.format ?? 'oci';
  if (options.attestations && format !== 'oci') {
    throw new Error('attestation manifests only exist in OCI indexes');
  }
  const platforms = options.platforms ?? ['linux/amd64', 'linux/arm64/v8'];
  const images: GeneratedImage[] = [];
  for (const platform of platforms) {
    const name = formatPlatform(parsePlatform(platform));
    images.push(
      await generateImage({
        ...options,
        seed: `${options.seed}/${name}`,
        platform,
        baseLayers: options.sharedLayers,
      }),
    );
  }
  const attestations = options.attestations
    ? images.map((image) =>
        attestationFor(image, `${options.seed}/${formatPlatform(image.platform)}`),
      )
    : [];
  const mediaType = format === 'oci' ? MediaType.ociIndex : MediaType.dockerManifestList;
  const manifests: Descriptor[] = [
    ...images.map((image) => ({
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.size,
      platform: image.platform,
    })),
    ...attestations.map((att, i) => ({
      mediaType: att.mediaType,
      digest: att.digest,
      size: att.size,
      annotations: {
        'vnd.docker.reference.digest': images[i]!.digest,
        'vnd.docker.reference.type': 'attestation-manifest',
      },
      platform: att.platform,
    })),
  ];
  const index = {
    schemaVersion: 2,
    mediaType,
    manifests,
    ...(options.annotations ? { annotations: options.annotations } : {}),
  };
  const bytes = json(index, options.indent ?? (format === 'docker' ? 3 : undefined));
  return {
    format,
    mediaType,
    bytes,
    digest: sha256(bytes),
    size: bytes.length,
    index,
    images,
    attestations,
    blobs: uniqueBlobs([...images, ...attestations].flatMap((child) => child.blobs)),
  };
}

/**
 * A benchmark-sized image streamed to `dir`: `totalBytes` of file content spread over
 * `layerCount` gzip layers (default 1 GiB in 8).
 */
export function generateBigImage(options: {
  seed: string | number;
  dir: string;
  totalBytes?: number;
  layerCount?: number;
  format?: ManifestFormat;
  gzipLevel?: number;
}): Promise<GeneratedImage> {
  const rng = new Rng(`${options.seed}/big`);
  const total = options.totalBytes ?? 1024 * 1024 * 1024;
  const sizes = splitBytes(rng, total, options.layerCount ?? 8);
  return generateImage({
    seed: options.seed,
    format: options.format,
    dir: options.dir,
    gzipLevel: options.gzipLevel,
    layers: sizes.map((totalBytes) => ({ totalBytes })),
  });
}

// ---------------------------------------------------------------------------------------------
// Reading blobs back

/** The blob's bytes as a stream, from memory or from its file. */
export function openBlob(blob: GeneratedBlob): Readable {
  if (blob.bytes) return Readable.from([blob.bytes]);
  if (blob.path) return createReadStream(blob.path, { highWaterMark: STREAM_CHUNK });
  throw new Error(`blob ${blob.digest} has neither bytes nor a path`);
}

export function descriptorOf(item: GeneratedBlob | GeneratedImage | GeneratedIndex): Descriptor {
  const descriptor: Descriptor = {
    mediaType: item.mediaType,
    digest: item.digest,
    size: item.size,
  };
  if ('kind' in item) descriptor.platform = item.platform;
  return descriptor;
}
