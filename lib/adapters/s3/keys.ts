import { randomUUID } from 'node:crypto';
import { type Digest, digestHex, isDigest } from '../../digest.ts';
import { InvalidArgumentError } from '../../errors.ts';

/**
 * The one place that derives the bucket's key layout (as distribution's paths.go does):
 * `<prefix>blobs/sha256/<hex>` for committed blobs, `<prefix>staging/<uuid>` for uploads whose
 * digest is only known once the last byte arrived. Nothing else builds keys by hand.
 */
export interface S3Keys {
  /** The normalised prefix: empty, or ending in exactly one `/`. */
  readonly prefix: string;
  /** Every blob key starts with this; what list() pages through. */
  readonly blobsPrefix: string;
  /** Every staging key starts with this; a bucket lifecycle rule may expire it. */
  readonly stagingPrefix: string;
  blob(digest: Digest): string;
  staging(): string;
  /** The digest a blob key names, or undefined for anything else under the blobs prefix. */
  digestOf(key: string): Digest | undefined;
}

const HEX = /^[a-f0-9]{64}$/;

export function s3Keys(prefix = ''): S3Keys {
  const normalised = normalisePrefix(prefix);
  const blobsPrefix = `${normalised}blobs/sha256/`;
  const stagingPrefix = `${normalised}staging/`;
  return {
    prefix: normalised,
    blobsPrefix,
    stagingPrefix,
    blob: (digest) => `${blobsPrefix}${digestHex(digest)}`,
    staging: () => `${stagingPrefix}${randomUUID()}`,
    digestOf: (key) => {
      if (!key.startsWith(blobsPrefix)) return undefined;
      const hex = key.slice(blobsPrefix.length);
      if (!HEX.test(hex)) return undefined;
      const digest = `sha256:${hex}`;
      return isDigest(digest) ? digest : undefined;
    },
  };
}

/** `team/cache`, `/team/cache/` and `team/cache/` all mean the folder `team/cache/`. */
function normalisePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return '';
  if (trimmed.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new InvalidArgumentError(`invalid S3 key prefix: ${JSON.stringify(prefix)}`);
  }
  return `${trimmed}/`;
}
