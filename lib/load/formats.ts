/**
 * Turns what a loaded archive held into images: Docker 25+ saves (OCI layout + manifest.json),
 * classic `docker save` (`<id>/layer.tar`), skopeo `docker-archive` and crane `tarball` (all
 * driven by manifest.json), and plain OCI image layouts (index.json only). Every image is
 * checked completely here, before anything is tagged: config present and valid, every layer
 * present, layers matching the config's diff_ids, manifests matching their descriptors.
 */
import { type Digest, digestHex, isDigest, sha256 } from '../digest.ts';
import { ImageCacheError, InvalidArgumentError } from '../errors.ts';
import { type ImageConfig, parseImageConfig } from '../image-config.ts';
import {
  DEFAULT_PLATFORM,
  formatPlatform,
  type ImageManifest,
  type IndexManifest,
  normalizePlatform,
  parseManifest,
  selectPlatform,
} from '../manifest.ts';
import { MediaType } from '../media-types.ts';
import type { Descriptor, Reference } from '../model.ts';
import { parseReference, withDefaultTag } from '../reference.ts';

/** A regular file of the archive, stored in the BlobStore under its sha256. */
export interface StoredMember {
  digest: Digest;
  size: number;
  /** Read from the bytes as they streamed, when they were a (possibly gzipped) tar. */
  layer?: {
    compression: 'gzip' | 'none' | 'zstd';
    diffId?: Digest;
    fileBytes?: number;
  };
  /** Why the bytes could not be read as a tar (only matters if something calls them a layer). */
  layerError?: string;
}

export interface ArchiveIndex {
  /** Stored regular files by normalised archive path. */
  files: ReadonlyMap<string, StoredMember>;
  /** Small top-level JSON members (manifest.json, index.json, oci-layout, repositories). */
  json: ReadonlyMap<string, Buffer>;
  /** In-archive symlinks and hard links: path -> target path. */
  links: ReadonlyMap<string, string>;
  /** Reads a stored blob that must be small (configs, manifests), capped at MAX_JSON_BYTES. */
  readSmall(digest: Digest, label: string): Promise<Buffer>;
}

export type ArchiveFormat =
  | 'docker-oci-layout'
  | 'docker-classic'
  | 'docker-archive'
  | 'oci-layout';

export interface PlannedLayer {
  digest: Digest;
  size: number;
  mediaType: string;
  /** Docker's size of the layer (regular files), when the tar could be read. */
  fileBytes?: number;
}

export interface PlannedManifest {
  digest: Digest;
  mediaType: string;
  raw: Buffer;
}

export interface PlannedImage {
  config: { digest: Digest; size: number; json: ImageConfig };
  layers: PlannedLayer[];
  manifest: PlannedManifest;
  /** False when the archive had no manifest for the image and one was written for it. */
  manifestFromArchive: boolean;
  /** The index the archive names the image through, kept as the tag's source. */
  index?: PlannedManifest & { children: Digest[] };
  /** What RepoDigests show: the index or the manifest digest. */
  source: Digest;
  platform?: string;
  tags: Reference[];
}

const MAX_LINK_HOPS = 16;
const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';

export async function planImages(
  archive: ArchiveIndex,
): Promise<{ format: ArchiveFormat; images: PlannedImage[] }> {
  const layout = archive.json.has('index.json') ? await readLayout(archive) : undefined;
  const manifestJson = archive.json.get('manifest.json');
  if (manifestJson) {
    const entries = parseDockerManifest(manifestJson);
    const images: PlannedImage[] = [];
    for (const [i, entry] of entries.entries()) {
      images.push(await planDockerEntry(archive, layout, entry, `manifest.json[${i}]`));
    }
    const classic = entries.some((e) => e.Layers.some((l) => /(^|\/)layer\.tar$/.test(l)));
    const format: ArchiveFormat = layout
      ? 'docker-oci-layout'
      : classic
        ? 'docker-classic'
        : 'docker-archive';
    return { format, images };
  }
  if (layout) return { format: 'oci-layout', images: await planLayout(archive, layout) };
  if (archive.json.has('repositories')) {
    throw new InvalidArgumentError(
      'archive has a repositories file but no manifest.json: saves of Docker before 1.10 are not supported',
    );
  }
  throw new InvalidArgumentError(
    'archive has neither manifest.json nor index.json: not a docker save or OCI layout tarball',
  );
}

