/**
 * AWS list prices for bench/serverless-costs.ts, and what one pull costs at them.
 *
 * us-east-1, on-demand, first pricing tier, no free tier (the free allowances, such as the first
 * 100 GB a month of transfer to the internet, are per account and would hide the per-pull
 * cost). As of 2026-12-05. AWS's pricing pages fill their tables in the browser, so none of the
 * rates could be read from the pages themselves offline; `checked` says what the offline
 * documentation search did confirm (a definition on an AWS page, or the same number in a
 * third-party transcription of the page), and `unchecked` marks a rate taken as published
 * without any offline confirmation. Check the pages before relying on a number.
 *
 * A GB here is 2^30 bytes, as AWS bills data ("GB" on its bills is a binary gigabyte); the image
 * sizes (200 MB, 2 GB) are decimal.
 */

export const PRICES_AS_OF = '2026-12-05';
export const REGION = 'us-east-1';
export const GB = 2 ** 30;

export interface Price {
  usd: number;
  /** What one `usd` buys. */
  per: string;
  source: string;
  checked: string;
}

const LAMBDA = 'https://aws.amazon.com/lambda/pricing/';
const S3 = 'https://aws.amazon.com/s3/pricing/';
const TRANSFER = 'https://aws.amazon.com/ec2/pricing/on-demand/#Data_Transfer';

export const PRICES = {
  lambdaArmGbSecond: {
    usd: 0.0000133334,
    per: 'GB-second, arm64 (the stack deploys arm64)',
    source: LAMBDA,
    checked: 'the same rate in a third-party table of the page (artillery, prices.js)',
  },
  lambdaX86GbSecond: {
    usd: 0.0000166667,
    per: 'GB-second, x86_64',
    source: LAMBDA,
    checked: 'the same rate in a third-party table of the page (artillery, prices.js)',
  },
  lambdaRequest: {
    usd: 0.2 / 1e6,
    per: 'invocation',
    source: LAMBDA,
    checked: 'the same rate in a third-party transcription of the page (api-evangelist)',
  },
  lambdaStreamedGb: {
    usd: 0.008,
    per: 'GB of a streamed response past its first 6 MB',
    source: LAMBDA,
    checked:
      'unchecked rate; that streaming is billed and capped at 2 MB/s past 6 MB is on the Lambda developer guide (configuration-response-streaming)',
  },
  httpApiRequest: {
    usd: 1.0 / 1e6,
    per: 'HTTP API request (first 300 million a month), metered in 512 KB increments',
    source: 'https://aws.amazon.com/api-gateway/pricing/',
    checked: 'unchecked',
  },
  s3PutClassRequest: {
    usd: 0.005 / 1000,
    per: 'S3 Standard PUT, COPY, POST or LIST request (UploadPart, Create/CompleteMultipartUpload included)',
    source: S3,
    checked: 'request classes as named in third-party price-list code; rate unchecked',
  },
  s3GetClassRequest: {
    usd: 0.0004 / 1000,
    per: 'S3 Standard GET, SELECT or other request (HeadObject included); DELETE is free',
    source: S3,
    checked: 'request classes as named in third-party price-list code; rate unchecked',
  },
  s3StorageGbMonth: {
    usd: 0.023,
    per: 'GB-month of S3 Standard (first 50 TB)',
    source: S3,
    checked: 'unchecked',
  },
  dynamoReadUnit: {
    usd: 0.125 / 1e6,
    per: 'on-demand read request unit',
    source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/',
    checked:
      'unit definitions (4 KB strong read = 1, eventual = 0.5, transactional = 2) on the page; rate unchecked',
  },
  dynamoWriteUnit: {
    usd: 0.625 / 1e6,
    per: 'on-demand write request unit',
    source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/',
    checked: 'unit definition (1 KB write = 1) on the page; rate unchecked',
  },
  sqsRequest: {
    usd: 0.4 / 1e6,
    per: 'SQS standard queue request (each 64 KB chunk of a payload is one)',
    source: 'https://aws.amazon.com/sqs/pricing/',
    checked: 'the same rate in a third-party cost table (gist allenheltondev)',
  },
  cloudFrontRequest: {
    usd: 0.01 / 10_000,
    per: 'CloudFront HTTPS request, United States',
    source: 'https://aws.amazon.com/cloudfront/pricing/',
    checked: 'unchecked',
  },
  cloudFrontEgressGb: {
    usd: 0.085,
    per: 'GB from CloudFront to the internet, United States, first 10 TB (origin fetches from AWS origins are free)',
    source: 'https://aws.amazon.com/cloudfront/pricing/',
    checked: 'unchecked',
  },
  internetEgressGb: {
    usd: 0.09,
    per: 'GB out of AWS to the internet (S3, Lambda, API Gateway), first 10 TB a month',
    source: TRANSFER,
    checked: 'the same rate in third-party ECR pricing guides (cloudburn.io, 2026-03)',
  },
  sameRegionEgressGb: {
    usd: 0,
    per: 'GB from S3, Lambda or ECR to EC2 in the same region',
    source: S3,
    checked:
      'ECR same-region transfer free in third-party guides (finops.com.py, cloudburn.io); S3 unchecked',
  },
  ecrStorageGbMonth: {
    usd: 0.1,
    per: 'GB-month of ECR private repository storage (pull-through cache repositories too); ECR API requests are free',
    source: 'https://aws.amazon.com/ecr/pricing/',
    checked: 'the same rate in third-party ECR pricing guides (cloudburn.io, finops.com.py)',
  },
} satisfies Record<string, Price>;

