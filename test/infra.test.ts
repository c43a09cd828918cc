/**
 * The synthesized CloudFormation template of infra/: security settings, the shape of every
 * resource, and the IAM actions each function gets. One synth for the whole file (bundling both
 * functions with esbuild), then a smoke run of the bundled api handler itself.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_CONCURRENCY,
  ImageCacheStack,
  type ImageCacheStackProps,
  WORKER_MEMORY_MB,
} from '../infra/image-cache-stack.ts';
import { TTL_ATTRIBUTE } from '../lib/adapters/dynamo/schema.ts';
import { s3Keys } from '../lib/adapters/s3/keys.ts';

type Resource = {
  Type: string;
  Properties: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
};

let outdir: string;
let stack: ImageCacheStack;
let template: Template;
let resources: Record<string, Resource>;

beforeAll(() => {
  outdir = mkdtempSync(join(tmpdir(), 'image-cache-cdk-'));
  // The feature flags of cdk.json, as `npx cdk synth` applies them.
  const cdkJson = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')) as {
    context: Record<string, unknown>;
  };
  const app = new App({
    outdir,
    context: { ...cdkJson.context, 'aws:cdk:enable-asset-metadata': true },
  });
  stack = new ImageCacheStack(app, 'ImageCacheTest', {
    env: { account: '123456789012', region: 'eu-west-1' },
    registries: 'docker.io=https://registry-1.docker.io',
    maxAge: '30d',
    alarmEmail: 'ops@example.com',
    concurrency: { worker: 7 },
    monthlyBudgetUsd: 250,
  });
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources as Record<string, Resource>;
}, 120_000);

afterAll(() => {
  rmSync(outdir, { recursive: true, force: true });
});

function only(type: string): [string, Resource] {
  const found = Object.entries(resources).filter(([, r]) => r.Type === type);
  expect(found).toHaveLength(1);
  return found[0]!;
}

/** Every function, by the logical-id prefix the tests name it with. */
const FUNCTIONS = ['Api', 'StreamApi', 'Worker', 'Prune', 'Watch'];

/** The Lambda function whose logical id starts with `prefix` (Api, StreamApi, Worker, Prune, Watch). */
function fn(prefix: string): [string, Resource] {
  const found = Object.entries(resources).filter(
    ([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith(prefix),
  );
  expect(found).toHaveLength(1);
  return found[0]!;
}

type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

/** Every statement of the inline policies attached to a function's role. */
function statementsOf(prefix: string): Statement[] {
  const [, lambda] = fn(prefix);
  const roleId = (lambda.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
  return Object.values(resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy')
    .filter((r) => (r.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleId))
    .flatMap((r) => (r.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
}

function actionsOf(prefix: string): Set<string> {
  return new Set(statementsOf(prefix).flatMap((s) => [s.Action].flat()));
}

/** What a bundle needs to build its composition: no AWS call is made before a request needs one. */
function bundleEnvironment(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    AWS_REGION: 'eu-west-1',
    IMAGE_CACHE_BACKEND: 'aws',
    IMAGE_CACHE_BUCKET: 'image-cache-test',
    IMAGE_CACHE_TABLE: 'image-cache-test',
  };
}

/** What Lambda's SQS event source needs of the worker's role (granted by SqsEventSource). */
const CONSUME = [
  'sqs:ChangeMessageVisibility',
  'sqs:DeleteMessage',
  'sqs:GetQueueAttributes',
  'sqs:GetQueueUrl',
  'sqs:ReceiveMessage',
];

/** The job queue and its dead-letter queue: [logical id, resource] each. */
function jobQueue(): [string, Resource] {
  return queue(/^JobQueueJobs/);
}
function deadLetters(): [string, Resource] {
  return queue(/^JobQueueDeadLetters/);
}
function queue(id: RegExp): [string, Resource] {
  const found = Object.entries(resources).filter(
    ([name, r]) => r.Type === 'AWS::SQS::Queue' && id.test(name),
  );
  expect(found).toHaveLength(1);
  return found[0]!;
}

const CATALOG = [
  'dynamodb:BatchGetItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
  'dynamodb:DeleteItem',
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  'dynamodb:UpdateItem',
];

describe('bucket', () => {
  it('blocks public access, encrypts, and keeps ownership with the bucket owner', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
        ],
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it('denies every request without TLS, and TLS below 1.2', () => {
    const [, policy] = only('AWS::S3::BucketPolicy');
    const statements = (
      policy.Properties.PolicyDocument as { Statement: Record<string, unknown>[] }
    ).Statement;
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: 'Deny',
        Action: 's3:*',
        Principal: { AWS: '*' },
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: 'Deny',
        Action: 's3:*',
        Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
      }),
    );
    expect(statements.every((s) => s.Effect === 'Deny')).toBe(true);
  });

  it('aborts unfinished multipart uploads and expires staging and exports', () => {
    const [, bucket] = only('AWS::S3::Bucket');
    const rules = (bucket.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] })
      .Rules;
    expect(rules).toHaveLength(3);
    expect(rules).toContainEqual(
      expect.objectContaining({
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
        Status: 'Enabled',
      }),
    );
    expect(rules.find((r) => r.AbortIncompleteMultipartUpload)?.Prefix).toBeUndefined();
    expect(rules).toContainEqual(
      expect.objectContaining({
        Prefix: s3Keys().stagingPrefix,
        ExpirationInDays: 1,
        Status: 'Enabled',
      }),
    );
    expect(rules).toContainEqual(
      expect.objectContaining({ Prefix: 'exports/', ExpirationInDays: 7, Status: 'Enabled' }),
    );
    // Nothing may ever expire committed blobs behind the catalog's back.
    expect(rules.some((r) => r.Prefix === undefined && r.ExpirationInDays !== undefined)).toBe(
      false,
    );
    expect(rules.some((r) => String(r.Prefix ?? '').startsWith('blobs'))).toBe(false);
  });

  it('is kept when the stack is deleted', () => {
    const [, bucket] = only('AWS::S3::Bucket') as [string, Resource & { DeletionPolicy?: string }];
    expect(bucket.DeletionPolicy).toBe('Retain');
  });
});

