/**
 * Builds the tarballs `docker load` meets, from generated images: what Docker 25+ saves (OCI
 * layout + manifest.json), classic `docker save` (`<id>/layer.tar`), a plain OCI image layout,
 * and hand-written hostile members. Members are described first (a list that tests can reorder,
 * corrupt or extend), then written: in memory for small images, streamed to a file for big ones.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { type Digest, digestHex, sha256 } from '../../lib/digest.ts';
import { MediaType } from '../../lib/media-types.ts';
import type { CacheServer } from './cache-server.ts';
import type { GeneratedBlob, GeneratedImage, GeneratedIndex } from './image-factory.ts';

export interface TarMember {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  /** Content in memory, or `path` to stream it from (with `size`). */
  bytes?: Buffer;
  path?: string;
  size?: number;
  linkname?: string;
}

export interface TaggedImage {
  image: GeneratedImage;
  /** As `docker save` writes RepoTags: `nginx:latest`, `localhost:5000/a/b:1`. */
  tags: string[];
}

const MTIME = new Date(Date.UTC(2024, 0, 1));

function file(name: string, content: Buffer | string | GeneratedBlob): TarMember {
  if (typeof content === 'string') return { name, bytes: Buffer.from(content) };
  if (Buffer.isBuffer(content)) return { name, bytes: content };
  if (content.bytes) return { name, bytes: content.bytes };
  return { name, path: content.path!, size: content.size };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function blobName(digest: Digest): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

/** `repositories`: {"nginx": {"latest": "<top layer id>"}}, as docker save writes it. */
function repositories(images: TaggedImage[], topId: (image: GeneratedImage) => string): Buffer {
  const repos: Record<string, Record<string, string>> = {};
  for (const { image, tags } of images) {
    for (const tag of tags) {
      const colon = tag.lastIndexOf(':');
      const [name, t] =
        colon > tag.lastIndexOf('/')
          ? [tag.slice(0, colon), tag.slice(colon + 1)]
          : [tag, 'latest'];
      repos[name] = { ...repos[name], [t]: topId(image) };
    }
  }
  return json(repos);
}

/** Docker 25+ `docker save`: OCI layout (blobs, index.json, oci-layout) plus manifest.json. */
export function docker25Members(images: TaggedImage[]): TarMember[] {
  const members: TarMember[] = [];
  const seen = new Set<string>();
  const blob = (digest: Digest, content: Buffer | GeneratedBlob) => {
    if (seen.has(digest)) return;
    seen.add(digest);
    members.push(file(blobName(digest), content));
  };
  for (const { image } of images) {
    blob(image.digest, image.bytes);
    blob(image.configBlob.digest, image.configBlob);
    for (const layer of image.layers) blob(layer.digest, layer);
  }
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: images.flatMap(({ image, tags }) =>
      (tags.length > 0 ? tags : [undefined]).map((tag) => ({
        mediaType: image.mediaType,
        digest: image.digest,
        size: image.size,
        ...(tag
          ? {
              annotations: {
                'io.containerd.image.name': fullName(tag),
                'org.opencontainers.image.ref.name': tag.slice(tag.lastIndexOf(':') + 1),
              },
            }
          : {}),
      })),
    ),
  };
  const manifest = images.map(({ image, tags }) => ({
    Config: blobName(image.configBlob.digest),
    RepoTags: tags,
    Layers: image.layers.map((l) => blobName(l.digest)),
  }));
  members.push(file('index.json', json(index)));
  members.push(file('manifest.json', json(manifest)));
  members.push(file('oci-layout', json({ imageLayoutVersion: '1.0.0' })));
  members.push(
    file(
      'repositories',
      repositories(images, (i) => digestHex(i.layers.at(-1)!.digest)),
    ),
  );
  return members;
}

/** `nginx:1` -> `docker.io/library/nginx:1`, as containerd annotates (tests use simple names). */
function fullName(tag: string): string {
  const first = tag.split('/')[0]!;
  if (tag.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    return tag;
  }
  return `docker.io/${tag.includes('/') ? tag : `library/${tag}`}`;
}

/** Uncompressed layer tar: what classic saves hold. */
function layerTar(layer: GeneratedImage['layers'][number]): Buffer {
  if (!layer.bytes) throw new Error('classic tarballs of file-backed layers: use compression none');
  return layer.compression === 'gzip' ? gunzipSync(layer.bytes) : layer.bytes;
}

/**
 * Classic `docker save` (before Docker 25): `<id>/layer.tar` (uncompressed), `<id>/json`,
 * `<id>/VERSION`, `<config hex>.json`, manifest.json, repositories. With `symlinkShared`, a
 * layer already written for an earlier image is a symlink `../<id>/layer.tar`, as Docker does.
 */