// ---------------------------------------------------------------------------------------------
// Archive lookups

function member(archive: ArchiveIndex, name: string, label: string): StoredMember {
  let path: string;
  try {
    path = name
      .split('/')
      .filter((p) => p !== '' && p !== '.')
      .join('/');
    if (name.startsWith('/') || path.split('/').includes('..')) throw new Error();
  } catch {
    throw new InvalidArgumentError(`${label} names ${JSON.stringify(name)}, outside the archive`);
  }
  for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
    const file = archive.files.get(path);
    if (file) return file;
    const target = archive.links.get(path);
    if (target === undefined) {
      throw new InvalidArgumentError(
        `${label} names ${JSON.stringify(name)}, which is not in the archive`,
      );
    }
    path = target;
  }
  throw new InvalidArgumentError(`${label}: ${JSON.stringify(name)} is a link loop`);
}

function blobMember(archive: ArchiveIndex, digest: Digest): StoredMember | undefined {
  try {
    return member(archive, `blobs/sha256/${digestHex(digest)}`, 'index');
  } catch {
    return undefined;
  }
}

function requireBlob(archive: ArchiveIndex, descriptor: Descriptor, label: string): StoredMember {
  const found = blobMember(archive, descriptor.digest);
  if (!found) {
    throw new InvalidArgumentError(
      `${label} ${descriptor.digest} is not in the archive (blobs/sha256/${digestHex(descriptor.digest)})`,
    );
  }
  if (found.size !== descriptor.size) {
    throw new ImageCacheError(
      'DIGEST_MISMATCH',
      `${label} ${descriptor.digest} has ${found.size} bytes in the archive, its descriptor says ${descriptor.size}`,
    );
  }
  return found;
}

async function readJson(raw: Buffer, label: string): Promise<unknown> {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new InvalidArgumentError(`${label} is not valid JSON`);
  }
}

async function loadConfig(
  archive: ArchiveIndex,
  stored: StoredMember,
  label: string,
): Promise<ImageConfig> {
  const raw = await archive.readSmall(stored.digest, label);
  try {
    return parseImageConfig(raw);
  } catch (error) {
    throw new InvalidArgumentError(`${label}: ${(error as Error).message}`);
  }
}

function rewrap<T>(label: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof ImageCacheError && error.code !== 'INTERNAL') {
      throw new ImageCacheError(error.code, `${label}: ${error.message}`);
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// manifest.json (Docker, skopeo, crane)

interface DockerManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

function parseDockerManifest(raw: Buffer): DockerManifestEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new InvalidArgumentError('manifest.json is not valid JSON');
  }
  if (!Array.isArray(doc)) throw new InvalidArgumentError('manifest.json is not a JSON array');
  if (doc.length === 0) throw new InvalidArgumentError('manifest.json lists no images');
  return doc.map((item, i) => {
    const e = item as Partial<DockerManifestEntry> | null;
    const where = `manifest.json[${i}]`;
    if (!e || typeof e !== 'object') throw new InvalidArgumentError(`${where} is not an object`);
    if (typeof e.Config !== 'string' || e.Config === '') {
      throw new InvalidArgumentError(`${where} has no Config`);
    }
    if (!Array.isArray(e.Layers) || !e.Layers.every((l) => typeof l === 'string')) {
      throw new InvalidArgumentError(`${where} has no valid Layers list`);
    }
    const tags = e.RepoTags ?? [];
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
      throw new InvalidArgumentError(`${where} has an invalid RepoTags list`);
    }
    return { Config: e.Config, Layers: e.Layers, RepoTags: tags };
  });
}