describe('table', () => {
  it('has the catalog key schema, on-demand billing, PITR and the TTL the catalog writes', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    });
    const [, table] = only('AWS::DynamoDB::Table');
    expect(table.Properties.GlobalSecondaryIndexes).toBeUndefined();
  });

  it('cannot be deleted by accident', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: true });
  });
});

describe('dashboard', () => {
  type Widget = { properties: { metrics?: unknown[][] } };
  /** The dashboard's widgets, with CloudFormation's tokens (names, region) as `TOKEN`. */
  const widgets = (): Widget[] => {
    const joined = only('AWS::CloudWatch::Dashboard')[1].Properties.DashboardBody as {
      'Fn::Join': [string, unknown[]];
    };
    const text = joined['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : 'TOKEN'));
    return (JSON.parse(text.join('')) as { widgets: Widget[] }).widgets;
  };
  /** `[namespace, metric name, ...dimensions]` of every graphed metric. */
  const graphed = () =>
    widgets().flatMap((w) =>
      (w.properties.metrics ?? []).map((m) => m.filter((x) => typeof x === 'string')),
    );

  it('graphs the EMF figures the functions write, under their namespace and dimension', () => {
    const emf = graphed().filter((m) => m[0] === 'ImageCache');
    for (const name of [
      'requests',
      'requestErrors',
      'bytesServed',
      'bytesFetched',
      'upstreamRequests',
      'upstreamThrottled',
      'hubManifestGets',
      'jobsSucceeded',
      'jobsFailed',
      'gcRuns',
      'bytesReclaimed',
    ]) {
      expect(emf, name).toContainEqual(['ImageCache', name, 'service', 'image-cache']);
    }
    const expressions = widgets()
      .flatMap((w) => w.properties.metrics ?? [])
      .flat();
    expect(expressions).toContainEqual(
      expect.objectContaining({ expression: '100 * (mh + bh) / (mh + bh + mm + bm)' }),
    );
  });

  it("graphs the HTTP API's 5xx, the job queues, and every function's errors and duration", () => {
    const all = graphed();
    expect(all.some((m) => m[0] === 'AWS/ApiGateway' && m[1] === '5xx')).toBe(true);
    expect(all.filter((m) => m[1] === 'ApproximateNumberOfMessagesVisible')).toHaveLength(2);
    for (const metric of ['Errors', 'Duration']) {
      expect(
        all.filter((m) => m[0] === 'AWS/Lambda' && m[1] === metric),
        metric,
      ).toHaveLength(FUNCTIONS.length);
    }
  });

  it('puts no metric through the API: no function may call PutMetricData', () => {
    expect(JSON.stringify(resources)).not.toContain('cloudwatch:PutMetricData');
  });

  it('names the dashboard in the outputs', () => {
    expect(Object.keys(template.toJSON().Outputs)).toContain('Dashboard');
  });
});

describe('functions', () => {
  it.each(FUNCTIONS)('%s runs Node 24 on arm64 with the aws backend', (prefix) => {
    const [, lambda] = fn(prefix);
    expect(lambda.Properties).toMatchObject({
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Environment: {
        Variables: {
          IMAGE_CACHE_BACKEND: 'aws',
          IMAGE_CACHE_BUCKET: { Ref: expect.stringMatching(/^Blobs/) },
          IMAGE_CACHE_TABLE: { Ref: expect.stringMatching(/^Catalog/) },
          IMAGE_CACHE_REGISTRIES: 'docker.io=https://registry-1.docker.io',
          IMAGE_CACHE_MAX_AGE: '30d',
          NODE_OPTIONS: '--enable-source-maps',
        },
      },
    });
  });

  it('caps each function at its reserved concurrency, the defaults where the context sets none', () => {
    expect(fn('Api')[1].Properties.ReservedConcurrentExecutions).toBe(DEFAULT_CONCURRENCY.api);
    expect(fn('StreamApi')[1].Properties.ReservedConcurrentExecutions).toBe(
      DEFAULT_CONCURRENCY.streamApi,
    );
    expect(fn('Worker')[1].Properties.ReservedConcurrentExecutions).toBe(7);
    // One collection at a time, and one watch pass.
    expect(fn('Prune')[1].Properties.ReservedConcurrentExecutions).toBe(1);
    expect(fn('Watch')[1].Properties.ReservedConcurrentExecutions).toBe(1);
  });

  it('gives the worker a full vCPU (1,769 MB) and the others 1 GB', () => {
    expect(WORKER_MEMORY_MB).toBe(1769);
    expect(fn('Worker')[1].Properties.MemorySize).toBe(WORKER_MEMORY_MB);
    for (const prefix of ['Api', 'StreamApi', 'Prune', 'Watch']) {
      expect(fn(prefix)[1].Properties.MemorySize).toBe(1024);
    }
  });

  it('gives the api room past the gateway, and the stream, worker and prune the full 15 minutes', () => {
    expect(fn('Api')[1].Properties.Timeout).toBe(60);
    for (const prefix of ['StreamApi', 'Worker', 'Prune']) {
      expect(fn(prefix)[1].Properties.Timeout).toBe(900);
    }
  });

  it('tells the fronts which queue takes jobs, and every puller where the credentials are', () => {
    const variables = (prefix: string) =>
      (fn(prefix)[1].Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const [queueId] = jobQueue();
    const [secretId] = only('AWS::SecretsManager::Secret');
    // The watch pass hands moved tags to the queue too.
    for (const prefix of ['Api', 'StreamApi', 'Watch']) {
      expect(variables(prefix).IMAGE_CACHE_JOB_QUEUE_URL).toEqual({ Ref: queueId });
    }
    for (const prefix of ['Api', 'StreamApi', 'Worker', 'Watch']) {
      expect(variables(prefix).IMAGE_CACHE_REGISTRY_SECRET).toEqual({ Ref: secretId });
    }
    // Nobody invokes the worker but the queue; the worker sends no jobs.
    for (const prefix of FUNCTIONS) {
      expect(variables(prefix).IMAGE_CACHE_WORKER_FUNCTION).toBeUndefined();
    }
    expect(variables('Worker').IMAGE_CACHE_JOB_QUEUE_URL).toBeUndefined();
    expect(variables('Prune').IMAGE_CACHE_REGISTRY_SECRET).toBeUndefined();
    // The template holds an empty credential set only; the real one is put outside CDK.
    const [, secret] = only('AWS::SecretsManager::Secret');
    expect(JSON.parse(secret.Properties.SecretString as string)).toEqual({ auths: {} });
  });

  it('serves the stream function at an IAM-only function URL (CloudFront in front) that streams its responses', () => {
    template.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'AWS_IAM',
      InvokeMode: 'RESPONSE_STREAM',
      TargetFunctionArn: { 'Fn::GetAtt': [fn('StreamApi')[0], 'Arn'] },
    });
    template.resourceCountIs('AWS::Lambda::Url', 1);
  });

  it('has no asynchronous invoke settings for the worker: nothing invokes it asynchronously', () => {
    const configs = Object.values(resources).filter(
      (r) =>
        r.Type === 'AWS::Lambda::EventInvokeConfig' &&
        JSON.stringify(r.Properties.FunctionName).includes(fn('Worker')[0]),
    );
    expect(configs).toEqual([]);
  });

  it('logs each function to its own group kept for a month', () => {
    const groups = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Logs::LogGroup');
    // One per function, and the HTTP API's access logs.
    expect(groups).toHaveLength(FUNCTIONS.length + 1);
    for (const [, group] of groups) expect(group.Properties.RetentionInDays).toBe(30);
    for (const prefix of FUNCTIONS) {
      const logging = fn(prefix)[1].Properties.LoggingConfig as { LogGroup: { Ref: string } };
      expect(logging.LogGroup.Ref.startsWith(`${prefix}Logs`)).toBe(true);
    }
  });

  it('bundles each handler as a minified ES module with a source map', () => {
    for (const prefix of FUNCTIONS) {
      const asset = fn(prefix)[1].Metadata?.['aws:asset:path'] as string;
      const bundle = statSync(join(outdir, asset, 'index.mjs'));
      expect(bundle.size).toBeGreaterThan(10_000);
      // Minified: the SDK and core together stay well under what a plain bundle weighs.
      expect(bundle.size).toBeLessThan(5 * 2 ** 20);
      expect(statSync(join(outdir, asset, 'index.mjs.map')).isFile()).toBe(true);
    }
  });

  it('the bundled api handler loads in Node and answers the docker CLI ping', async () => {
    const asset = fn('Api')[1].Metadata?.['aws:asset:path'] as string;
    const script = `
      const { handler } = await import(${JSON.stringify(join(outdir, asset, 'index.mjs'))});
      const event = (method, rawPath) => ({
        version: '2.0', routeKey: '$default', rawPath, rawQueryString: '', headers: {},
        isBase64Encoded: false, requestContext: { http: { method, path: rawPath } },
      });
      const context = { awsRequestId: 'smoke', getRemainingTimeInMillis: () => 60_000 };
      const ping = await handler(event('HEAD', '/_ping'), context);
      const version = await handler(event('GET', '/v1.47/version'), context);
      // After the handlers' own request log lines.
      process.stdout.write('\\n' + JSON.stringify({ ping, version }));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 30_000, env: bundleEnvironment() },
    );
    const lines = stdout.split('\n');
    // The handler logs each request on stdout, one JSON line, as Lambda keeps it.
    expect(JSON.parse(lines[0]!)).toMatchObject({ log: 'request', method: 'HEAD', status: 200 });
    const { ping, version } = JSON.parse(lines.at(-1)!) as Record<
      string,
      { statusCode: number; body: string }
    >;
    expect(ping?.statusCode).toBe(200);
    expect(version?.statusCode).toBe(200);
    expect(JSON.parse(version!.body)).toMatchObject({ Version: expect.any(String) });
  });
  it('the bundled stream handler writes the HTTP integration prelude, then the body', async () => {
    const asset = fn('StreamApi')[1].Metadata?.['aws:asset:path'] as string;
    const script = `
      const { PassThrough } = await import('node:stream');
      const { handler } = await import(${JSON.stringify(join(outdir, asset, 'index.mjs'))});
      const out = new PassThrough();
      const chunks = [];
      out.on('data', (chunk) => chunks.push(chunk));
      const event = {
        version: '2.0', routeKey: '$default', rawPath: '/v1.47/version', rawQueryString: '',
        headers: {}, isBase64Encoded: false,
        requestContext: { http: { method: 'GET', path: '/v1.47/version' } },
      };
      await handler(event, out, { awsRequestId: 'smoke', getRemainingTimeInMillis: () => 60_000 });
      process.stdout.write('\\n' + Buffer.concat(chunks).toString('base64'));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 30_000, env: bundleEnvironment() },
    );
    const bytes = Buffer.from(stdout.split('\n').at(-1)!, 'base64');
    const separator = bytes.indexOf(Buffer.alloc(8));
    expect(separator).toBeGreaterThan(0);
    const prelude = JSON.parse(bytes.subarray(0, separator).toString()) as { statusCode: number };
    expect(prelude.statusCode).toBe(200);
    const body = JSON.parse(bytes.subarray(separator + 8).toString()) as Record<string, unknown>;
    expect(body).toMatchObject({ Version: expect.any(String) });
  });

  it('the bundled worker refuses an event without a job id before touching anything', async () => {
    const asset = fn('Worker')[1].Metadata?.['aws:asset:path'] as string;
    const script = `
      const { handler } = await import(${JSON.stringify(join(outdir, asset, 'index.mjs'))});
      await handler({}).then(() => process.exit(3), (error) => process.stdout.write(error.message));`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 30_000, env: bundleEnvironment() },
    );
    expect(stdout).toContain('jobId');
  });
});