export function classicMembers(
  images: TaggedImage[],
  options: { symlinkShared?: boolean } = {},
): TarMember[] {
  const members: TarMember[] = [];
  const written = new Map<Digest, string>();
  const manifest = [];
  const topIds = new Map<GeneratedImage, string>();
  for (const { image, tags } of images) {
    let parent = '';
    const layers: string[] = [];
    for (const layer of image.layers) {
      const id = digestHex(sha256(`${parent} ${layer.diffId} ${image.configBlob.digest}`));
      members.push(file(`${id}/VERSION`, '1.0'));
      members.push(
        file(
          `${id}/json`,
          json({ id, ...(parent ? { parent } : {}), created: '2024-01-01T00:00:00Z' }),
        ),
      );
      const previous = written.get(layer.diffId);
      if (previous && options.symlinkShared) {
        members.push({ name: `${id}/layer.tar`, type: 'symlink', linkname: `../${previous}` });
      } else {
        const bytes = layerTar(layer);
        members.push(file(`${id}/layer.tar`, bytes));
        written.set(layer.diffId, `${id}/layer.tar`);
      }
      layers.push(`${id}/layer.tar`);
      parent = id;
    }
    topIds.set(image, parent);
    members.push(file(`${digestHex(image.configBlob.digest)}.json`, image.configBlob.bytes));
    manifest.push({
      Config: `${digestHex(image.configBlob.digest)}.json`,
      RepoTags: tags.length > 0 ? tags : null,
      Layers: layers,
    });
  }
  members.push(
    file(
      'repositories',
      repositories(images, (i) => topIds.get(i)!),
    ),
  );
  members.push(file('manifest.json', json(manifest)));
  return members;
}

/**
 * go-containerregistry's `tarball.Write` (crane export/pull --format=tarball): the config as
 * `sha256:<hex>`, layers as stored (`<hex>.tar.gz`, compressed), manifest.json, no repositories.
 */
export function craneMembers(images: TaggedImage[]): TarMember[] {
  const members: TarMember[] = [];
  const seen = new Set<string>();
  const manifest = images.map(({ image, tags }) => {
    const config = image.configBlob.digest;
    if (!seen.has(config)) members.push(file(config, image.configBlob));
    seen.add(config);
    const layers = image.layers.map((layer) => {
      const name = `${digestHex(layer.digest)}${layer.compression === 'gzip' ? '.tar.gz' : '.tar'}`;
      if (!seen.has(name)) members.push(file(name, layer));
      seen.add(name);
      return name;
    });
    return { Config: config, RepoTags: tags, Layers: layers };
  });
  members.push(file('manifest.json', json(manifest)));
  return members;
}

export interface LayoutEntry {
  target: GeneratedImage | GeneratedIndex;
  /** `org.opencontainers.image.ref.name`. */
  refName?: string;
  /** `io.containerd.image.name`. */
  imageName?: string;
  /** For an index: only these children's blobs go in (default all). */
  children?: GeneratedImage[];
}

/** A plain OCI image layout (oci-layout, index.json, blobs), no manifest.json. */
export function ociLayoutMembers(entries: LayoutEntry[]): TarMember[] {
  const members: TarMember[] = [file('oci-layout', json({ imageLayoutVersion: '1.0.0' }))];
  const seen = new Set<string>();
  const blob = (digest: Digest, content: Buffer | GeneratedBlob) => {
    if (seen.has(digest)) return;
    seen.add(digest);
    members.push(file(blobName(digest), content));
  };
  const addImage = (image: GeneratedImage) => {
    blob(image.digest, image.bytes);
    blob(image.configBlob.digest, image.configBlob);
    for (const layer of image.layers) blob(layer.digest, layer);
  };
  for (const entry of entries) {
    blob(entry.target.digest, entry.target.bytes);
    if ('images' in entry.target)
      for (const image of entry.children ?? entry.target.images) addImage(image);
    else addImage(entry.target);
  }
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: entries.map((e) => ({
      mediaType: e.target.mediaType,
      digest: e.target.digest,
      size: e.target.size,
      ...(e.refName || e.imageName
        ? {
            annotations: {
              ...(e.imageName ? { 'io.containerd.image.name': e.imageName } : {}),
              ...(e.refName ? { 'org.opencontainers.image.ref.name': e.refName } : {}),
            },
          }
        : {}),
    })),
  };
  members.push(file('index.json', json(index)));
  return members;
}

const INDEX_MEMBERS = new Set(['manifest.json', 'index.json', 'repositories', 'oci-layout']);

