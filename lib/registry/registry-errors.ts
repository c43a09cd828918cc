import type { Readable } from 'node:stream';
import { UpstreamError } from '../errors.ts';
import { discard } from './transport.ts';

/** One entry of the distribution error body `{"errors":[{"code","message","detail"}]}`. */
export interface RegistryErrorEntry {
  code: string;
  message: string;
}

const ERROR_BODY_LIMIT = 64 * 1024;
const ERROR_BODY_TIMEOUT_MS = 5000;

/**
 * Reads an error body for its message. Bounded, and never throws: a broken error body must not
 * hide the status that came with it.
 */
export async function readRegistryErrors(body: Readable): Promise<RegistryErrorEntry[]> {
  const chunks: Buffer[] = [];
  let size = 0;
  // An error body is a courtesy: a registry dripping it gets a few seconds, then none is shown.
  const timer = setTimeout(() => body.destroy(), ERROR_BODY_TIMEOUT_MS);
  timer.unref();
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > ERROR_BODY_LIMIT) {
        await discard(body);
        return [];
      }
      chunks.push(chunk as Buffer);
    }
  } catch {
    return [];
  } finally {
    clearTimeout(timer);
  }
  return parseRegistryErrors(Buffer.concat(chunks).toString('utf8'));
}

export function parseRegistryErrors(text: string): RegistryErrorEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return [];
  }
  const errors = (json as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return [];
  return errors.flatMap((entry) => {
    const code = (entry as { code?: unknown })?.code;
    const message = (entry as { message?: unknown })?.message;
    if (typeof code !== 'string') return [];
    return [{ code, message: typeof message === 'string' ? message : '' }];
  });
}

/**
 * Words errors as distribution's errcode does and Docker prints them:
 * `MANIFEST_UNKNOWN` + "manifest unknown" -> `manifest unknown: manifest unknown`.
 */
export function errorText(errors: RegistryErrorEntry[]): string {
  return errors
    .map((entry) => {
      const code = entry.code.toLowerCase().replaceAll('_', ' ');
      return entry.message ? `${code}: ${entry.message}` : code;
    })
    .join('; ');
}

export function hasCode(errors: RegistryErrorEntry[], ...codes: string[]): boolean {
  return errors.some((entry) => codes.includes(entry.code));
}

/** What a failed request was for, to word the message the way `docker pull` does. */
export type Subject =
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'repository'; name: string }
  | { kind: 'token'; registry: string };

function subjectText(subject: Subject): string {
  switch (subject.kind) {
    case 'manifest': {
      const sep = subject.reference.includes(':') ? '@' : ':';
      return `manifest for ${subject.name}${sep}${subject.reference}`;
    }
    case 'blob':
      return `blob ${subject.digest} of ${subject.name}`;
    case 'repository':
      return `repository ${subject.name}`;
    case 'token':
      return `token for ${subject.registry}`;
  }
}

/**
 * The domain error for a final non-2xx answer (after auth and retries). 401 and 403 after we
 * authenticated read as Docker's "pull access denied": a registry cannot tell a private
 * repository from a missing one, and Docker reports both as not found.
 */
export function statusError(status: number, subject: Subject, errors: RegistryErrorEntry[]): Error {
  const detail = errorText(errors);
  const suffix = detail ? `: ${detail}` : '';
  if (subject.kind === 'token') {
    if (status === 401 || status === 403) {
      return new UpstreamError(
        'UNAUTHORIZED',
        `authentication to ${subject.registry} failed: the token service answered ${status}${suffix || ': check the configured credentials'}`,
      );
    }
    return new UpstreamError(
      'UPSTREAM_ERROR',
      `${subjectText(subject)}: the token service answered ${status}${suffix}`,
      { retryable: status >= 500 || status === 429 },
    );
  }
  if (status === 401 || status === 403 || hasCode(errors, 'DENIED', 'UNAUTHORIZED')) {
    return new UpstreamError(
      'NOT_FOUND',
      `pull access denied for ${subject.name}, repository does not exist or may require 'docker login'${suffix}`,
    );
  }
  if (status === 404 || hasCode(errors, 'MANIFEST_UNKNOWN', 'NAME_UNKNOWN', 'BLOB_UNKNOWN')) {
    const fallback =
      subject.kind === 'manifest' ? ': manifest unknown: manifest unknown' : ': blob unknown';
    return new UpstreamError('NOT_FOUND', `${subjectText(subject)} not found${suffix || fallback}`);
  }
  return new UpstreamError(
    'UPSTREAM_ERROR',
    `${subjectText(subject)}: the registry answered ${status}${suffix}`,
    { retryable: status >= 500 || status === 429 },
  );
}
