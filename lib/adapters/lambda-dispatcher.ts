/**
 * Dispatches jobs to the worker function with an asynchronous invocation (InvocationType
 * 'Event', payload `{"jobId"}`): Lambda queues it and answers 202 at once, retries a failed run
 * twice, and the job's lease keeps those retries from running it twice at the same time.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
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

  /**
   * A client from the SDK's standard settings: region and credentials from the environment;
   * AWS_ENDPOINT_URL_LAMBDA (then AWS_ENDPOINT_URL) for a local stand-in, where the region
   * defaults to us-east-1.
   */
  static clientFromEnvironment(env: NodeJS.ProcessEnv = process.env): LambdaClient {
    const endpoint = nonEmpty(env.AWS_ENDPOINT_URL_LAMBDA) ?? nonEmpty(env.AWS_ENDPOINT_URL);
    const region =
      nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? (endpoint && 'us-east-1');
    return new LambdaClient({ ...(endpoint && { endpoint }), ...(region && { region }) });
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
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
