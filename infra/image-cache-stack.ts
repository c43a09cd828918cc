/**
 * The AWS shape of image-cache: two front doors on the same router — an HTTP API whose $default
 * route sends every request to `api` (buffered, 30 s), and a CloudFront distribution in front of
 * `streamApi`'s IAM-only function URL for the docker CLI (saves up to 200 MB, pulls followed for
 * up to 15 min; infra/fronts.ts) — a `worker` that runs pulls, loads and exports handed over as
 * jobs through an SQS queue (with a dead-letter queue, infra/job-queue.ts), blobs in S3, the
 * catalog in one
 * DynamoDB table, upstream credentials in Secrets Manager, and a scheduled `prune`.
 * Each function gets exactly the S3, DynamoDB and other actions its code paths use.
 */
import { fileURLToPath } from 'node:url';
import { Annotations, CfnOutput, Duration, SecretValue, Stack, type StackProps } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import { HttpApi, HttpStage, LogGroupLogDestination } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { CfnBudget } from 'aws-cdk-lib/aws-budgets';
import {
  Alarm,
  ComparisonOperator,
  type IMetric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { AttributeType, BillingMode, Table } from 'aws-cdk-lib/aws-dynamodb';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';

import { TTL_ATTRIBUTE } from '../lib/adapters/dynamo/schema.ts';
import { EXPORT_LIFECYCLE_DAYS, s3Keys } from '../lib/adapters/s3/keys.ts';
import { parseRegistries } from '../lib/config/registries.ts';
import { reachesDockerHub } from '../lib/registry/anonymous-registries.ts';
import { CacheDashboard } from './dashboard.ts';
import { type EdgeSettings, publicFronts } from './fronts.ts';
import { JobQueue } from './job-queue.ts';

// The bucket's layout comes from the one place that derives keys; lifecycle and grants use it.
const KEYS = s3Keys();
export const BLOBS_PREFIX = KEYS.blobsPrefix;
export const STAGING_PREFIX = KEYS.stagingPrefix;
/** Where saved tarballs are exported for presigned downloads (lib/save/export.ts). */
export const EXPORTS_PREFIX = KEYS.exportsPrefix;

/** Item reads and writes the catalog makes; no table management (CreateTable, UpdateTimeToLive). */
const CATALOG_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  // TransactWriteItems is authorised per action inside it; ConditionCheck is its own action.
  'dynamodb:ConditionCheckItem',
];

export interface ImageCacheStackProps extends StackProps {
  /** IMAGE_CACHE_REGISTRIES for the functions: `name=url,...`; the public defaults when unset. */
  registries?: string;
  /**
   * What background work (watched tags) may spend per registry, IMAGE_CACHE_BACKGROUND_BUDGET
   * (`docker.io=10/h:50%,*=30/h:25%`), and the shortest interval a watch may ask for.
   */
  backgroundBudget?: string;
  watchMinEvery?: string;
  /** Retention budget and age for the scheduled prune (IMAGE_CACHE_MAX_BYTES / _MAX_AGE). */
  maxBytes?: string;
  maxAge?: string;
  /** An address that receives the alarms (an SNS email subscription to confirm). */
  alarmEmail?: string;
  /** An existing Secrets Manager secret with the upstream credentials; created when unset. */
  registrySecretArn?: string;
  /**
   * Reserved concurrency of each function: the most invocations it runs at once, so a flood of
   * requests costs a bounded amount and cannot take the account's whole concurrency (which
   * would throttle every other function in it). DEFAULT_CONCURRENCY for what is not given.
   */
  concurrency?: Partial<FunctionConcurrency>;
  /**
   * The worker's memory in MB, which also sets its CPU share: at WORKER_MEMORY_MB it gets one
   * full vCPU for TLS in and out and hashing every byte.
   */
  workerMemoryMb?: number;
  /**
   * A monthly cost budget in USD for the account (narrowing it to this stack needs its cost
   * allocation tag activated first, which CloudFormation cannot do); actual and forecast
   * overruns go to the alarm topic.
   */
  monthlyBudgetUsd?: number;
  /** The streaming front's WAF, and names of our own for both fronts (infra/fronts.ts). */
  edge?: EdgeSettings;
}

export interface FunctionConcurrency {
  api: number;
  streamApi: number;
  worker: number;
  prune: number;
  watch: number;
}