describe('least privilege', () => {
  const BLOBS = [
    's3:AbortMultipartUpload',
    's3:DeleteObject',
    's3:GetObject',
    's3:ListBucket',
    's3:PutObject',
  ];
  const SECRET = ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'];

  it.each(['Api', 'StreamApi'])(
    'lets %s use blobs, staging and the catalog, read the credentials and send jobs to the queue',
    (prefix) => {
      expect([...actionsOf(prefix)].sort()).toEqual(
        [...BLOBS, ...CATALOG, ...SECRET, 'sqs:SendMessage'].sort(),
      );
      const send = statementsOf(prefix).filter((s) =>
        [s.Action].flat().includes('sqs:SendMessage'),
      );
      expect(send).toEqual([
        expect.objectContaining({
          Action: 'sqs:SendMessage',
          Resource: { 'Fn::GetAtt': [jobQueue()[0], 'Arn'] },
        }),
      ]);
    },
  );

  it('lets the worker use blobs, staging, exports and the catalog, read the credentials and consume the job queue, nothing else', () => {
    expect([...actionsOf('Worker')].sort()).toEqual(
      [...BLOBS, ...CATALOG, ...SECRET, ...CONSUME].sort(),
    );
    const consume = statementsOf('Worker').filter((s) =>
      [s.Action].flat().some((a) => a.startsWith('sqs:')),
    );
    expect(consume.map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [jobQueue()[0], 'Arn'] }]);
  });

  it.each(['Api', 'StreamApi', 'Worker'])(
    'lets %s read and write save exports, but not delete them (the lifecycle rule does)',
    (prefix) => {
      const exports = statementsOf(prefix).filter((s) =>
        JSON.stringify(s.Resource).includes(`/${s3Keys().exportsPrefix}*`),
      );
      expect(exports).toHaveLength(1);
      expect([exports[0]!.Action].flat().sort()).toEqual([
        's3:AbortMultipartUpload',
        's3:GetObject',
        's3:PutObject',
      ]);
    },
  );

  it('lets only the functions that pull read the credentials secret', () => {
    const [secretId] = only('AWS::SecretsManager::Secret');
    for (const prefix of FUNCTIONS) {
      const reads = statementsOf(prefix).filter((s) =>
        [s.Action].flat().includes('secretsmanager:GetSecretValue'),
      );
      if (prefix === 'Prune') {
        expect(reads).toHaveLength(0);
      } else {
        expect(reads).toHaveLength(1);
        expect(reads[0]!.Resource).toEqual({ Ref: secretId });
      }
    }
  });

  it('lets prune only read, list and delete blobs: it never writes an object', () => {
    const actions = actionsOf('Prune');
    expect([...actions].sort()).toEqual(
      ['s3:DeleteObject', 's3:GetObject', 's3:ListBucket', ...CATALOG].sort(),
    );
    const objectStatement = statementsOf('Prune').find((s) =>
      [s.Action].flat().includes('s3:DeleteObject'),
    );
    const resource = JSON.stringify(objectStatement?.Resource);
    expect(resource).toContain(`/${s3Keys().blobsPrefix}*`);
    expect(resource).not.toContain('staging');
  });

  it('grants no wildcards, no table or bucket management, and no other resources', () => {
    for (const prefix of FUNCTIONS) {
      for (const statement of statementsOf(prefix)) {
        expect(statement.Effect).toBe('Allow');
        for (const action of [statement.Action].flat()) expect(action).not.toContain('*');
        const resource = JSON.stringify(statement.Resource);
        expect(resource).not.toBe('"*"');
        expect(resource).toMatch(/Blobs|Catalog|RegistryCredentials|JobQueueJobs/);
      }
      const actions = actionsOf(prefix);
      for (const forbidden of [
        'dynamodb:CreateTable',
        'dynamodb:DeleteTable',
        'dynamodb:UpdateTimeToLive',
        'dynamodb:DescribeTable',
        's3:PutBucketPolicy',
        's3:DeleteBucket',
        's3:PutLifecycleConfiguration',
      ]) {
        expect(actions.has(forbidden)).toBe(false);
      }
    }
  });

  it('lets API Gateway invoke the api, only this distribution the stream function through its URL, the schedule prune, and nobody the worker', () => {
    const permissions = Object.values(resources).filter(
      (r) => r.Type === 'AWS::Lambda::Permission',
    );
    const target = (p: Resource) => JSON.stringify(p.Properties.FunctionName);
    const of = (prefix: string) => permissions.filter((p) => target(p).includes(fn(prefix)[0]));
    expect(of('Worker')).toEqual([]);
    expect(of('Api').length).toBeGreaterThan(0);
    for (const p of of('Api')) expect(p.Properties.Principal).toBe('apigateway.amazonaws.com');
    for (const scheduled of ['Prune', 'Watch']) {
      expect(of(scheduled).length).toBeGreaterThan(0);
      for (const p of of(scheduled)) expect(p.Properties.Principal).toBe('events.amazonaws.com');
    }
    // Nobody anonymous: CloudFront alone, for this distribution, and through the URL only.
    const [distribution] = only('AWS::CloudFront::Distribution');
    // Granted on the function through its URL resource (the URL's FunctionArn).
    const [url] = only('AWS::Lambda::Url');
    const throughUrl = permissions.filter((p) => target(p).includes(url));
    expect(of('StreamApi')).toEqual([]);
    const stream = throughUrl.map((p) => p.Properties);
    expect(stream).toHaveLength(2);
    for (const p of stream) {
      expect(p.Principal).toBe('cloudfront.amazonaws.com');
      expect(JSON.stringify(p.SourceArn)).toContain(`":distribution/",{"Ref":"${distribution}"}`);
    }
    expect(stream.map((p) => p.Action).sort()).toEqual([
      'lambda:InvokeFunction',
      'lambda:InvokeFunctionUrl',
    ]);
    expect(stream.find((p) => p.Action === 'lambda:InvokeFunction')?.InvokedViaFunctionUrl).toBe(
      true,
    );
    expect(permissions).toHaveLength(
      of('Api').length + of('Prune').length + of('Watch').length + stream.length,
    );
  });
});

