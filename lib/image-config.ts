import type { Digest } from './digest.ts';
import { isDigest } from './digest.ts';
import { ImageCacheError } from './errors.ts';
import { MAX_JSON_BYTES } from './media-types.ts';

/** The parts of an image config (OCI image spec "config") the cache reads. */
export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: Record<string, unknown> & { Labels?: Record<string, string> | null };
  rootfs: { type: string; diff_ids: Digest[] };
  history?: HistoryEntry[];
  comment?: string;
  docker_version?: string;
  'os.version'?: string;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export function parseImageConfig(raw: Uint8Array): ImageConfig {
  if (raw.length > MAX_JSON_BYTES) {
    throw new ImageCacheError(
      'INVALID_ARGUMENT',
      `image config larger than ${MAX_JSON_BYTES} bytes`,
    );
  }
  let doc: ImageConfig;
  try {
    doc = JSON.parse(Buffer.from(raw).toString('utf8'));
  } catch {
    throw new ImageCacheError('INVALID_ARGUMENT', 'image config is not valid JSON');
  }
  if (!doc || typeof doc !== 'object') {
    throw new ImageCacheError('INVALID_ARGUMENT', 'image config is not a JSON object');
  }
  const diffIds = doc.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || !diffIds.every((d) => typeof d === 'string' && isDigest(d))) {
    throw new ImageCacheError('INVALID_ARGUMENT', 'image config has no valid rootfs.diff_ids');
  }
  if (typeof doc.os !== 'string' || typeof doc.architecture !== 'string') {
    throw new ImageCacheError('INVALID_ARGUMENT', 'image config lacks os or architecture');
  }
  return doc;
}

export function configLabels(config: ImageConfig): Record<string, string> {
  return config.config?.Labels ?? {};
}
