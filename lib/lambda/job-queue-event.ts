/**
 * The worker's two event shapes: `{"jobId"}` from an asynchronous invoke (Lambda dispatcher),
 * and a batch of job-queue messages from SQS's event source mapping, each with that same
 * `{"jobId"}` as its body (lib/adapters/sqs-dispatcher.ts). The only place that knows the SQS
 * event: the worker hands each job id to the composition and reports back, with
 * ReportBatchItemFailures, the messages that must be delivered again.
 */
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';

/** Job ids are the catalog's (lib/jobs/jobs.ts: 32 hex digits); this bounds what is accepted. */
const JOB_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** The job id of a `{"jobId"}` payload, or undefined when it carries none that is valid. */
export function jobIdOf(payload: unknown): string | undefined {
  const jobId = (payload as { jobId?: unknown } | null | undefined)?.jobId;
  return typeof jobId === 'string' && JOB_ID.test(jobId) ? jobId : undefined;
}

export function isJobQueueEvent(event: unknown): event is SQSEvent {
  const records = (event as { Records?: unknown } | null | undefined)?.Records;
  return (
    Array.isArray(records) &&
    records.every((record) => (record as { eventSource?: unknown })?.eventSource === 'aws:sqs')
  );
}

/**
 * Runs each message's job in turn; `run` answers whether the message may be deleted. A message
 * whose job is not done, whose run threw, or whose body names no job is reported as failed, so
 * SQS delivers it again after the visibility timeout (and, after the queue's maxReceiveCount,
 * moves it to the dead-letter queue, where a body that is not a job ends up and is alarmed on).
 */
export async function handleJobQueueEvent(
  event: SQSEvent,
  run: (jobId: string) => Promise<boolean>,
  log: (message: string, error?: unknown) => void = console.error,
): Promise<SQSBatchResponse> {
  const failed: string[] = [];
  for (const record of event.Records) {
    const jobId = jobIdOf(parseBody(record.body));
    if (!jobId) {
      log(`job queue message ${record.messageId} names no job: ${record.body.slice(0, 200)}`);
      failed.push(record.messageId);
      continue;
    }
    try {
      if (!(await run(jobId))) failed.push(record.messageId);
    } catch (error) {
      log(`job ${jobId} (message ${record.messageId}) is left for another delivery:`, error);
      failed.push(record.messageId);
    }
  }
  return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
}

function parseBody(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}
