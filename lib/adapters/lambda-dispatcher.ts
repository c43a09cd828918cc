/**
 * Dispatches jobs to the worker function with an asynchronous invocation (InvocationType
 * 'Event', payload `{"jobId"}`): Lambda queues it and answers 202 at once, retries a failed run
 * twice, and the job's lease keeps those retries from running it twice at the same time.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { type AwsSdkSettings, clientLocation } from '../config/aws-sdk.ts';
import type { JobDispatcher } from '../ports/job-dispatcher.ts';

export interface LambdaDispatcherOptions {
  client: LambdaClient;
  /** Name or ARN of the worker function (IMAGE_CACHE_WORKER_FUNCTION). */
  functionName: string;
}

export class LambdaDispatcher implements JobDispatcher {
  readonly #options: LambdaDispatcherOptions;

  constructor(options: LambdaDispatcherOptions) {
    this.#options = options;
  }

  /** A client from the SDK's standard settings (AWS_ENDPOINT_URL_LAMBDA for a stand-in). */
  static clientFor(sdk: AwsSdkSettings): LambdaClient {
    return new LambdaClient(clientLocation(sdk, 'lambda'));
  }

  async dispatch(jobId: string): Promise<void> {
    const output = await this.#options.client.send(
      new InvokeCommand({
        FunctionName: this.#options.functionName,
        InvocationType: 'Event',
        Payload: new TextEncoder().encode(JSON.stringify({ jobId })),
      }),
    );
    if (output.StatusCode !== 202) {
      throw new Error(
        `invoking ${this.#options.functionName} for job ${jobId}: status ${output.StatusCode}`,
      );
    }
  }

  close(): void {
    this.#options.client.destroy();
  }
}
