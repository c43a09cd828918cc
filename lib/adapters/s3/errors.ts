import { S3ServiceException } from '@aws-sdk/client-s3';
import { ImageCacheError, InvalidArgumentError, NotFoundError } from '../../errors.ts';

/** The S3 error code (`NoSuchKey`, `InvalidRange`, ...), or the SDK's name for a bodiless one. */
export function s3ErrorCode(error: unknown): string | undefined {
  if (error instanceof S3ServiceException) return error.name;
  const code: unknown = error instanceof Error ? Reflect.get(error, 'Code') : undefined;
  return typeof code === 'string' ? code : undefined;
}

function httpStatus(error: unknown): number | undefined {
  if (error instanceof S3ServiceException) return error.$metadata.httpStatusCode;
  return undefined;
}

/**
 * A missing key. HEAD answers carry no body, so the SDK can only name them `NotFound`; a missing
 * bucket also answers 404 but is a misconfiguration, not an absent blob, so it is excluded.
 */
export function isMissingKey(error: unknown): boolean {
  const code = s3ErrorCode(error);
  if (code === 'NoSuchKey' || code === 'NotFound') return true;
  return httpStatus(error) === 404 && code !== 'NoSuchBucket' && code !== 'NoSuchUpload';
}

/**
 * Translates what the SDK threw into the project's errors at the adapter boundary: a missing
 * key is NotFoundError, an unsatisfiable range InvalidArgumentError, domain errors pass
 * through, and anything else (throttling, access denied, network) becomes INTERNAL with the
 * S3 code in the message, so operators can search for it while clients see a plain 500.
 */
export function toDomainError(error: unknown, operation: string, key: string): Error {
  if (error instanceof ImageCacheError) return error;
  const code = s3ErrorCode(error);
  if (isMissingKey(error)) return new NotFoundError(`${describeKey(key)} not found`);
  if (code === 'InvalidRange') {
    return new InvalidArgumentError(`byte range not satisfiable for ${describeKey(key)}`);
  }
  const status = httpStatus(error);
  const detail = error instanceof Error ? error.message : String(error);
  const what = code ? `${code}${status ? ` (HTTP ${status})` : ''}` : 'request failed';
  return new ImageCacheError('INTERNAL', `S3 ${operation} ${key}: ${what}: ${detail}`, {
    cause: error,
  });
}

function describeKey(key: string): string {
  const hex = /blobs\/sha256\/([a-f0-9]{64})$/.exec(key)?.[1];
  return hex ? `blob sha256:${hex}` : `object ${key}`;
}

/** Awaits one S3 request, translating whatever it throws (see toDomainError). */
export async function s3Call<T>(request: Promise<T>, operation: string, key: string): Promise<T> {
  try {
    return await request;
  } catch (error) {
    throw toDomainError(error, operation, key);
  }
}
