import type { HttpResponse } from '../engine/http.ts';
import { type ErrorCode, errorBody, ImageCacheError } from '../errors.ts';

/**
 * The registry door's errors, as the OCI distribution spec words them:
 * `{"errors":[{"code":"MANIFEST_UNKNOWN","message":...,"detail":...}]}` with the spec's statuses.
 * The cache's own error codes map onto them here, in one table; the message stays the cache's,
 * so a client shows why (`registry ghcr.io is not allowed ...`).
 */
export type OciCode =
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'MANIFEST_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'UNSUPPORTED'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'TOOMANYREQUESTS'
  | 'UNKNOWN';

/** What was asked for decides how "not found" is said. */
export type OciSubject = 'manifest' | 'blob' | 'repository';

const NOT_FOUND: Record<OciSubject, OciCode> = {
  manifest: 'MANIFEST_UNKNOWN',
  blob: 'BLOB_UNKNOWN',
  repository: 'NAME_UNKNOWN',
};

const BY_CODE: Partial<Record<ErrorCode, OciCode>> = {
  INVALID_REFERENCE: 'NAME_INVALID',
  INVALID_ARGUMENT: 'NAME_INVALID',
  REGISTRY_NOT_ALLOWED: 'DENIED',
  FORBIDDEN: 'DENIED',
  UNAUTHORIZED: 'UNAUTHORIZED',
  DIGEST_MISMATCH: 'DIGEST_INVALID',
  INVALID_IMAGE: 'MANIFEST_INVALID',
  UNSUPPORTED_MEDIA_TYPE: 'MANIFEST_INVALID',
  UPSTREAM_RATE_LIMITED: 'TOOMANYREQUESTS',
};

/** An error the registry door raises itself: a code of the spec, with its status. */
export class OciError extends Error {
  readonly code: OciCode;
  readonly status: number;
  /** Sent as Retry-After (a 429 the client should retry). */
  retryAfterSeconds?: number;
  constructor(code: OciCode, status: number, message: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export function ociErrorResponse(error: unknown, subject: OciSubject): HttpResponse {
  const { status, code, message } = ociError(error, subject);
  const body = JSON.stringify({ errors: [{ code, message, detail: null }] });
  const retry = error instanceof OciError ? error.retryAfterSeconds : undefined;
  return {
    status,
    headers: {
      'Content-Type': 'application/json',
      ...(retry !== undefined && { 'Retry-After': String(retry) }),
    },
    body: `${body}\n`,
  };
}

function ociError(
  error: unknown,
  subject: OciSubject,
): { status: number; code: OciCode; message: string } {
  if (error instanceof OciError) return error;
  // errorBody logs what is the server's fault and keeps internals from clients.
  const { status, body } = errorBody(error);
  if (!(error instanceof ImageCacheError))
    return { status, code: 'UNKNOWN', message: body.message };
  if (error.code === 'NOT_FOUND')
    return { status: 404, code: NOT_FOUND[subject], message: body.message };
  // Rate limited upstream: the spec's 429, so containerd retries and dockerd falls back.
  const code = BY_CODE[error.code] ?? 'UNKNOWN';
  return { status: code === 'TOOMANYREQUESTS' ? 429 : status, code, message: body.message };
}