/** What one pull uses of each priced item: measured, or fitted from measurements. */
export interface PullUsage {
  lambdaInvocations: number;
  /** Billed duration times configured memory, summed over the invocations. */
  lambdaGbSeconds: number;
  /** Bytes of streamed responses past each one's first 6 MB. */
  streamedBytesPast6MB: number;
  /** HTTP API requests, in 512 KB metering units. */
  httpApiRequests: number;
  /** Requests to the streaming function URL (CloudFront requests when it sits behind the edge). */
  functionUrlRequests: number;
  s3PutClass: number;
  /** GET-class S3 requests: the functions' and the client's presigned GETs. */
  s3GetClass: number;
  dynamoReadUnits: number;
  dynamoWriteUnits: number;
  /** Bytes the client received from Lambda (function URL or HTTP API answers). */
  bytesFromLambda: number;
  /** Bytes the client received from S3 (presigned GETs). */
  bytesFromS3: number;
}

export const USAGE_FIELDS = [
  'lambdaInvocations',
  'lambdaGbSeconds',
  'streamedBytesPast6MB',
  'httpApiRequests',
  'functionUrlRequests',
  's3PutClass',
  's3GetClass',
  'dynamoReadUnits',
  'dynamoWriteUnits',
  'bytesFromLambda',
  'bytesFromS3',
] as const satisfies ReadonlyArray<keyof PullUsage>;

/** Where the client runs: EC2 in the stack's region, or anywhere outside AWS. */
export type Client = 'same-region' | 'internet';

export interface PullCost {
  lambda: number;
  streaming: number;
  httpApi: number;
  s3Requests: number;
  dynamo: number;
  /** Transfer out, and CloudFront's requests when the edge is in front. */
  egress: number;
  total: number;
}

/** One pull's cost at list prices; `edge` sends the Lambda bytes through CloudFront. */
export function pullCost(usage: PullUsage, client: Client, edge = false): PullCost {
  const lambda =
    usage.lambdaInvocations * PRICES.lambdaRequest.usd +
    usage.lambdaGbSeconds * PRICES.lambdaArmGbSecond.usd;
  const streaming = (usage.streamedBytesPast6MB / GB) * PRICES.lambdaStreamedGb.usd;
  const httpApi = usage.httpApiRequests * PRICES.httpApiRequest.usd;
  const s3Requests =
    usage.s3PutClass * PRICES.s3PutClassRequest.usd +
    usage.s3GetClass * PRICES.s3GetClassRequest.usd;
  const dynamo =
    usage.dynamoReadUnits * PRICES.dynamoReadUnit.usd +
    usage.dynamoWriteUnits * PRICES.dynamoWriteUnit.usd;
  const out = client === 'internet' ? PRICES.internetEgressGb.usd : PRICES.sameRegionEgressGb.usd;
  const lambdaOut = client === 'internet' && edge ? PRICES.cloudFrontEgressGb.usd : out;
  const edgeRequests = edge ? usage.functionUrlRequests * PRICES.cloudFrontRequest.usd : 0;
  const egress =
    (usage.bytesFromLambda / GB) * lambdaOut + (usage.bytesFromS3 / GB) * out + edgeRequests;
  const total = lambda + streaming + httpApi + s3Requests + dynamo + egress;
  return { lambda, streaming, httpApi, s3Requests, dynamo, egress, total };
}

/**
 * ECR pull-through cache for the same pull: ECR's API requests and same-region transfer are
 * free and filling from the upstream costs nothing but storage, so a pull costs only its transfer
 * out; cold and warm are the same.
 */
export function ecrPullCost(imageBytes: number, client: Client): number {
  const out = client === 'internet' ? PRICES.internetEgressGb.usd : PRICES.sameRegionEgressGb.usd;
  return (imageBytes / GB) * out;
}

/** A month of keeping one image of `imageBytes`: S3 (this cache) and ECR. */
export function storagePerMonth(imageBytes: number): { s3: number; ecr: number } {
  return {
    s3: (imageBytes / GB) * PRICES.s3StorageGbMonth.usd,
    ecr: (imageBytes / GB) * PRICES.ecrStorageGbMonth.usd,
  };
}
