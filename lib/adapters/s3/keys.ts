import { randomUUID } from 'node:crypto';
import { type Digest, digestHex, isDigest } from '../../digest.ts';
import { InvalidArgumentError } from '../../errors.ts';

/**
 * The one place that derives the bucket's key layout (as distribution's paths.go does):
 * `<prefix>blobs/sha256/<hex>` for committed blobs, `<prefix>staging/<uuid>` for uploads whose
 * digest is only known once the last byte arrived, `<prefix>staging/multipart/<hex>.json` for
 * the state of a blob's unfinished multipart upload. Nothing else builds keys by hand.
 */
export interface S3Keys {
  /** The normalised prefix: empty, or ending in exactly one `/`. */
  readonly prefix: string;
  /** Every blob key starts with this; what list() pages through. */
  readonly blobsPrefix: string;
  /** Every staging key starts with this; a bucket lifecycle rule may expire it. */
  readonly stagingPrefix: string;
  /** Every save export key starts with this; a bucket lifecycle rule expires it. */
  readonly exportsPrefix: string;
  blob(digest: Digest): string;
  /** `<prefix>exports/<key>.tar`, for a content key (hex) of a save tarball. */
  export(key: string): string;
  staging(): string;
  /**
   * `<prefix>staging/multipart/<hex>.json`: a blob's unfinished multipart upload (upload id and
   * completed parts), so a later write resumes it. Under staging so the same lifecycle rule
   * expires what nobody resumes and the same grant covers it; not a staged write (no UUID).
   */
  multipartState(digest: Digest): string;
  /** Whether a key is a writer's staging object (not a client upload under staging/uploads/). */
  isStagedWrite(key: string): boolean;
  /**
   * Client uploads for `POST /cache/loads`: `<prefix>staging/uploads/<id>.tar`, under staging
   * so the same lifecycle rule expires abandoned ones and the same grant covers them.
   */
  upload(id: string): string;
  /** The digest a blob key names, or undefined for anything else under the blobs prefix. */
  digestOf(key: string): Digest | undefined;
}

/**
 * Days the bucket's lifecycle rule keeps an export (infra sets the rule from this): an export
 * is handed out only while its URL expires before the object does (S3SaveExports).
 */
export const EXPORT_LIFECYCLE_DAYS = 7;

const HEX = /^[a-f0-9]{64}$/;
/** A v4 UUID: upload ids, and the names of writers' staging objects. */
const UPLOAD_ID = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

export function s3Keys(prefix = ''): S3Keys {
  const normalised = normalisePrefix(prefix);
  const blobsPrefix = `${normalised}blobs/sha256/`;
  const stagingPrefix = `${normalised}staging/`;
  const exportsPrefix = `${normalised}exports/`;
  return {
    prefix: normalised,
    blobsPrefix,
    stagingPrefix,
    exportsPrefix,
    blob: (digest) => `${blobsPrefix}${digestHex(digest)}`,
    export: (key) => {
      if (!HEX.test(key)) throw new InvalidArgumentError(`invalid export key: ${key}`);
      return `${exportsPrefix}${key}.tar`;
    },
    staging: () => `${stagingPrefix}${randomUUID()}`,
    multipartState: (digest) => `${stagingPrefix}multipart/${digestHex(digest)}.json`,
    isStagedWrite: (key) =>
      key.startsWith(stagingPrefix) && UPLOAD_ID.test(key.slice(stagingPrefix.length)),
    upload: (id) => {
      if (!UPLOAD_ID.test(id)) throw new InvalidArgumentError(`invalid upload id: ${id}`);
      return `${stagingPrefix}uploads/${id}.tar`;
    },
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
