/** A job as `GET /cache/jobs/{id}` shows it: the record without its lease and key internals. */
import type { JobRecord } from '../ports/job-store.ts';

export function jobPath(id: string): string {
  return `/cache/jobs/${id}`;
}

export function jobView(job: JobRecord) {
  return {
    id: job.id,
    url: jobPath(job.id),
    kind: job.kind,
    status: job.status,
    request: job.request,
    progress: job.progress,
    ...(job.result && { result: job.result }),
    ...(job.error && { error: job.error }),
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(job.updatedAt).toISOString(),
    expiresAt: new Date(job.expiresAt).toISOString(),
  };
}

/**
 * A job as `GET /cache/jobs` lists it: what it works on and how it stands, without its progress
 * (follow the url for that) or a load's upload id.
 */
export function jobSummary(job: JobRecord) {
  const { request } = job;
  return {
    id: job.id,
    url: jobPath(job.id),
    kind: job.kind,
    status: job.status,
    subject:
      request.kind === 'pull'
        ? `${request.reference}${request.platform ? ` (${request.platform})` : ''}`
        : request.kind === 'export'
          ? request.names.join(' ')
          : 'uploaded archive',
    ...(job.error && { error: job.error.message }),
    createdAt: new Date(job.createdAt).toISOString(),
    updatedAt: new Date(job.updatedAt).toISOString(),
  };
}