describe('job queue', () => {
  it('is the only queue beside its dead-letter queue, both encrypted and TLS only', () => {
    expect(Object.values(resources).filter((r) => r.Type === 'AWS::SQS::Queue')).toHaveLength(2);
    for (const [id, q] of [jobQueue(), deadLetters()]) {
      expect(q.Properties.SqsManagedSseEnabled).toBe(true);
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });

  it('hides a delivered job for six worker timeouts, well past the worker running it', () => {
    const workerTimeout = fn('Worker')[1].Properties.Timeout as number;
    const visibility = jobQueue()[1].Properties.VisibilityTimeout as number;
    expect(visibility).toBe(6 * workerTimeout);
    expect(visibility).toBeGreaterThan(workerTimeout);
  });

  it('moves a job delivered five times to a dead-letter queue that keeps it 14 days', () => {
    const [deadId, dead] = deadLetters();
    expect(jobQueue()[1].Properties.RedrivePolicy).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': [deadId, 'Arn'] },
      maxReceiveCount: 5,
    });
    expect(dead.Properties.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    expect(dead.Properties.RedrivePolicy).toBeUndefined();
  });

  it('feeds the worker one job per invocation, reporting failed items, within its reserved concurrency', () => {
    const [, mapping] = only('AWS::Lambda::EventSourceMapping');
    expect(mapping.Properties).toMatchObject({
      EventSourceArn: { 'Fn::GetAtt': [jobQueue()[0], 'Arn'] },
      FunctionName: { Ref: fn('Worker')[0] },
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 7 },
    });
  });

  it('alarms to the alarm topic as soon as a job is in the dead-letter queue', () => {
    const [topicId] = only('AWS::SNS::Topic');
    const [deadId] = deadLetters();
    const alarms = Object.values(resources).filter(
      (r) => r.Type === 'AWS::CloudWatch::Alarm' && r.Properties.Namespace === 'AWS/SQS',
    );
    expect(alarms.map((a) => a.Properties)).toEqual([
      expect.objectContaining({
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [deadId, 'QueueName'] } }],
        Statistic: 'Maximum',
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
        AlarmActions: [{ Ref: topicId }],
      }),
    ]);
  });
});