function parseTag(text: string, where: string): Reference {
  let ref: Reference;
  try {
    ref = withDefaultTag(parseReference(text));
  } catch (error) {
    throw new InvalidArgumentError(
      `${where}: invalid tag ${JSON.stringify(text)}: ${(error as Error).message}`,
    );
  }
  if (ref.digest) {
    throw new InvalidArgumentError(`${where}: ${JSON.stringify(text)} is a digest, not a tag`);
  }
  return ref;
}

async function planDockerEntry(
  archive: ArchiveIndex,
  layout: Layout | undefined,
  entry: DockerManifestEntry,
  where: string,
): Promise<PlannedImage> {
  const configMember = member(archive, entry.Config, `${where}.Config`);
  // Classic saves name the config `<image id>.json`, crane `sha256:<hex>`: the name is a claim.
  const claimed = /(?:^|\/)(?:sha256:)?([a-f0-9]{64})(?:\.json)?$/.exec(entry.Config)?.[1];
  if (claimed && configMember.digest !== `sha256:${claimed}`) {
    throw new ImageCacheError(
      'DIGEST_MISMATCH',
      `config ${entry.Config} hashes to ${configMember.digest}, not the ID its name says`,
    );
  }
  const config = await loadConfig(archive, configMember, `config ${entry.Config}`);
  const members = entry.Layers.map((path, i) => ({
    path,
    stored: member(archive, path, `${where}.Layers[${i}]`),
  }));
  const tags = entry.RepoTags.map((t) => parseTag(t, `${where}.RepoTags`));
  const found = layout
    ? await findInLayout(
        archive,
        layout,
        configMember.digest,
        members.map((m) => m.stored.digest),
      )
    : undefined;
  if (found) {
    checkDiffIds(config, members, `config ${entry.Config}`);
    return { ...found, config: { ...found.config, json: config }, tags };
  }
  checkDiffIds(config, members, `config ${entry.Config}`);
  const layers = members.map(({ stored }) => ({
    digest: stored.digest,
    size: stored.size,
    mediaType: layerMediaType(stored),
    fileBytes: stored.layer?.fileBytes,
  }));
  const manifest = synthesiseManifest(configMember, layers);
  return {
    config: { digest: configMember.digest, size: configMember.size, json: config },
    layers,
    manifest,
    manifestFromArchive: false,
    source: manifest.digest,
    tags,
  };
}

function layerMediaType(stored: StoredMember): string {
  const compression = stored.layer?.compression ?? 'none';
  if (compression === 'gzip') return MediaType.dockerLayerGzip;
  if (compression === 'zstd') return MediaType.ociLayerZstd;
  return DOCKER_LAYER_TAR;
}

/** Docker schema 2 (OCI when a layer is zstd, which schema 2 has no type for), 3-space indent. */
function synthesiseManifest(config: StoredMember, layers: PlannedLayer[]): PlannedManifest {
  const oci = layers.some((l) => l.mediaType === MediaType.ociLayerZstd);
  const mediaType = oci ? MediaType.ociManifest : MediaType.dockerManifest;
  const doc = {
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: oci ? MediaType.ociConfig : MediaType.dockerConfig,
      size: config.size,
      digest: config.digest,
    },
    layers: layers.map((l) => ({
      mediaType: oci && l.mediaType === DOCKER_LAYER_TAR ? MediaType.ociLayer : l.mediaType,
      size: l.size,
      digest: l.digest,
    })),
  };
  const raw = Buffer.from(JSON.stringify(doc, null, 3));
  return { digest: sha256(raw), mediaType, raw };
}

/**
 * Each layer must unpack to the diff_id the config lists. Uncompressed and gzip layers are
 * checked; zstd layers (no decoder in Node 20) only when the archive's own manifest vouches.
 */