/** Reorders members: the index files first, last (as classic saves), or everything reversed. */
export function reorder(
  members: TarMember[],
  order: 'index-first' | 'index-last' | 'reverse',
): TarMember[] {
  if (order === 'reverse') return [...members].reverse();
  const index = members.filter((m) => INDEX_MEMBERS.has(m.name));
  const rest = members.filter((m) => !INDEX_MEMBERS.has(m.name));
  return order === 'index-first' ? [...index, ...rest] : [...rest, ...index];
}

async function pack(members: TarMember[], out: Writable, gzip: boolean): Promise<void> {
  const packer = tar.pack();
  const done = gzip ? pipeline(packer, createGzip({ level: 1 }), out) : pipeline(packer, out);
  for (const m of members) {
    const header = {
      name: m.name,
      type: m.type ?? 'file',
      mode: m.type === 'directory' ? 0o755 : 0o644,
      mtime: MTIME,
      ...(m.linkname !== undefined ? { linkname: m.linkname } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (error?: Error | null) => (error ? reject(error) : resolve());
      if (m.path) {
        const entry = packer.entry({ ...header, size: m.size }, cb);
        createReadStream(m.path).pipe(entry as unknown as Writable);
      } else if ((m.type ?? 'file') === 'file') {
        packer.entry(header, m.bytes ?? Buffer.alloc(0), cb);
      } else {
        packer.entry(header, cb);
      }
    });
  }
  packer.finalize();
  await done;
}

export async function tarBuffer(
  members: TarMember[],
  options: { gzip?: boolean } = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  await pack(members, sink, options.gzip ?? false);
  return Buffer.concat(chunks);
}

export async function writeTarFile(
  members: TarMember[],
  path: string,
  options: { gzip?: boolean } = {},
): Promise<void> {
  await pack(members, createWriteStream(path), options.gzip ?? false);
}

/**
 * One 512-byte ustar header written by hand, so a hostile test can declare any size for the
 * data that follows (sizes past the 11 octal digits of the field need `paxHeaderBlocks`).
 * `typeflag` is tar's one-letter type: `0` file, `x` pax extended header.
 */
export function tarHeaderBlock(name: string, size: number, typeflag = '0'): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  header.write('0000644\0', 100, 'ascii');
  header.write('0000000\0', 108, 'ascii');
  header.write('0000000\0', 116, 'ascii');
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  header.write(`${Math.floor(MTIME.getTime() / 1000).toString(8)}\0`, 136, 'ascii');
  header.write(typeflag, 156, 'ascii');
  header.write('ustar\0', 257, 'ascii');
  header.write('00', 263, 'ascii');
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}

/** A pax record, `<length> <key>=<value>\n`, where the length counts the whole record. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return `${length}${body}`;
}

/**
 * A pax extended header (`x`) carrying `records` (e.g. `{ size: '10000000000' }`), padded to
 * whole blocks, then the ustar header of `name` it applies to (whose own size field says 0).
 */
export function paxHeaderBlocks(name: string, records: Record<string, string>): Buffer {
  const data = Buffer.from(
    Object.entries(records)
      .map(([key, value]) => paxRecord(key, value))
      .join(''),
  );
  const padded = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  data.copy(padded);
  return Buffer.concat([
    tarHeaderBlock('PaxHeader', data.length, 'x'),
    padded,
    tarHeaderBlock(name, 0),
  ]);
}

/** A tarball's bytes without the zero blocks that end it, so hand-written entries can follow. */
export function withoutEndBlocks(tarball: Buffer): Buffer {
  let end = tarball.length;
  while (end >= 512 && tarball.subarray(end - 512, end).every((byte) => byte === 0)) end -= 512;
  return tarball.subarray(0, end);
}

export function readableOf(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}

// ---------------------------------------------------------------------------------------------
// Talking to the server

export interface LoadResponse {
  status: number;
  text: string;
  lines: Array<{ stream?: string; error?: string }>;
  message?: string;
}

export async function postLoad(
  server: CacheServer,
  body: Buffer,
  query = 'quiet=1',
): Promise<LoadResponse> {
  const response = await fetch(`${server.url}/images/load?${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-tar' },
    body: new Uint8Array(body),
  });
  const text = await response.text();
  const lines = text
    .split(/\r?\n/)
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
  return {
    status: response.status,
    text,
    lines,
    message: response.status >= 400 ? (lines[0]?.message as string) : undefined,
  };
}

interface ImageSummaryJson {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Size: number;
}

export async function listImages(server: CacheServer): Promise<ImageSummaryJson[]> {
  return (await fetch(`${server.url}/images/json?all=1`)).json() as Promise<ImageSummaryJson[]>;
}