describe('front door and schedule', () => {
  it('routes every method and path to the api at the root of a $default stage', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'HTTP' });
    template.resourceCountIs('AWS::ApiGatewayV2::Route', 1);
    template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: '$default' });
    template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
      IntegrationUri: { 'Fn::GetAtt': [fn('Api')[0], 'Arn'] },
    });
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingBurstLimit: 200, ThrottlingRateLimit: 100 },
    });
  });

  it('logs every request as one JSON line with the caller, status and latency, never a header', () => {
    const [, stage] = only('AWS::ApiGatewayV2::Stage');
    const settings = stage.Properties.AccessLogSettings as {
      DestinationArn: unknown;
      Format: string;
    };
    const logGroups = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Logs::LogGroup');
    const [accessLogs] = logGroups.find(([id]) => id.startsWith('HttpApiAccessLogs'))!;
    expect(settings.DestinationArn).toEqual({ 'Fn::GetAtt': [accessLogs, 'Arn'] });
    const format = JSON.parse(settings.Format) as Record<string, string>;
    expect(format).toMatchObject({
      requestId: '$context.requestId',
      ip: '$context.identity.sourceIp',
      status: '$context.status',
      latencyMs: '$context.responseLatency',
    });
    // The bearer token travels in Authorization: no header variable may reach the log.
    expect(settings.Format).not.toMatch(/header|authorization/i);
  });

  it('runs prune every 6 hours, once per event (the next run is the retry)', () => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fn('Prune')[0] },
      MaximumRetryAttempts: 0,
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(6 hours)',
      State: 'ENABLED',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [fn('Prune')[0], 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 1 },
        }),
      ],
    });
  });
});

