import { createHash } from 'node:crypto';
import { InvalidArgumentError } from './errors.ts';

/** A content digest, always `sha256:<64 lowercase hex>`: the only algorithm the cache stores. */
export type Digest = `sha256:${string}` & { readonly __digest: unique symbol };

const DIGEST = /^sha256:[a-f0-9]{64}$/;
// Other algorithms are grammatically valid in references but not storable here.
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isDigest(value: string): value is Digest {
  return DIGEST.test(value);
}

export function parseDigest(value: string): Digest {
  if (isDigest(value)) return value;
  if (ANY_DIGEST.test(value) && !value.startsWith('sha256:')) {
    throw new InvalidArgumentError(`unsupported digest algorithm: ${value}`);
  }
  throw new InvalidArgumentError(`invalid digest: ${JSON.stringify(value)}`);
}

export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

export function sha256(bytes: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
}

/** Docker shows image IDs as the first 12 hex characters of the config digest. */
export function shortId(digest: Digest): string {
  return digestHex(digest).slice(0, 12);
}
