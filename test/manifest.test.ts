import { describe, expect, it } from 'vitest';
import {
  formatPlatform,
  type IndexManifest,
  parseManifest,
  parsePlatform,
  selectPlatform,
} from '../lib/manifest.ts';
import { MediaType } from '../lib/media-types.ts';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('parseManifest', () => {
  it.each([
    ['docker schema2', MediaType.dockerManifest, 'image'],
    ['oci manifest', MediaType.ociManifest, 'image'],
  ])('reads a %s', (_name, mediaType, kind) => {
    const parsed = parseManifest(
      bytes({
        schemaVersion: 2,
        mediaType,
        config: { mediaType: MediaType.dockerConfig, digest: d('a'), size: 10 },
        layers: [{ mediaType: MediaType.dockerLayerGzip, digest: d('b'), size: 20 }],
      }),
    );
    expect(parsed.kind).toBe(kind);
    expect(parsed.kind === 'image' && parsed.layers[0]?.digest).toBe(d('b'));
  });

  it('reads an OCI index without mediaType in the body from the content type', () => {
    const parsed = parseManifest(
      bytes({
        schemaVersion: 2,
        manifests: [{ mediaType: MediaType.ociManifest, digest: d('c'), size: 5 }],
      }),
      `${MediaType.ociIndex}; charset=utf-8`,
    );
    expect(parsed).toMatchObject({ kind: 'index', mediaType: MediaType.ociIndex });
  });

  it.each([
    ['schema 1 by body', { schemaVersion: 1, name: 'x' }, undefined, /schema 1/],
    ['schema 1 by type', { schemaVersion: 2 }, MediaType.dockerSchema1Signed, /schema 1/],
    ['not json', 'nope', undefined, /not valid JSON/],
    ['unknown media type', { schemaVersion: 2, mediaType: 'text/plain' }, undefined, /unsupported/],
    [
      'bad digest',
      {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: 'x', digest: 'md5:1', size: 1 },
        layers: [],
      },
      undefined,
      /not a sha256 digest/,
    ],
    [
      'negative size',
      {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: 'x', digest: d('a'), size: -1 },
        layers: [],
      },
      undefined,
      /size/,
    ],
    [
      'index without manifests',
      { schemaVersion: 2, mediaType: MediaType.ociIndex },
      undefined,
      /without manifests/,
    ],
  ])('refuses %s', (_name, doc, contentType, message) => {
    const raw = typeof doc === 'string' ? Buffer.from(doc) : bytes(doc);
    expect(() => parseManifest(raw, contentType)).toThrow(message);
  });

  it('refuses manifests over 4 MiB', () => {
    expect(() => parseManifest(Buffer.alloc(4 * 1024 * 1024 + 1, 32))).toThrow(/larger than/);
  });
});

describe('platforms', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['linux/arm64', 'linux/arm64/v8'],
    ['linux/arm64/v8', 'linux/arm64/v8'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['Linux/AMD64', 'linux/amd64'],
  ])('normalises %s to %s', (input, expected) => {
    expect(formatPlatform(parsePlatform(input))).toBe(expected);
  });

  it.each(['linux', '', 'linux/', '/amd64', 'a/b/c/d'])('refuses %j', (input) => {
    expect(() => parsePlatform(input)).toThrow(/invalid platform/);
  });

  const index: IndexManifest = {
    kind: 'index',
    mediaType: MediaType.ociIndex,
    manifests: [
      {
        mediaType: MediaType.ociManifest,
        digest: d('1') as never,
        size: 1,
        platform: { os: 'linux', architecture: 'amd64' },
      },
      {
        mediaType: MediaType.ociManifest,
        digest: d('2') as never,
        size: 1,
        platform: { os: 'linux', architecture: 'arm64' },
      },
      {
        mediaType: MediaType.ociManifest,
        digest: d('3') as never,
        size: 1,
        platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
      },
      {
        mediaType: MediaType.ociManifest,
        digest: d('4') as never,
        size: 1,
        platform: { os: 'unknown', architecture: 'unknown' },
      },
    ],
  };

  it.each([
    ['linux/amd64', d('1')],
    ['linux/arm64/v8', d('2')],
    ['linux/arm/v7', d('3')],
    ['linux/arm/v6', undefined],
    ['windows/amd64', undefined],
  ])('selects %s from an index', (platform, digest) => {
    expect(selectPlatform(index, parsePlatform(platform))?.digest).toBe(digest);
  });
});
