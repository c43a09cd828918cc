/**
 * Dispatches jobs through the SQS queue that feeds the worker function (payload `{"jobId"}`).
 * Unlike an asynchronous invoke, a message is not lost to throttling or a dead worker: it stays
 * in the queue until a worker deletes it after the job ended, reappears after the visibility
 * timeout when one did not, and goes to the dead-letter queue after too many tries.
 */
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type AwsSdkSettings, clientLocation } from '../config/aws-sdk.ts';
import type { JobDispatcher } from '../ports/job-dispatcher.ts';

export interface SqsDispatcherOptions {
  client: SQSClient;
  /** The queue's URL (IMAGE_CACHE_JOB_QUEUE_URL). */
  queueUrl: string;
}

export class SqsDispatcher implements JobDispatcher {
  readonly #options: SqsDispatcherOptions;

  constructor(options: SqsDispatcherOptions) {
    this.#options = options;
  }

  /** A client from the SDK's standard settings (AWS_ENDPOINT_URL_SQS for an emulator). */
  static clientFor(sdk: AwsSdkSettings): SQSClient {
    return new SQSClient(clientLocation(sdk, 'sqs'));
  }

  async dispatch(jobId: string): Promise<void> {
    const output = await this.#options.client.send(
      new SendMessageCommand({
        QueueUrl: this.#options.queueUrl,
        MessageBody: JSON.stringify({ jobId }),
      }),
    );
    // The SDK throws on a refusal; an answer without an id is a stand-in that stored nothing.
    if (!output.MessageId) {
      throw new Error(`sending job ${jobId} to ${this.#options.queueUrl}: no message id`);
    }
  }

  close(): void {
    this.#options.client.destroy();
  }
}