/**
 * Enough for a 200-engineer organisation's CI bursts (the API answers in milliseconds, the
 * stream function holds one invocation per streamed save or followed pull, the worker one per
 * job); prune runs alone, so two collections never overlap, and so does the watch pass.
 */
export const DEFAULT_CONCURRENCY: FunctionConcurrency = {
  api: 50,
  streamApi: 20,
  worker: 20,
  prune: 1,
  watch: 1,
};

/** Lambda gives a function one full vCPU at 1,769 MB; below that, a share of one. */
export const WORKER_MEMORY_MB = 1769;
/** The fronts mostly wait on S3, DynamoDB and the upstream: a share of a vCPU is enough. */
const FRONT_MEMORY_MB = 1024;

/** The worker's duration alarm fires at this share of its timeout: jobs about to be cut off. */
const NEAR_TIMEOUT = 0.8;

const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));

export class ImageCacheStack extends Stack {
  constructor(scope: Construct, id: string, props: ImageCacheStackProps = {}) {
    super(scope, id, props);

    const bucket = new Bucket(this, 'Blobs', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      encryption: BucketEncryption.S3_MANAGED,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        { id: 'abort-incomplete-multipart', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        // Uploads land here until their digest is known, then are copied under blobs/.
        { id: 'expire-staging', prefix: STAGING_PREFIX, expiration: Duration.days(1) },
        // Saved tarballs are derived data: exported again on demand once expired, or once too
        // old to outlive a URL handed out for them (S3SaveExports).
        {
          id: 'expire-exports',
          prefix: EXPORTS_PREFIX,
          expiration: Duration.days(EXPORT_LIFECYCLE_DAYS),
        },
      ],
    });