function checkDiffIds(
  config: ImageConfig,
  members: { path: string; stored: StoredMember }[],
  label: string,
): void {
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== members.length) {
    throw new InvalidArgumentError(
      `${label} lists ${diffIds.length} layers (rootfs.diff_ids), the archive names ${members.length}`,
    );
  }
  for (const [i, { path, stored }] of members.entries()) {
    const info = stored.layer;
    if (!info) {
      throw new InvalidArgumentError(
        `layer ${path} is not a readable tar${stored.layerError ? `: ${stored.layerError}` : ''}`,
      );
    }
    // zstd without a decoder (Node before 22.15): nothing to compare against.
    if (info.diffId === undefined) continue;
    if (info.diffId !== diffIds[i]) {
      throw new ImageCacheError(
        'DIGEST_MISMATCH',
        `layer ${path} unpacks to ${info.diffId}, but ${label} says ${diffIds[i]} (diff_id mismatch)`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// OCI image layout (index.json)

interface Layout {
  index: IndexManifest;
  raw: Buffer;
}

async function readLayout(archive: ArchiveIndex): Promise<Layout> {
  const layoutFile = archive.json.get('oci-layout');
  if (layoutFile) {
    const doc = (await readJson(layoutFile, 'oci-layout')) as { imageLayoutVersion?: unknown };
    if (typeof doc?.imageLayoutVersion !== 'string') {
      throw new InvalidArgumentError('oci-layout has no imageLayoutVersion');
    }
  }
  const raw = archive.json.get('index.json')!;
  // index.json may omit mediaType; it is an OCI index by definition.
  const parsed = rewrap('index.json', () => parseManifest(raw, MediaType.ociIndex));
  if (parsed.kind !== 'index') throw new InvalidArgumentError('index.json is not an image index');
  return { index: parsed, raw };
}

async function readManifest(
  archive: ArchiveIndex,
  descriptor: Descriptor,
  label: string,
): Promise<{ parsed: ReturnType<typeof parseManifest>; raw: Buffer }> {
  const stored = requireBlob(archive, descriptor, label);
  const raw = await archive.readSmall(stored.digest, `${label} ${descriptor.digest}`);
  const parsed = rewrap(`${label} ${descriptor.digest}`, () =>
    parseManifest(raw, descriptor.mediaType),
  );
  return { parsed, raw };
}

/** Image manifests reachable from a top-level descriptor, present in the archive. */
async function candidates(
  archive: ArchiveIndex,
  top: Descriptor,
): Promise<{
  images: { descriptor: Descriptor; parsed: ImageManifest; raw: Buffer }[];
  index?: { parsed: IndexManifest; raw: Buffer };
}> {
  if (!blobMember(archive, top.digest)) return { images: [] };
  const { parsed, raw } = await readManifest(archive, top, 'manifest');
  if (parsed.kind === 'image') return { images: [{ descriptor: top, parsed, raw }] };
  const images: { descriptor: Descriptor; parsed: ImageManifest; raw: Buffer }[] = [];
  for (const child of parsed.manifests) {
    if (!blobMember(archive, child.digest)) continue;
    const read = await readManifest(archive, child, 'manifest');
    if (read.parsed.kind === 'image') {
      images.push({ descriptor: child, parsed: read.parsed, raw: read.raw });
    }
  }
  return { images, index: { parsed, raw } };
}

/** Docker 25+ saves: the manifest.json entry's image as the layout has it, byte for byte. */
async function findInLayout(
  archive: ArchiveIndex,
  layout: Layout,
  config: Digest,
  layers: Digest[],
): Promise<
  (Omit<PlannedImage, 'tags' | 'config'> & { config: { digest: Digest; size: number } }) | undefined
> {
  for (const top of layout.index.manifests) {
    const { images, index } = await candidates(archive, top);
    for (const image of images) {
      const p = image.parsed;
      if (p.config.digest !== config) continue;
      if (p.layers.length !== layers.length) continue;
      if (!p.layers.every((l, i) => l.digest === layers[i])) continue;
      return planFromManifest(archive, image, index ? { top, ...index } : undefined);
    }
  }
  return undefined;
}

function planFromManifest(
  archive: ArchiveIndex,
  image: { descriptor: Descriptor; parsed: ImageManifest; raw: Buffer },
  index: { top: Descriptor; parsed: IndexManifest; raw: Buffer } | undefined,
): Omit<PlannedImage, 'tags' | 'config'> & { config: { digest: Digest; size: number } } {
  const p = image.parsed;
  const configMember = requireBlob(archive, p.config, 'config');
  const layers = p.layers.map((l) => {
    const stored = requireBlob(archive, l, 'layer');
    return {
      digest: l.digest,
      size: l.size,
      mediaType: l.mediaType,
      fileBytes: stored.layer?.fileBytes,
    };
  });
  const platform = index
    ? formatPlatform(normalizePlatform(image.descriptor.platform ?? DEFAULT_PLATFORM))
    : undefined;
  return {
    config: { digest: configMember.digest, size: configMember.size },
    layers,
    manifest: { digest: image.descriptor.digest, mediaType: p.mediaType, raw: image.raw },
    manifestFromArchive: true,
    ...(index
      ? {
          index: {
            digest: index.top.digest,
            mediaType: index.parsed.mediaType,
            raw: index.raw,
            children: index.parsed.manifests.map((m) => m.digest),
          },
        }
      : {}),
    source: index ? index.top.digest : image.descriptor.digest,
    ...(platform ? { platform } : {}),
  };
}

/** A plain OCI layout: every index.json entry is an image (an index resolves to one platform). */
async function planLayout(archive: ArchiveIndex, layout: Layout): Promise<PlannedImage[]> {
  const images: PlannedImage[] = [];
  for (const [i, top] of layout.index.manifests.entries()) {
    const where = `index.json manifests[${i}]`;
    requireBlob(archive, top, `${where}: manifest`);
    const { images: found, index } = await candidates(archive, top);
    let chosen = found[0];
    if (index) {
      const present = { ...index.parsed, manifests: found.map((f) => f.descriptor) };
      const wanted = selectPlatform(present, DEFAULT_PLATFORM)?.digest;
      chosen =
        found.find((f) => f.descriptor.digest === wanted) ??
        found.find((f) => f.descriptor.platform && f.descriptor.platform.os !== 'unknown');
      if (!chosen) {
        throw new InvalidArgumentError(
          `${where}: index ${top.digest} has no platform image in the archive`,
        );
      }
    }
    if (!chosen) throw new InvalidArgumentError(`${where}: no image manifest`);
    const plan = planFromManifest(archive, chosen, index ? { top, ...index } : undefined);
    const configMember = requireBlob(archive, chosen.parsed.config, 'config');
    const config = await loadConfig(archive, configMember, `config ${configMember.digest}`);
    checkDiffIds(
      config,
      chosen.parsed.layers.map((l) => ({
        path: `blobs/sha256/${digestHex(l.digest)}`,
        stored: requireBlob(archive, l, 'layer'),
      })),
      `config ${configMember.digest}`,
    );
    images.push({
      ...plan,
      config: { ...plan.config, json: config },
      tags: layoutTags(top, where),
    });
  }
  return images;
}

/**
 * Names from annotations: containerd's full `io.containerd.image.name`, else the OCI ref.name
 * when it is a full reference (`nginx:1`, `ghcr.io/o/a:1`); a bare ref.name like `latest` names
 * no repository, so the image loads untagged (as `docker load` does).
 */
function layoutTags(descriptor: Descriptor, where: string): Reference[] {
  const annotations = descriptor.annotations ?? {};
  const full = annotations['io.containerd.image.name'];
  if (full) return [parseTag(full, where)];
  const ref = annotations['org.opencontainers.image.ref.name'];
  if (ref && /[:/]/.test(ref) && !isDigest(ref)) {
    try {
      return [parseTag(ref, where)];
    } catch {
      return [];
    }
  }
  return [];
}