describe('the watch schedule', () => {
  it('runs the watch pass every minute, once per event, within 5 minutes', () => {
    expect(fn('Watch')[1].Properties.Timeout).toBe(300);
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fn('Watch')[0] },
      MaximumRetryAttempts: 0,
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [fn('Watch')[0], 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 0 },
        }),
      ],
    });
  });

  it('lets the watch pass send jobs to the queue, and write no object', () => {
    const [queueId] = jobQueue();
    const sends = statementsOf('Watch').filter((s) =>
      [s.Action].flat().includes('sqs:SendMessage'),
    );
    expect(sends).toHaveLength(1);
    expect(sends[0]!.Resource).toEqual({ 'Fn::GetAtt': [queueId, 'Arn'] });
    const actions = actionsOf('Watch');
    expect([...actions].filter((a) => a.startsWith('s3:') && a !== 's3:ListBucket')).toEqual([]);
  });
});

describe('alarms and outputs', () => {
  it('alarms on errors and throttles of each function, to the alarm topic', () => {
    const alarms = Object.values(resources).filter(
      (r) =>
        r.Type === 'AWS::CloudWatch::Alarm' &&
        r.Properties.Namespace === 'AWS/Lambda' &&
        ['Errors', 'Throttles'].includes(r.Properties.MetricName as string),
    );
    expect(alarms).toHaveLength(2 * FUNCTIONS.length);
    const [topicId] = only('AWS::SNS::Topic');
    const seen = new Set<string>();
    for (const alarm of alarms) {
      const p = alarm.Properties;
      expect(p.Namespace).toBe('AWS/Lambda');
      expect(p.Threshold).toBe(1);
      expect(p.ComparisonOperator).toBe('GreaterThanOrEqualToThreshold');
      expect(p.TreatMissingData).toBe('notBreaching');
      expect(p.AlarmActions).toEqual([{ Ref: topicId }]);
      const [dimension] = p.Dimensions as { Name: string; Value: { Ref: string } }[];
      expect(dimension?.Name).toBe('FunctionName');
      seen.add(`${dimension?.Value.Ref.replace(/[0-9A-F]{8}$/, '')}:${p.MetricName}`);
    }
    expect([...seen].sort()).toEqual(
      FUNCTIONS.flatMap((f) => [`${f}:Errors`, `${f}:Throttles`]).sort(),
    );
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
  });

  it('alarms on API 5xx, a worker near its timeout and catalog throttling', () => {
    const [topicId] = only('AWS::SNS::Topic');
    const alarm = (prefix: string) => {
      const found = Object.entries(resources).filter(
        ([id, r]) => r.Type === 'AWS::CloudWatch::Alarm' && id.startsWith(prefix),
      );
      expect(found).toHaveLength(1);
      const p = found[0]![1].Properties;
      expect(p.AlarmActions).toEqual([{ Ref: topicId }]);
      expect(p.ComparisonOperator).toBe('GreaterThanOrEqualToThreshold');
      return p;
    };
    expect(alarm('Api5xx')).toMatchObject({
      Namespace: 'AWS/ApiGateway',
      MetricName: '5xx',
      Threshold: 1,
    });
    // 80% of the worker's 15 minutes: the jobs about to be cut off.
    expect(alarm('WorkerNearTimeout')).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'Duration',
      Statistic: 'Maximum',
      Threshold: 0.8 * 900_000,
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: fn('Worker')[0] } }],
    });
    const [tableId] = only('AWS::DynamoDB::Table');
    for (const metric of ['ReadThrottleEvents', 'WriteThrottleEvents']) {
      expect(alarm(`Catalog${metric}`)).toMatchObject({
        Namespace: 'AWS/DynamoDB',
        MetricName: metric,
        Threshold: 1,
        Dimensions: [{ Name: 'TableName', Value: { Ref: tableId } }],
      });
    }
  });

  it('sends a monthly budget overrun, actual or forecast, to the alarm topic it may publish to', () => {
    const [topicId] = only('AWS::SNS::Topic');
    const [, budget] = only('AWS::Budgets::Budget');
    expect(budget.Properties.Budget).toMatchObject({
      BudgetType: 'COST',
      TimeUnit: 'MONTHLY',
      BudgetLimit: { Amount: 250, Unit: 'USD' },
    });
    const notifications = budget.Properties.NotificationsWithSubscribers as {
      Notification: { NotificationType: string; Threshold: number };
      Subscribers: { SubscriptionType: string; Address: unknown }[];
    }[];
    expect(notifications.map((n) => n.Notification.NotificationType).sort()).toEqual([
      'ACTUAL',
      'FORECASTED',
    ]);
    for (const n of notifications) {
      expect(n.Subscribers).toEqual([{ SubscriptionType: 'SNS', Address: { Ref: topicId } }]);
    }
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'sns:Publish',
            Principal: { Service: 'budgets.amazonaws.com' },
          }),
        ]),
      },
    });
  });

  it('outputs the endpoint, the DOCKER_HOST and the resource names', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual(
      [
        'AlarmTopicArn',
        'Dashboard',
        'BucketName',
        'DockerHost',
        'Endpoint',
        'RegistrySecretArn',
        'StreamDockerHost',
        'StreamEndpoint',
        'TableName',
        'UpstreamCredentials',
      ].sort(),
    );
    const [apiId] = only('AWS::ApiGatewayV2::Api');
    expect(JSON.stringify(outputs.Endpoint?.Value)).toContain(apiId);
    const dockerHost = JSON.stringify(outputs.DockerHost?.Value);
    expect(dockerHost).toContain('tcp://');
    expect(dockerHost).toContain(':443');
    // The streaming front is the distribution, not the function URL behind it.
    const [distribution] = only('AWS::CloudFront::Distribution');
    expect(JSON.stringify(outputs.StreamEndpoint?.Value)).toContain(distribution);
    const streamHost = JSON.stringify(outputs.StreamDockerHost?.Value);
    expect(streamHost).toContain('tcp://');
    expect(streamHost).toContain(distribution);
  });
});