    const table = new Table(this, 'Catalog', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      // The catalog is the only record of what the bucket's blobs belong to.
      deletionProtection: true,
    });

    // Upstream registry credentials (docker config.json "auths"), read by every function that
    // pulls. Created empty unless an existing secret is named; its value is set outside CDK
    // (`aws secretsmanager put-secret-value`), so it never appears in a template.
    const registrySecret = props.registrySecretArn
      ? Secret.fromSecretCompleteArn(this, 'RegistryCredentials', props.registrySecretArn)
      : new Secret(this, 'RegistryCredentials', {
          description: 'image-cache: upstream registry credentials ({"auths":{...}})',
          secretStringValue: SecretValue.unsafePlainText(JSON.stringify({ auths: {} })),
        });

    const environment: Record<string, string> = {
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: bucket.bucketName,
      IMAGE_CACHE_TABLE: table.tableName,
      NODE_OPTIONS: '--enable-source-maps',
      ...(props.registries && { IMAGE_CACHE_REGISTRIES: props.registries }),
      ...(props.maxBytes && { IMAGE_CACHE_MAX_BYTES: props.maxBytes }),
      ...(props.maxAge && { IMAGE_CACHE_MAX_AGE: props.maxAge }),
      ...(props.backgroundBudget && { IMAGE_CACHE_BACKGROUND_BUDGET: props.backgroundBudget }),
      ...(props.watchMinEvery && { IMAGE_CACHE_WATCH_MIN_EVERY: props.watchMinEvery }),
    };
    const pulling = { ...environment, IMAGE_CACHE_REGISTRY_SECRET: registrySecret.secretArn };

    const alarms = new Topic(this, 'Alarms', { displayName: 'image-cache alarms' });
    if (props.alarmEmail) alarms.addSubscription(new EmailSubscription(props.alarmEmail));

    // Pulls, loads and exports that outlive a request run here, one invocation per job
    // (lib/jobs/), fed by the job queue below; nothing invokes it directly.
    const concurrency = { ...DEFAULT_CONCURRENCY, ...props.concurrency };
    const worker = this.#function('Worker', 'functions/worker.ts', {
      timeout: Duration.minutes(15),
      concurrency: concurrency.worker,
      memoryMb: props.workerMemoryMb ?? WORKER_MEMORY_MB,
      environment: pulling,
    });
    const jobQueue = new JobQueue(this, 'JobQueue', {
      worker,
      maxConcurrency: concurrency.worker,
      alarmAction: new SnsAction(alarms),
    });
    const fronting = { ...pulling, IMAGE_CACHE_JOB_QUEUE_URL: jobQueue.queue.queueUrl };
    // Behind API Gateway (30 s): long work is handed to the worker before the gateway gives up.
    const api = this.#function('Api', 'functions/api.ts', {
      timeout: Duration.minutes(1),
      concurrency: concurrency.api,
      environment: fronting,
    });
    // Behind a streaming function URL, the docker CLI's endpoint: saves stream up to 200 MB and
    // pull progress streams for as long as the function runs.
    const streamApi = this.#function('StreamApi', 'functions/api-stream.ts', {
      timeout: Duration.minutes(15),
      concurrency: concurrency.streamApi,
      environment: fronting,
    });
    const prune = this.#function('Prune', 'functions/prune.ts', {
      timeout: Duration.minutes(15),
      concurrency: concurrency.prune,
      environment,
      // A failed run is retried by the next one, 6 hours later; GC is safe to run again anyway.
      retryAttempts: 0,
    });
    // The watch pass: HEADs upstream (credentials) and hands moved tags to the job queue.
    const watch = this.#function('Watch', 'functions/watch.ts', {
      timeout: Duration.minutes(5),
      concurrency: concurrency.watch,
      environment: fronting,
      // The next pass is a minute away; claims make a repeated pass harmless anyway.
      retryAttempts: 0,
    });
    registrySecret.grantRead(watch);
    // Object actions by prefix. ListBucket is on the whole bucket without a prefix condition:
    // without it a HEAD of a missing blob answers 403 instead of 404 (stat must see "absent").
    const objects = (...prefixes: string[]) => prefixes.map((p) => bucket.arnForObjects(`${p}*`));
    // Pulls write blobs; loads read and discard their uploads under staging.
    for (const fn of [api, streamApi, worker]) {
      fn.addToRolePolicy(
        new PolicyStatement({
          sid: 'BlobObjects',
          actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
          resources: objects(BLOBS_PREFIX, STAGING_PREFIX),
        }),
      );
      registrySecret.grantRead(fn);
    }
    // Save exports: HeadObject (GetObject), the tarball upload, and the presigned GET it signs.
    // The worker writes the exports that outlive a request.
    for (const fn of [api, streamApi, worker]) {
      fn.addToRolePolicy(
        new PolicyStatement({
          sid: 'SaveExports',
          actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
          resources: objects(EXPORTS_PREFIX),
        }),
      );
    }
    // The fronts hand jobs over through the queue: SendMessage on it, and no way to the worker.
    // Only SendMessage (grantSendMessages adds GetQueueAttributes and GetQueueUrl, unused).
    for (const fn of [api, streamApi, watch]) {
      fn.addToRolePolicy(
        new PolicyStatement({
          sid: 'SendJobs',
          actions: ['sqs:SendMessage'],
          resources: [jobQueue.queue.queueArn],
        }),
      );
    }
    // The collector only reads (HeadObject) and deletes blobs: it never writes one.
    prune.addToRolePolicy(
      new PolicyStatement({
        sid: 'BlobObjects',
        actions: ['s3:GetObject', 's3:DeleteObject'],
        resources: objects(BLOBS_PREFIX),
      }),
    );
    for (const fn of [api, streamApi, worker, prune, watch]) {
      fn.addToRolePolicy(
        new PolicyStatement({
          sid: 'ListBlobs',
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
        }),
      );
      // All write: the fronts and the worker pull, tag, remove and keep jobs; prune moves blob
      // states and stores its report.
      fn.addToRolePolicy(
        new PolicyStatement({
          sid: 'Catalog',
          actions: CATALOG_ACTIONS,
          resources: [table.tableArn],
        }),
      );
    }

    const httpApi = new HttpApi(this, 'HttpApi', {
      description: 'image-cache: Docker Engine API compatible image cache',
      defaultIntegration: new HttpLambdaIntegration('ApiIntegration', api),
      // Our own $default stage below, to set throttling: the API is served at the root path.
      createDefaultStage: false,
    });
    // One JSON line per request. Who asked is the caller's address: the bearer token is checked
    // by the function, after API Gateway has logged, and never reaches these logs.
    const accessLogs = new LogGroup(this, 'HttpApiAccessLogs', {
      retention: RetentionDays.ONE_MONTH,
    });
    const stage = new HttpStage(this, 'DefaultStage', {
      httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: 100, burstLimit: 200 },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            time: '$context.requestTimeEpoch',
            ip: '$context.identity.sourceIp',
            userAgent: '$context.identity.userAgent',
            method: '$context.httpMethod',
            path: '$context.path',
            status: '$context.status',
            bytes: '$context.responseLength',
            latencyMs: '$context.responseLatency',
            integrationStatus: '$context.integrationStatus',
            integrationError: '$context.integrationErrorMessage',
          }),
        ),
      },
    });

    // The stream function behind CloudFront, and the names clients use for both fronts.
    const fronts = publicFronts(
      this,
      {
        streamFunction: streamApi,
        httpApi,
        stage,
        httpApiHost: `${httpApi.apiId}.execute-api.${this.region}.${this.urlSuffix}`,
      },
      props.edge,
    );

    new Rule(this, 'PruneSchedule', {
      description: 'image-cache: retention and garbage collection',
      schedule: Schedule.rate(Duration.hours(6)),
      targets: [new LambdaFunction(prune, { retryAttempts: 1 })],
    });
    new Rule(this, 'WatchSchedule', {
      description: 'image-cache: revalidate watched tags, pull the ones that moved',
      schedule: Schedule.rate(Duration.minutes(1)),
      targets: [new LambdaFunction(watch, { retryAttempts: 0 })],
    });

    for (const [name, fn] of [
      ['Api', api],
      ['StreamApi', streamApi],
      ['Worker', worker],
      ['Prune', prune],
      ['Watch', watch],
    ] as const) {
      for (const [kind, metric] of [
        ['Errors', fn.metricErrors({ period: Duration.minutes(5) })],
        ['Throttles', fn.metricThrottles({ period: Duration.minutes(5) })],
      ] as const) {
        new Alarm(this, `${name}${kind}`, {
          alarmDescription: `image-cache ${name.toLowerCase()} function: ${kind.toLowerCase()}`,
          metric,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        }).addAlarmAction(new SnsAction(alarms));
      }
    }

    const operational: [string, string, IMetric, number][] = [
      [
        'Api5xx',
        'image-cache HTTP API: 5xx answers',
        httpApi.metricServerError({ period: Duration.minutes(5) }),
        1,
      ],
      [
        'WorkerNearTimeout',
        `image-cache worker: an invocation ran past ${NEAR_TIMEOUT * 100}% of its timeout`,
        worker.metricDuration({ period: Duration.minutes(5), statistic: 'Maximum' }),
        NEAR_TIMEOUT * worker.timeout!.toMilliseconds(),
      ],
      ...(['ReadThrottleEvents', 'WriteThrottleEvents'] as const).map(
        (name): [string, string, IMetric, number] => [
          `Catalog${name}`,
          `image-cache catalog table: ${name}`,
          table.metric(name, { period: Duration.minutes(5), statistic: 'Sum' }),
          1,
        ],
      ),
    ];
    for (const [id, description, metric, threshold] of operational) {
      new Alarm(this, id, {
        alarmDescription: description,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }).addAlarmAction(new SnsAction(alarms));
    }
    if (props.monthlyBudgetUsd !== undefined) this.#budget(props.monthlyBudgetUsd, alarms);

    const { dashboard } = new CacheDashboard(this, 'Figures', {
      functions: { Api: api, StreamApi: streamApi, Worker: worker, Prune: prune, Watch: watch },
      httpApi,
      jobs: jobQueue,
    });

    new CfnOutput(this, 'Endpoint', {
      description: 'The cache API (curl, the image-cache CLI)',
      value: `https://${fronts.apiHost}`,
    });
    new CfnOutput(this, 'DockerHost', {
      description:
        'DOCKER_HOST through API Gateway (buffered: 30 s, 6 MB answers); DOCKER_TLS_VERIFY=1 with the CA roots as ca.pem',
      value: `tcp://${fronts.apiHost}:443`,
    });
    new CfnOutput(this, 'StreamEndpoint', {
      description: 'The streaming front (CloudFront) for the docker CLI and big saves',
      value: `https://${fronts.streamHost}/`,
    });
    new CfnOutput(this, 'StreamDockerHost', {
      description:
        'DOCKER_HOST for the docker CLI, streamed saves and pulls; DOCKER_TLS_VERIFY=1 with the CA roots as ca.pem (see docs/aws.md)',
      value: `tcp://${fronts.streamHost}:443`,
    });
    new CfnOutput(this, 'RegistrySecretArn', {
      description: 'Upstream registry credentials: put {"auths":{...}} here',
      value: registrySecret.secretArn,
    });
    if (!props.registrySecretArn && reachesDockerHub(parseRegistries(props.registries))) {
      this.#anonymousDockerHub(registrySecret.secretArn);
    }
    new CfnOutput(this, 'BucketName', { value: bucket.bucketName });
    new CfnOutput(this, 'TableName', { value: table.tableName });
    new CfnOutput(this, 'AlarmTopicArn', { value: alarms.topicArn });
    new CfnOutput(this, 'Dashboard', {
      description: 'The CloudWatch dashboard: requests, hit ratio, bytes, upstream, jobs, GC',
      value: `https://console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards:name=${dashboard.dashboardName}`,
    });
  }

  /**
   * The secret this stack creates is empty, so Docker Hub is pulled anonymously, from Lambda's
   * shared egress addresses, until someone fills it: said at deploy time, not by the first 429.
   */
  #anonymousDockerHub(secretArn: string): void {
    const fill = (secret: string) =>
      `docker.io is pulled anonymously (Docker Hub limits anonymous pulls per IP address, and Lambda's addresses are shared) until the registry secret holds {"auths":{"https://index.docker.io/v1/":{"auth":"<base64 of user:access-token>"}}}: aws secretsmanager put-secret-value --secret-id ${secret} --secret-string file://auths.json (no redeploy; see "Docker Hub credentials" in docs/aws.md)`;
    new CfnOutput(this, 'UpstreamCredentials', { value: fill(secretArn) });
    // An annotation cannot resolve the ARN: it points at the output that holds it.
    Annotations.of(this).addWarning(fill('<RegistrySecretArn output>'));
  }

  /** Actual spend past the budget, and a forecast past it, go to the alarm topic. */
  #budget(amountUsd: number, alarms: Topic): void {
    alarms.addToResourcePolicy(
      new PolicyStatement({
        sid: 'BudgetsPublish',
        actions: ['sns:Publish'],
        principals: [new ServicePrincipal('budgets.amazonaws.com')],
        resources: [alarms.topicArn],
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );
    new CfnBudget(this, 'MonthlyBudget', {
      budget: {
        budgetType: 'COST',
        timeUnit: 'MONTHLY',
        budgetLimit: { amount: amountUsd, unit: 'USD' },
      },
      notificationsWithSubscribers: (['ACTUAL', 'FORECASTED'] as const).map((notificationType) => ({
        notification: {
          notificationType,
          comparisonOperator: 'GREATER_THAN',
          threshold: 100,
          thresholdType: 'PERCENTAGE',
        },
        subscribers: [{ subscriptionType: 'SNS', address: alarms.topicArn }],
      })),
    });
  }

  #function(
    id: string,
    entry: string,
    options: {
      timeout: Duration;
      environment: Record<string, string>;
      concurrency: number;
      memoryMb?: number;
      retryAttempts?: number;
    },
  ): NodejsFunction {
    const logGroup = new LogGroup(this, `${id}Logs`, { retention: RetentionDays.ONE_MONTH });
    return new NodejsFunction(this, id, {
      entry: root(entry),
      handler: 'handler',
      projectRoot: root(''),
      depsLockFilePath: root('package-lock.json'),
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: options.memoryMb ?? FRONT_MEMORY_MB,
      timeout: options.timeout,
      reservedConcurrentExecutions: options.concurrency,
      environment: options.environment,
      ...(options.retryAttempts !== undefined && { retryAttempts: options.retryAttempts }),
      logGroup,
      bundling: {
        // The esbuild in node_modules; never a Docker image, so synth works offline.
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // The AWS SDK is bundled at the version the adapters are tested with, not the runtime's.
        externalModules: [],
        // CommonJS dependencies bundled into an ES module still call require() for built-ins.
        banner:
          "import { createRequire as __imageCacheRequire } from 'node:module'; const require = __imageCacheRequire(import.meta.url);",
      },
    });
  }
}
