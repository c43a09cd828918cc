/**
 * The worker function: runs one background job (a pull or a load past the front door's time
 * limit) to its end. Invoked asynchronously by the api function with `{"jobId": "..."}`; the job
 * record in the catalog says what to do. Uses the same composition as the api function.
 */
import type { RemainingTime } from '../lib/lambda/http-api-adapter.ts';
import { lambdaRuntime } from '../lib/lambda/runtime.ts';

export interface WorkerEvent {
  jobId?: unknown;
}

export async function handler(
  event: WorkerEvent,
  context?: RemainingTime,
): Promise<{ jobId: string; status: string }> {
  const jobId = event?.jobId;
  if (typeof jobId !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(jobId)) {
    throw new Error('the worker expects {"jobId": "<id>"}');
  }
  const { composition } = await lambdaRuntime();
  // Without Lambda's context (a local invoke) there is no time known to wait for a lease in.
  const remainingMs = () => context?.getRemainingTimeInMillis() ?? 0;
  const job = await composition.operations.runJob(jobId, remainingMs);
  // Not claimable: another invocation holds it or it ended; Lambda must not retry that.
  return { jobId, status: job?.status ?? 'not claimed' };
}
