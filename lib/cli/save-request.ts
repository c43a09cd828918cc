/**
 * Asking for a save's tarball as a redirect to storage: the answer is the server's streamed
 * tar, the stored export behind the 307 (which fetch follows), or a 202 when the export
 * outlived the server's deadline and goes on as a job. That job is waited on with a progress
 * bar, and the URL its result carries (signed when the job was read) is the download.
 */
import type { JobMessage } from '../ports/job-store.ts';
import type { CliContext } from './context.ts';
import { type ApiClient, ApiError, ConnectionError } from './http.ts';
import { type JobJson, waitForJob } from './job-wait.ts';
import { ProgressBar } from './progress-bar.ts';

export async function requestSave(
  ctx: CliContext,
  names: string[],
  options: { pull?: boolean } = {},
): Promise<Response> {
  const client = ctx.client();
  const query = { names, redirect: '1', ...(options.pull && { pull: 'missing' }) };
  // With pull=missing a server with a deadline hands over one pull job at a time: wait for
  // each, then ask again (the pulled images are cached now), at most once per name.
  for (let asked = 0; ; asked++) {
    const response = await client.request('/images/get', { query });
    if (response.status !== 202) return response;
    const pending = (await response.json()) as JobJson & { kind?: string };
    if (pending.kind !== 'pull') return download(await waitForExport(ctx, client, pending));
    if (asked > names.length) throw new ApiError(503, 'the server keeps handing over pulls');
    await waitForPull(client, pending);
  }
}

async function waitForPull(client: ApiClient, pending: JobJson): Promise<void> {
  const job = await waitForJob(client, pending.url, () => {});
  if (job.status === 'failed') {
    throw new ApiError(job.error?.status ?? 500, job.error?.message ?? 'the pull failed');
  }
}

/** The export job's download URL once it succeeded, with the upload's progress on the way. */
async function waitForExport(
  ctx: CliContext,
  client: ApiClient,
  pending: JobJson,
): Promise<string> {
  let bar: ProgressBar | undefined;
  const onMessage = (message: JobMessage) => {
    const { current, total } = message.progressDetail ?? {};
    if (current === undefined) return;
    bar ??= new ProgressBar(ctx.stderr, { label: 'Exporting', total, now: ctx.now });
    bar.update(current);
  };
  let job: JobJson;
  try {
    job = await waitForJob(client, pending.url, onMessage);
  } catch (error) {
    bar?.clear();
    throw error;
  }
  if (job.status === 'failed') {
    bar?.clear();
    throw new ApiError(job.error?.status ?? 500, job.error?.message ?? 'the export failed');
  }
  bar?.done();
  // Only an export the bucket's lifecycle expired since the job ended has none.
  const url = job.result?.url;
  if (!url) throw new ApiError(410, `the export of job ${job.id} is gone: save again`);
  return url;
}

/** A presigned URL: storage's own address and signature, so no token goes with it. */
async function download(url: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ConnectionError(
      `Cannot download the export from storage (${(error as Error).message}).`,
    );
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    throw new ApiError(
      response.status,
      `storage refused the export download: ${response.status} ${text.slice(0, 300)}`.trim(),
    );
  }
  return response;
}
