/**
 * A stand-in for Lambda's SQS event source mapping (batch size 1, ReportBatchItemFailures, one
 * invocation at a time): receive a message from the job queue on fauxqs, invoke the real worker
 * handler with it in a process of its own (worker-child.ts), delete the message when the handler
 * answered without reporting it failed, and leave it otherwise (a failure reported, an error
 * thrown, a process that was killed or ran past the function's timeout), so the queue delivers
 * it again after its visibility timeout, as Lambda leaves it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import {
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';

/** Precedes the handler's answer on the worker process's stdout. */
export const RESULT_MARKER = 'worker-result:';

const WORKER_CHILD = join(import.meta.dirname, 'worker-child.ts');

export interface Delivery {
  messageId: string;
  body: string;
  /** SQS's ApproximateReceiveCount: 1 for the first delivery. */
  receiveCount: number;
  /** When it was received (epoch ms). */
  receivedAt: number;
  /** The worker process handling it: a test may kill it. */
  child: ChildProcess;
  /** Once the process ended: whether the message was deleted or left to be delivered again. */
  outcome?: 'deleted' | 'left';
  /** The handler's answer, when it gave one. */
  result?: SQSBatchResponse;
  /** What the process wrote (its logs), for failure messages. */
  output: string;
}

export interface SqsEventSourceOptions {
  client: SQSClient;
  queueUrl: string;
  /** The function's environment (the parent's PATH is added). */
  env: Record<string, string>;
  /** The function's timeout: the handler's remaining time, and when its process is killed. */
  timeoutMs: number;
}

export interface SqsEventSource {
  readonly deliveries: Delivery[];
  /** Stops polling; kills a worker still running. */
  stop(): Promise<void>;
}

export function startSqsEventSource(options: SqsEventSourceOptions): SqsEventSource {
  const deliveries: Delivery[] = [];
  const stopping = new AbortController();
  let current: ChildProcess | undefined;

  const invoke = async (message: Message): Promise<void> => {
    const event: SQSEvent = { Records: [record(message, options.queueUrl)] };
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', WORKER_CHILD, String(options.timeoutMs)],
      { env: { PATH: process.env.PATH, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    current = child;
    const delivery: Delivery = {
      messageId: message.MessageId!,
      body: message.Body ?? '',
      receiveCount: Number(message.Attributes?.ApproximateReceiveCount),
      receivedAt: Date.now(),
      child,
      output: '',
    };
    deliveries.push(delivery);
    const collect = (chunk: Buffer) => {
      delivery.output = (delivery.output + chunk.toString()).slice(-64 * 1024);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.stdin!.end(JSON.stringify(event));
    const timeout = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timeout);
    current = undefined;
    const answer = delivery.output.split('\n').find((line) => line.startsWith(RESULT_MARKER));
    if (answer) delivery.result = JSON.parse(answer.slice(RESULT_MARKER.length));
    const failed = delivery.result?.batchItemFailures.some(
      (failure) => failure.itemIdentifier === delivery.messageId,
    );
    if (code === 0 && delivery.result && !failed) {
      await options.client.send(
        new DeleteMessageCommand({
          QueueUrl: options.queueUrl,
          ReceiptHandle: message.ReceiptHandle,
        }),
      );
      delivery.outcome = 'deleted';
    } else {
      delivery.outcome = 'left';
    }
  };

  const polling = (async () => {
    while (!stopping.signal.aborted) {
      const received = await options.client
        .send(
          new ReceiveMessageCommand({
            QueueUrl: options.queueUrl,
            MaxNumberOfMessages: 1,
            WaitTimeSeconds: 1,
            MessageSystemAttributeNames: ['All'],
          }),
          { abortSignal: stopping.signal },
        )
        .catch((error: unknown) => {
          if (stopping.signal.aborted) return undefined;
          throw error;
        });
      for (const message of received?.Messages ?? []) await invoke(message);
    }
  })();

  return {
    deliveries,
    async stop() {
      stopping.abort();
      current?.kill('SIGKILL');
      await polling;
    },
  };
}

/** One message as Lambda hands it to the function. */
function record(message: Message, queueUrl: string): SQSEvent['Records'][number] {
  const attributes = message.Attributes ?? {};
  const [account, name] = new URL(queueUrl).pathname.split('/').slice(1);
  return {
    messageId: message.MessageId!,
    receiptHandle: message.ReceiptHandle!,
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
      SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
      SenderId: attributes.SenderId ?? 'local',
      ApproximateFirstReceiveTimestamp:
        attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: message.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: `arn:aws:sqs:us-east-1:${account}:${name}`,
    awsRegion: 'us-east-1',
  };
}
