/**
 * The AWS shape of image-cache: an HTTP API whose $default route sends every request to the
 * `api` function, blobs in S3, the catalog in one DynamoDB table, and a scheduled `prune`.
 * Each function gets exactly the S3 and DynamoDB actions its code paths use.
 */
import { fileURLToPath } from 'node:url';
import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import { HttpApi, HttpStage } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Alarm, ComparisonOperator, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { AttributeType, BillingMode, Table } from 'aws-cdk-lib/aws-dynamodb';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';

import { TTL_ATTRIBUTE } from '../lib/adapters/dynamo/schema.ts';
import { s3Keys } from '../lib/adapters/s3/keys.ts';

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
  /** Retention budget and age for the scheduled prune (IMAGE_CACHE_MAX_BYTES / _MAX_AGE). */
  maxBytes?: string;
  maxAge?: string;
  /** An address that receives the alarms (an SNS email subscription to confirm). */
  alarmEmail?: string;
}

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
        // Saved tarballs are derived data: exported again on demand once expired.
        { id: 'expire-exports', prefix: EXPORTS_PREFIX, expiration: Duration.days(7) },
      ],
    });

    const table = new Table(this, 'Catalog', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
    });

    const environment: Record<string, string> = {
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: bucket.bucketName,
      IMAGE_CACHE_TABLE: table.tableName,
      NODE_OPTIONS: '--enable-source-maps',
      ...(props.registries && { IMAGE_CACHE_REGISTRIES: props.registries }),
      ...(props.maxBytes && { IMAGE_CACHE_MAX_BYTES: props.maxBytes }),
      ...(props.maxAge && { IMAGE_CACHE_MAX_AGE: props.maxAge }),
    };

    const api = this.#function('Api', 'functions/api.ts', {
      // API Gateway answers after 30 s; a longer pull still finishes and lands in the cache,
      // so the client's next pull is a hit (until the pull worker takes long pulls over).
      timeout: Duration.minutes(5),
      environment,
    });
    const prune = this.#function('Prune', 'functions/prune.ts', {
      timeout: Duration.minutes(15),
      environment,
      // A failed run is retried by the next one, 6 hours later; GC is safe to run again anyway.
      retryAttempts: 0,
    });

    // Object actions by prefix. ListBucket is on the whole bucket without a prefix condition:
    // without it a HEAD of a missing blob answers 403 instead of 404 (stat must see "absent").
    const objects = (...prefixes: string[]) => prefixes.map((p) => bucket.arnForObjects(`${p}*`));
    api.addToRolePolicy(
      new PolicyStatement({
        sid: 'BlobObjects',
        actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
        resources: objects(BLOBS_PREFIX, STAGING_PREFIX),
      }),
    );
    // Save exports: HeadObject (GetObject), the tarball upload, and the presigned GET it signs.
    api.addToRolePolicy(
      new PolicyStatement({
        sid: 'SaveExports',
        actions: ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
        resources: objects(EXPORTS_PREFIX),
      }),
    );
    // The collector only reads (HeadObject) and deletes blobs: it never writes one.
    prune.addToRolePolicy(
      new PolicyStatement({
        sid: 'BlobObjects',
        actions: ['s3:GetObject', 's3:DeleteObject'],
        resources: objects(BLOBS_PREFIX),
      }),
    );
    for (const fn of [api, prune]) {
      fn.addToRolePolicy(
        new PolicyStatement({
          sid: 'ListBlobs',
          actions: ['s3:ListBucket'],
          resources: [bucket.bucketArn],
        }),
      );
      // Both write: api pulls, tags and removes; prune moves blob states and stores its report.
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
    new HttpStage(this, 'DefaultStage', {
      httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: 100, burstLimit: 200 },
    });

    new Rule(this, 'PruneSchedule', {
      description: 'image-cache: retention and garbage collection',
      schedule: Schedule.rate(Duration.hours(6)),
      targets: [new LambdaFunction(prune, { retryAttempts: 1 })],
    });

    const alarms = new Topic(this, 'Alarms', { displayName: 'image-cache alarms' });
    if (props.alarmEmail) alarms.addSubscription(new EmailSubscription(props.alarmEmail));
    for (const [name, fn] of [
      ['Api', api],
      ['Prune', prune],
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

    const host = `${httpApi.apiId}.execute-api.${this.region}.${this.urlSuffix}`;
    new CfnOutput(this, 'Endpoint', {
      description: 'The cache API (curl, the image-cache CLI)',
      value: httpApi.apiEndpoint,
    });
    new CfnOutput(this, 'DockerHost', {
      description: 'DOCKER_HOST for the docker CLI (with DOCKER_TLS_VERIFY=1)',
      value: `tcp://${host}:443`,
    });
    new CfnOutput(this, 'BucketName', { value: bucket.bucketName });
    new CfnOutput(this, 'TableName', { value: table.tableName });
    new CfnOutput(this, 'AlarmTopicArn', { value: alarms.topicArn });
  }

  #function(
    id: string,
    entry: string,
    options: { timeout: Duration; environment: Record<string, string>; retryAttempts?: number },
  ): NodejsFunction {
    const logGroup = new LogGroup(this, `${id}Logs`, { retention: RetentionDays.ONE_MONTH });
    return new NodejsFunction(this, id, {
      entry: root(entry),
      handler: 'handler',
      projectRoot: root(''),
      depsLockFilePath: root('package-lock.json'),
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: 1024,
      timeout: options.timeout,
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
