/**
 * The queue that feeds the worker function. The fronts send each job's id there
 * (lib/adapters/sqs-dispatcher.ts) instead of invoking the worker asynchronously: an async
 * invoke that is throttled is retried for hours and then dropped, and one that fails is retried
 * once and forgotten, so a job would rest on some client coming back for it. A message stays
 * until a worker ran its job to an end (lib/jobs/queued-job.ts); a worker that crashes or times
 * out leaves it, and it is delivered again once its visibility timeout runs out. After
 * MAX_RECEIVE_COUNT deliveries it moves to a dead-letter queue, and the alarm topic hears of it.
 */
import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  type IAlarmAction,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/**
 * AWS's advice for a queue feeding Lambda: a visibility timeout of six times the function's
 * timeout, so a message is never delivered again while an invocation (and the SDK's retries of
 * a throttled one) may still be running it.
 */
export const VISIBILITY_TIMEOUTS_PER_WORKER_TIMEOUT = 6;
/**
 * Deliveries before a message goes to the dead-letter queue: a job that crashed its worker this
 * many times (each an hour and a half apart) will not finish by trying again.
 */
export const MAX_RECEIVE_COUNT = 5;
/** The longest SQS keeps a message: time to look at a dead letter and send it back. */
const DEAD_LETTER_RETENTION = Duration.days(14);

export interface JobQueueProps {
  /** The worker function; its timeout sets the visibility timeout. */
  worker: IFunction & { timeout?: Duration };
  /**
   * Invocations the queue may run at once: the worker's reserved concurrency, so the event
   * source never gets throttled (a throttled delivery counts towards MAX_RECEIVE_COUNT).
   */
  maxConcurrency: number;
  /** Where the dead-letter alarm goes. */
  alarmAction: IAlarmAction;
}

export class JobQueue extends Construct {
  readonly queue: Queue;
  readonly deadLetters: Queue;

  constructor(scope: Construct, id: string, props: JobQueueProps) {
    super(scope, id);
    const workerTimeout = props.worker.timeout;
    if (!workerTimeout) throw new Error('the job queue needs the worker function timeout');
    this.deadLetters = new Queue(this, 'DeadLetters', {
      retentionPeriod: DEAD_LETTER_RETENTION,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.queue = new Queue(this, 'Jobs', {
      visibilityTimeout: Duration.seconds(
        workerTimeout.toSeconds() * VISIBILITY_TIMEOUTS_PER_WORKER_TIMEOUT,
      ),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      deadLetterQueue: { queue: this.deadLetters, maxReceiveCount: MAX_RECEIVE_COUNT },
    });
    // One job per invocation: a batch would share one timeout among several long pulls.
    props.worker.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize: 1,
        reportBatchItemFailures: true,
        // SQS's event source runs at least 2 at once; below that, reserved concurrency caps it.
        ...(props.maxConcurrency >= 2 && { maxConcurrency: props.maxConcurrency }),
      }),
    );

    new Alarm(this, 'DeadLettersAlarm', {
      alarmDescription:
        'image-cache job queue: a job went to the dead-letter queue (see "Jobs and the job queue" in docs/aws.md)',
      metric: this.deadLetters.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(5),
        statistic: 'Maximum',
      }),
      threshold: 0,
      evaluationPeriods: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    }).addAlarmAction(props.alarmAction);
  }
}