describe('Docker Hub credentials', () => {
  const filling =
    /docker\.io is pulled anonymously.*"https:\/\/index\.docker\.io\/v1\/":\{"auth":"<base64 of user:access-token>"\}.*aws secretsmanager put-secret-value --secret-id .* --secret-string file:\/\/auths\.json/;

  it('says at deploy time that the empty secret it creates leaves docker.io anonymous, and how to fill it', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    const value = outputs.UpstreamCredentials?.Value as { 'Fn::Join': [string, unknown[]] };
    const parts = value['Fn::Join'][1];
    // The command names the secret the stack created (its ARN is the secret's Ref).
    const [secretId] = only('AWS::SecretsManager::Secret');
    expect(parts.filter((part) => typeof part !== 'string')).toEqual([{ Ref: secretId }]);
    const text = parts.map((part) => (typeof part === 'string' ? part : 'ARN')).join('');
    expect(text).toMatch(filling);
    expect(text).toContain('--secret-id ARN ');
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp(filling.source));
  });

  it('stays quiet when the secret is given, or docker.io is not allowed or not Docker Hub', () => {
    // Bundling skipped: only outputs and annotations are looked at.
    const quiet = (props: Partial<ImageCacheStackProps>) => {
      const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
      const quietStack = new ImageCacheStack(app, 'Quiet', {
        env: { account: '123456789012', region: 'eu-west-1' },
        ...props,
      });
      const outputs = Template.fromStack(quietStack).toJSON().Outputs as Record<string, unknown>;
      expect(outputs.UpstreamCredentials).toBeUndefined();
      Annotations.fromStack(quietStack).hasNoWarning('*', Match.stringLikeRegexp('anonymous'));
    };
    quiet({
      registrySecretArn:
        'arn:aws:secretsmanager:eu-west-1:123456789012:secret:image-cache/registry-AbCdEf',
    });
    quiet({ registries: 'ghcr.io=https://ghcr.io' });
    quiet({ registries: 'docker.io=https://mirror.example.com' });
  });
});

