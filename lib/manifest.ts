import { isDigest } from './digest.ts';
import { ImageCacheError } from './errors.ts';
import {
  IMAGE_MANIFEST_MEDIA_TYPES,
  INDEX_MEDIA_TYPES,
  MAX_JSON_BYTES,
  SCHEMA1_MEDIA_TYPES,
} from './media-types.ts';
import type { Descriptor, Platform } from './model.ts';

export interface ImageManifest {
  kind: 'image';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface IndexManifest {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
}

export type ParsedManifest = ImageManifest | IndexManifest;

function invalid(message: string): ImageCacheError {
  return new ImageCacheError('UNSUPPORTED_MEDIA_TYPE', message);
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (!d || typeof d !== 'object') throw invalid(`${where}: descriptor is not an object`);
  if (typeof d.mediaType !== 'string') throw invalid(`${where}: descriptor without mediaType`);
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) {
    throw invalid(`${where}: descriptor digest ${JSON.stringify(d.digest)} is not a sha256 digest`);
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(`${where}: descriptor size ${JSON.stringify(d.size)} is invalid`);
  }
  return d as Descriptor;
}

/**
 * Parses manifest bytes, trusting the body's own mediaType over a transport header when both
 * exist (registries sometimes answer application/json). Schema 1 is refused outright.
 */
export function parseManifest(raw: Uint8Array, contentType?: string): ParsedManifest {
  if (raw.length > MAX_JSON_BYTES) throw invalid(`manifest larger than ${MAX_JSON_BYTES} bytes`);
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Buffer.from(raw).toString('utf8'));
  } catch {
    throw invalid('manifest is not valid JSON');
  }
  if (!doc || typeof doc !== 'object') throw invalid('manifest is not a JSON object');
  const mediaType =
    typeof doc.mediaType === 'string' ? doc.mediaType : (contentType?.split(';')[0]?.trim() ?? '');
  if (doc.schemaVersion === 1 || SCHEMA1_MEDIA_TYPES.includes(mediaType)) {
    throw invalid(
      'manifest uses schema 1, which is no longer supported: push the image again with a current client',
    );
  }
  if (doc.schemaVersion !== 2)
    throw invalid(`unsupported manifest schemaVersion ${doc.schemaVersion}`);
  if (INDEX_MEDIA_TYPES.includes(mediaType) || (!mediaType && Array.isArray(doc.manifests))) {
    if (!Array.isArray(doc.manifests)) throw invalid('index without manifests');
    return {
      kind: 'index',
      mediaType: mediaType || INDEX_MEDIA_TYPES[0]!,
      manifests: doc.manifests.map((m, i) => parseDescriptor(m, `manifests[${i}]`)),
    };
  }
  if (IMAGE_MANIFEST_MEDIA_TYPES.includes(mediaType) || (!mediaType && doc.config)) {
    if (!Array.isArray(doc.layers)) throw invalid('image manifest without layers');
    return {
      kind: 'image',
      mediaType: mediaType || IMAGE_MANIFEST_MEDIA_TYPES[0]!,
      config: parseDescriptor(doc.config, 'config'),
      layers: doc.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`)),
    };
  }
  throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`);
}

/** `linux/arm64/v8` -> platform; os and architecture are required, as in `docker --platform`. */
export function parsePlatform(value: string): Platform {
  const parts = value.toLowerCase().split('/');
  const [os, architecture, variant] = parts;
  if (parts.length < 2 || parts.length > 3 || !os || !architecture || parts.some((p) => !p)) {
    throw new ImageCacheError(
      'INVALID_ARGUMENT',
      `invalid platform ${JSON.stringify(value)}: expected os/arch[/variant]`,
    );
  }
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

/** Docker's normalisation: arm64 defaults to variant v8, arm to v7, amd64 has no variant. */
export function normalizePlatform(p: Platform): Platform {
  let { architecture, variant } = p;
  if (architecture === 'aarch64') architecture = 'arm64';
  if (architecture === 'x86_64' || architecture === 'x86-64') architecture = 'amd64';
  if (architecture === 'arm64' && !variant) variant = 'v8';
  if (architecture === 'arm' && !variant) variant = 'v7';
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  return { os: p.os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  const c = normalizePlatform(candidate);
  return (
    c.os === wanted.os &&
    c.architecture === wanted.architecture &&
    (c.variant ?? '') === (wanted.variant ?? '')
  );
}

/** Picks the child manifest for a platform; attestation manifests (unknown/unknown) never match. */
export function selectPlatform(index: IndexManifest, wanted: Platform): Descriptor | undefined {
  const target = normalizePlatform(wanted);
  return index.manifests.find((m) => platformMatches(m.platform, target));
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };
