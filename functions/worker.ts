/**
 * The worker function: runs background jobs (pulls, loads and exports past the front door's
 * time limit) to their end. Fed by the job queue (SQS, batches with ReportBatchItemFailures:
 * a job not done keeps its message for another delivery), or invoked asynchronously with
 * `{"jobId": "..."}`; the job record in the catalog says what to do. Uses the same composition
 * as the api function.
 */
import type { SQSBatchResponse } from 'aws-lambda';
import type { RemainingTime } from '../lib/lambda/http-api-adapter.ts';
import { handleJobQueueEvent, isJobQueueEvent, jobIdOf } from '../lib/lambda/job-queue-event.ts';
import { flushStats, lambdaRuntime } from '../lib/lambda/runtime.ts';

export async function handler(
  event: unknown,
  context?: RemainingTime,
): Promise<{ jobId: string; status: string } | SQSBatchResponse> {
  try {
    return await runJobs(event, context);
  } finally {
    // The runtime runJobs built (a build that failed fails here again, with the same error).
    await (await lambdaRuntime()).invocation.publish();
  }
}

async function runJobs(
  event: unknown,
  context?: RemainingTime,
): Promise<{ jobId: string; status: string } | SQSBatchResponse> {
  // Without Lambda's context (a local invoke) there is no time known to wait for a lease in.
  const remainingMs = () => context?.getRemainingTimeInMillis() ?? 0;
  if (isJobQueueEvent(event)) {
    const { operations } = (await lambdaRuntime()).composition;
    const answer = await handleJobQueueEvent(event, async (jobId) => {
      const outcome = await operations.runQueuedJob(jobId, remainingMs);
      return outcome.acknowledge;
    });
    await flushStats();
    return answer;
  }
  const jobId = jobIdOf(event);
  if (!jobId) throw new Error('the worker expects {"jobId": "<id>"} or job queue messages');
  const { composition } = await lambdaRuntime();
  const job = await composition.operations.runJob(jobId, remainingMs);
  await flushStats();
  // Not claimable: another invocation holds it or it ended; Lambda must not retry that.
  return { jobId, status: job?.status ?? 'not claimed' };
}