describe('npx cdk synth', () => {
  it('synthesizes offline from cdk.json, without AWS credentials or a Docker engine', async () => {
    const out = mkdtempSync(join(tmpdir(), 'image-cache-synth-'));
    try {
      const context = ['-c', 'workerConcurrency=5', '-c', 'monthlyBudgetUsd=100'];
      await promisify(execFile)(
        'npx',
        ['cdk', 'synth', '-q', '--no-notices', ...context, '-o', out],
        {
          cwd: fileURLToPath(new URL('..', import.meta.url)),
          timeout: 120_000,
          // No credentials, no region, no Docker: nothing may be looked up or built remotely.
          env: { PATH: process.env.PATH, HOME: out, CDK_DISABLE_VERSION_CHECK: '1' },
        },
      );
      const synthesized = JSON.parse(
        readFileSync(join(out, 'ImageCache.template.json'), 'utf8'),
      ) as { Resources: Record<string, Resource> };
      const types = Object.values(synthesized.Resources).map((r) => r.Type);
      expect(types.filter((t) => t === 'AWS::Lambda::Function')).toHaveLength(FUNCTIONS.length);
      expect(types).toContain('AWS::Lambda::Url');
      expect(types).toContain('AWS::CloudFront::Distribution');
      expect(types).toContain('AWS::ApiGatewayV2::Api');
      expect(types).toContain('AWS::SecretsManager::Secret');
      // Context settings reach the stack.
      const worker = Object.entries(synthesized.Resources).find(
        ([id, r]) => r.Type === 'AWS::Lambda::Function' && id.startsWith('Worker'),
      );
      expect(worker?.[1].Properties.ReservedConcurrentExecutions).toBe(5);
      expect(types).toContain('AWS::Budgets::Budget');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 150_000);
});
