/**
 * What a CI pull costs on the AWS stack, per path, cold and warm, beside ECR pull-through cache:
 *
 *   npm run bench:costs                                 # measured at 40 and 80 MiB, 4 layers
 *   npm run bench:costs -- --size-mib 64 --layers 8     # measured at 64 and 128 MiB
 *   npm run bench:costs -- --image-mb 500 --pulls 10000 # the table for another image and count
 *
 * One pull per path and phase in the deployed shape (bench/support-serverless-shape.ts: the four
 * functions in containers of their own, the local API Gateway, function URL and Invoke API, the
 * AWS backend on DynamoDB Local and fauxqs, a docker-registry as docker.io):
 *   engine  `docker pull` through the HTTP API (the worker fills S3 as a job the api follows),
 *           then the tarball as a save export: `GET /images/get?redirect=1` and its 307 to S3
 *           (what `image-cache save` and `curl -L` do);
 *   stream  `docker pull` and `docker save` through the streaming function URL (the docker CLI's
 *           DOCKER_HOST): every byte of the tarball streams out of Lambda;
 *   mirror  a registry client through the HTTP API (what dockerd, containerd and skopeo do with a
 *           mirror): the manifest from Lambda, each blob a 307 to presigned S3 (a 429 with
 *           Retry-After while a cold blob too large for a buffered answer is being stored).
 * Cold: the image is new to the cache; warm: the same pull again right after.
 *
 * Counted per pull: Lambda invocations and billed milliseconds (the local doors' and the
 * worker's wall time, rounded up to the ms, times each function's memory), streamed bytes past
 * 6 MB, HTTP API requests (512 KB units), S3 requests by price class (the functions' SDK calls
 * and the client's presigned GETs), DynamoDB read and write units (ReturnConsumedCapacity), and
 * the bytes the client got from Lambda and from S3. Each path is measured at two image sizes,
 * every quantity fitted as fixed + per byte and read at the table's image size: request counts
 * stay put, S3 parts, Lambda seconds and bytes grow with the image.
 *
 * Times are this machine's, not Lambda's: the emulators share its CPU, the worker's fill runs
 * at the emulators' speed, and streaming past 6 MB is held to Lambda's 2 MB/s by the local
 * function URL as on AWS. Prices: bench/support-costs.ts.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WORKER_MEMORY_MB } from '../infra/image-cache-stack.ts';
import { awsEmulators, stopAwsEmulators } from '../test/support/aws-emulators.ts';
import { docker } from '../test/support/docker-cli.ts';
import { STREAMED_RESPONSE_CAP } from '../test/support/function-url-local.ts';
import { startRegistry } from '../test/support/registry-server.ts';
import { tempDir } from '../test/support/tmp.ts';
import {
  type BenchImage,
  benchImage,
  log,
  MiB,
  positiveInt,
  pushBenchImage,
  runMain,
} from './support.ts';
import {
  type Client,
  ecrPullCost,
  GB,
  PRICES,
  PRICES_AS_OF,
  type PullCost,
  type PullUsage,
  pullCost,
  REGION,
  storagePerMonth,
  USAGE_FIELDS,
} from './support-costs.ts';
import { imageBytes } from './support-report.ts';
import {
  freshStackResources,
  type ServerlessShape,
  startServerlessShape,
} from './support-serverless-shape.ts';

/** infra/image-cache-stack.ts gives api, streamApi and prune 1,024 MB (FRONT_MEMORY_MB there). */
const FRONT_MEMORY_MB = 1024;
/** The first 6 MB of a streamed response are neither throttled nor billed as streaming. */
const STREAM_FREE_BYTES = 6 * MiB;
const API_GATEWAY_METERING_BYTES = 512 * 1024;
/** A registry client's blob downloads at a time (dockerd's max-concurrent-downloads default). */
const BLOB_CONCURRENCY = 3;
const PATHS = ['engine', 'stream', 'mirror'] as const;
type Path = (typeof PATHS)[number];
type Phase = 'cold' | 'warm';

const S3_PUT_CLASS = new Set([
  'PutObject',
  'UploadPart',
  'CreateMultipartUpload',
  'CompleteMultipartUpload',
  'CopyObject',
  'UploadPartCopy',
  'ListObjectsV2',
  'ListParts',
  'ListMultipartUploads',
]);
const S3_FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      'size-mib': { type: 'string', default: '40' },
      layers: { type: 'string', default: '4' },
      seed: { type: 'string', default: 'costs' },
      'image-mb': { type: 'string', default: '200' },
      pulls: { type: 'string', default: '1000' },
    },
    strict: true,
    allowPositionals: false,
  });
  return {
    sizeMiB: positiveInt(values['size-mib'], '--size-mib'),
    layers: positiveInt(values.layers, '--layers'),
    seed: values.seed,
    imageBytes: positiveInt(values['image-mb'], '--image-mb') * 1e6,
    pulls: positiveInt(values.pulls, '--pulls'),
  };
}

/** What the client saw that the functions' counters cannot: presigned GETs and answer bytes. */
interface ClientTally {
  s3Gets: number;
  bytesFromS3: number;
  bytesFromGateway: number;
  /** HTTP API metering units past the first of each answer (512 KB each). */
  extraGatewayUnits: number;
}

const newTally = (): ClientTally => ({
  s3Gets: 0,
  bytesFromS3: 0,
  bytesFromGateway: 0,
  extraGatewayUnits: 0,
});

async function drain(response: Response): Promise<number> {
  let bytes = 0;
  if (!response.body) return bytes;
  for await (const chunk of response.body) bytes += (chunk as Uint8Array).length;
  return bytes;
}

/** Reads a gateway answer's body, counting its bytes and its metering units. */
async function fromGateway(response: Response, tally: ClientTally): Promise<void> {
  const bytes = await drain(response);
  tally.bytesFromGateway += bytes;
  tally.extraGatewayUnits += Math.max(0, Math.ceil(bytes / API_GATEWAY_METERING_BYTES) - 1);
}

async function fromS3(url: string, tally: ClientTally): Promise<void> {
  // No Authorization: a presigned URL refuses a request that carries one.
  const response = await fetch(url);
  tally.s3Gets += 1;
  if (response.status !== 200) throw new Error(`GET presigned S3 URL: ${response.status}`);
  // Not `+= await`: that reads the total before the download, and downloads run side by side.
  const bytes = await drain(response);
  tally.bytesFromS3 += bytes;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface PathClients {
  shape: ServerlessShape;
  token: string;
  work: string;
}

const authOf = (c: PathClients) => ({ Authorization: `Bearer ${c.token}` });

async function dockerCli(c: PathClients, hostPort: string, args: string[]): Promise<void> {
  const result = await docker(hostPort, args, 600_000, { headers: authOf(c) });
  if (result.code !== 0) throw new Error(`docker ${args.join(' ')}: ${result.stderr}`);
}

/** The docker CLI through the streaming function URL: pull, then save (every byte via Lambda). */
async function streamPull(name: string, c: PathClients): Promise<void> {
  const host = c.shape.functionUrl.hostPort;
  await dockerCli(c, host, ['pull', `${name}:1`]);
  await dockerCli(c, host, ['save', '-o', join(c.work, `${name}.tar`), `${name}:1`]);
}

/** The docker CLI's pull through the HTTP API, then the save export from S3 (curl -L's way). */
async function enginePull(name: string, c: PathClients, tally: ClientTally): Promise<void> {
  const gateway = `http://${c.shape.gateway.hostPort}`;
  await dockerCli(c, c.shape.gateway.hostPort, ['pull', `${name}:1`]);
  const response = await fetch(`${gateway}/images/get?names=${name}:1&redirect=1`, {
    headers: authOf(c),
    redirect: 'manual',
  });
  // An export that could not be written before the gateway's deadline is a job to wait on.
  if (response.status === 202) {
    const { id } = (await response.json()) as { id: string };
    for (;;) {
      const waited = await fetch(`${gateway}/cache/jobs/${id}?wait=20`, { headers: authOf(c) });
      const job = (await waited.json()) as { status: string; result?: { url?: string } };
      if (job.status === 'succeeded' && job.result?.url) return fromS3(job.result.url, tally);
      if (job.status === 'failed') throw new Error(`export job ${id} failed`);
    }
  }
  const location = response.headers.get('location');
  await drain(response);
  if (response.status !== 307 || !location) throw new Error(`save: ${response.status}`);
  return fromS3(location, tally);
}

/**
 * A registry client using the cache as its mirror through the HTTP API: the manifest, then the
 * config and layers a few at a time, following each 307 to S3 without the token and coming back
 * after a 429's Retry-After.
 */
async function mirrorPull(name: string, c: PathClients, tally: ClientTally): Promise<void> {
  const repository = `http://${c.shape.gateway.hostPort}/v2/library/${name}`;
  const manifestResponse = await fetch(`${repository}/manifests/1`, {
    headers: {
      ...authOf(c),
      Accept: [
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.oci.image.manifest.v1+json',
      ].join(', '),
    },
  });
  if (manifestResponse.status !== 200) throw new Error(`manifest: ${manifestResponse.status}`);
  const manifest = JSON.parse(await manifestResponse.text()) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const queue = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  const fetchBlob = async (digest: string): Promise<void> => {
    for (;;) {
      const response = await fetch(`${repository}/blobs/${digest}`, {
        headers: authOf(c),
        redirect: 'manual',
      });
      if (response.status === 307) {
        await drain(response);
        return fromS3(response.headers.get('location')!, tally);
      }
      if (response.status === 200) return fromGateway(response, tally);
      if (response.status !== 429) throw new Error(`blob ${digest}: ${response.status}`);
      await drain(response);
      await sleep(Number(response.headers.get('retry-after') ?? '1') * 1000);
    }
  };
  await Promise.all(
    Array.from({ length: BLOB_CONCURRENCY }, async () => {
      for (let digest = queue.shift(); digest; digest = queue.shift()) await fetchBlob(digest);
    }),
  );
}

/** One pull of `name` (tag 1) by each path's client. */
const PULLS: Record<Path, (name: string, c: PathClients, tally: ClientTally) => Promise<void>> = {
  engine: enginePull,
  stream: streamPull,
  mirror: mirrorPull,
};

/** Runs `pull` and adds up what it used, the worker's jobs included. */
async function measure(
  shape: ServerlessShape,
  pull: (tally: ClientTally) => Promise<void>,
): Promise<{ usage: PullUsage; seconds: number }> {
  const { gateway, functionUrl, invokeLocal, containers, workerRunsMs } = shape;
  await invokeLocal.idle();
  for (const container of containers) container.reset();
  const gatewayBefore = gateway.invocations.length;
  const urlBefore = functionUrl.invocations.length;
  const workerBefore = workerRunsMs.length;
  const tally = newTally();
  const started = performance.now();
  await pull(tally);
  await invokeLocal.idle();
  const seconds = (performance.now() - started) / 1000;

  const apiCalls = gateway.invocations.slice(gatewayBefore);
  const streamCalls = functionUrl.invocations.slice(urlBefore);
  const workerRuns = workerRunsMs.slice(workerBefore);
  const gbs = (ms: number, memoryMb: number) => (Math.ceil(ms) / 1000) * (memoryMb / 1024);
  const invoked = apiCalls.filter((c) => c.invoked);
  const streamed = streamCalls.filter((c) => c.invoked);
  let s3PutClass = 0;
  let s3GetClass = tally.s3Gets;
  for (const container of containers) {
    for (const [operation, n] of Object.entries(container.s3.byKey())) {
      if (S3_PUT_CLASS.has(operation)) s3PutClass += n;
      else if (!S3_FREE.has(operation)) s3GetClass += n;
    }
  }
  const usage: PullUsage = {
    lambdaInvocations: invoked.length + streamed.length + workerRuns.length,
    lambdaGbSeconds:
      invoked.reduce((sum, c) => sum + gbs(c.ms, FRONT_MEMORY_MB), 0) +
      streamed.reduce(
        (sum, c) => sum + gbs(Math.max(c.endMs ?? 0, c.handlerSettledMs ?? 0), FRONT_MEMORY_MB),
        0,
      ) +
      workerRuns.reduce((sum, ms) => sum + gbs(ms, WORKER_MEMORY_MB), 0),
    streamedBytesPast6MB: streamed.reduce(
      (sum, c) => sum + Math.max(0, c.bodyBytes - STREAM_FREE_BYTES),
      0,
    ),
    httpApiRequests: apiCalls.length + tally.extraGatewayUnits,
    functionUrlRequests: streamCalls.length,
    s3PutClass,
    s3GetClass,
    dynamoReadUnits: containers.reduce((sum, c) => sum + c.capacity.read, 0),
    dynamoWriteUnits: containers.reduce((sum, c) => sum + c.capacity.write, 0),
    bytesFromLambda: tally.bytesFromGateway + streamed.reduce((sum, c) => sum + c.bodyBytes, 0),
    bytesFromS3: tally.bytesFromS3,
  };
  return { usage, seconds };
}

interface Measured {
  bytes: number;
  usage: PullUsage;
  seconds: number;
}

/**
 * Each quantity as fixed + per byte through the two measurements, read at `bytes`. A slope or an
 * intercept below zero (noise in a time) is taken as zero: the line then goes through the origin
 * and the larger measurement.
 */
function fitAt(small: Measured, large: Measured, bytes: number): PullUsage {
  const fitted = {} as PullUsage;
  for (const field of USAGE_FIELDS) {
    const a = small.usage[field];
    const b = large.usage[field];
    let slope = (b - a) / (large.bytes - small.bytes);
    let intercept = a - slope * small.bytes;
    if (slope < 0) {
      slope = 0;
      intercept = Math.max(a, b);
    } else if (intercept < 0) {
      intercept = 0;
      slope = b / large.bytes;
    }
    fitted[field] = intercept + slope * bytes;
  }
  return fitted;
}

const usd = (value: number) =>
  value === 0 ? '$0' : value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
/** A list price as AWS writes it: no float noise, no exponent. */
const price = (value: number) =>
  `$${Number(value.toPrecision(6))
    .toFixed(10)
    .replace(/\.?0+$/, '')}`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function usageLine(label: string, u: PullUsage, seconds?: number): string {
  return [
    label.padEnd(26),
    u.lambdaInvocations.toFixed(1).padStart(6),
    u.lambdaGbSeconds.toFixed(1).padStart(8),
    mb(u.streamedBytesPast6MB).padStart(10),
    u.httpApiRequests.toFixed(1).padStart(7),
    u.s3PutClass.toFixed(1).padStart(7),
    u.s3GetClass.toFixed(1).padStart(7),
    u.dynamoReadUnits.toFixed(1).padStart(7),
    u.dynamoWriteUnits.toFixed(1).padStart(7),
    mb(u.bytesFromLambda).padStart(10),
    mb(u.bytesFromS3).padStart(10),
    seconds === undefined ? '' : seconds.toFixed(1).padStart(7),
  ].join(' ');
}

const USAGE_HEADER = `${'path, phase, image'.padEnd(26)} ${'invoc'.padStart(6)} ${'GB-s'.padStart(8)} ${'stream>6MB'.padStart(10)} ${'HTTPAPI'.padStart(7)} ${'S3 PUT'.padStart(7)} ${'S3 GET'.padStart(7)} ${'RRU'.padStart(7)} ${'WRU'.padStart(7)} ${'fromLambda'.padStart(10)} ${'from S3'.padStart(10)} ${'s'.padStart(7)}`;

function costTable(
  results: Map<string, { small: Measured; large: Measured }>,
  imageBytesTarget: number,
  pulls: number,
): string[] {
  const header = `${'path'.padEnd(16)} ${'Lambda'.padStart(9)} ${'stream'.padStart(9)} ${'HTTP API'.padStart(9)} ${'S3 req'.padStart(9)} ${'DynamoDB'.padStart(9)} ${'same region'.padStart(12)} ${'egress out'.padStart(11)} ${'outside AWS'.padStart(12)}`;
  const lines = [header, '-'.repeat(header.length)];
  const row = (label: string, same: PullCost, outside: PullCost, note = '') =>
    lines.push(
      `${label.padEnd(16)} ${usd(same.lambda * pulls).padStart(9)} ${usd(same.streaming * pulls).padStart(9)} ` +
        `${usd(same.httpApi * pulls).padStart(9)} ${usd(same.s3Requests * pulls).padStart(9)} ` +
        `${usd(same.dynamo * pulls).padStart(9)} ${usd(same.total * pulls).padStart(12)} ` +
        `${usd(outside.egress * pulls).padStart(11)} ${usd(outside.total * pulls).padStart(12)}${note}`,
    );
  for (const [key, { small, large }] of results) {
    const usage = fitAt(small, large, imageBytesTarget);
    const [path] = key.split(' ');
    // The stream's bytes from Lambda are the tarball docker save receives.
    const pastCap = path === 'stream' ? usage.bytesFromLambda - STREAMED_RESPONSE_CAP : 0;
    if (pastCap > STREAMED_RESPONSE_CAP * 0.05) {
      lines.push(
        `${key.padEnd(16)} cannot: the tarball is past the function URL's ${STREAMED_RESPONSE_CAP / 1e6} MB streamed-response cap`,
      );
      continue;
    }
    const cost = (client: Client, edge = false) => pullCost(usage, client, edge);
    row(key, cost('same-region'), cost('internet'));
    if (pastCap > 0) {
      lines.push(
        `  (its tarball is ${(pastCap / 1e3).toFixed(0)} KB past the ${STREAMED_RESPONSE_CAP / 1e6} MB streamed-response cap: docker save gets the 413 naming the S3 path; this is the cost of an image just under it)`,
      );
    }
    if (path === 'stream') {
      row(
        `  via CloudFront`,
        cost('same-region'),
        cost('internet', true),
        ' (computed: the edge in front, see below)',
      );
    }
  }
  for (const phase of ['cold', 'warm'] as const) {
    const same = ecrPullCost(imageBytesTarget, 'same-region');
    const outside = ecrPullCost(imageBytesTarget, 'internet');
    const zero = { lambda: 0, streaming: 0, httpApi: 0, s3Requests: 0, dynamo: 0 };
    row(
      `ECR ptc ${phase}`,
      { ...zero, egress: same, total: same },
      { ...zero, egress: outside, total: outside },
    );
  }
  return lines;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const sizes = [options.sizeMiB, options.sizeMiB * 2];
  const out: string[] = [];
  const work = await tempDir('bench-costs');
  try {
    log('starting DynamoDB Local, fauxqs and docker-registry ...');
    const emulators = await awsEmulators();
    const registry = await startRegistry();
    try {
      const { names, token } = await freshStackResources(emulators);
      const shape = await startServerlessShape(emulators, names, registry.url);
      const clients = { shape, token, work: work.path };
      const measured = new Map<string, Measured[]>();
      try {
        // Each container's first requests build its composition and warm the JIT: not a pull's.
        const warmup = await benchImage({
          seed: `${options.seed}-warmup`,
          sizeMiB: 2,
          layers: 1,
          gzipLevel: 1,
        });
        await pushBenchImage(registry, warmup, 'library/cost-warmup', '1');
        for (const path of PATHS) await PULLS[path]('cost-warmup', clients, newTally());
        await shape.invokeLocal.idle();
        for (const sizeMiB of sizes) {
          for (const path of PATHS) {
            // A different image per path and size, so each cold pull finds nothing cached.
            const image: BenchImage = await benchImage({
              seed: `${options.seed}-${path}`,
              sizeMiB,
              layers: options.layers,
              gzipLevel: 1,
            });
            const name = `cost-${path}-${sizeMiB}`;
            await pushBenchImage(registry, image, `library/${name}`, '1');
            for (const phase of ['cold', 'warm'] as Phase[]) {
              log(`${path} ${phase}, ${sizeMiB} MiB ...`);
              const { usage, seconds } = await measure(shape, (tally) =>
                PULLS[path](name, clients, tally),
              );
              const key = `${path} ${phase}`;
              measured.set(key, [
                ...(measured.get(key) ?? []),
                { bytes: imageBytes(image), usage, seconds },
              ]);
              log(`  ${usageLine(key, usage, seconds)}`);
            }
          }
        }
      } finally {
        await shape.close();
      }

      const results = new Map(
        [...measured].map(([key, [small, large]]) => [key, { small: small!, large: large! }]),
      );
      out.push(
        `Cost per pull, measured on the local deployed shape (DynamoDB Local, fauxqs, docker-registry; Node ${process.version}),`,
        `images of ${sizes.join(' and ')} MiB in ${options.layers} gzip layers, one per path; prices ${REGION} as of ${PRICES_AS_OF}.`,
        '',
        'Measured per pull (invoc: Lambda invocations; GB-s: billed ms x memory; stream>6MB: streamed bytes billed;',
        'HTTPAPI: requests in 512 KB units; S3 PUT/GET: requests by price class, presigned GETs included;',
        'RRU/WRU: DynamoDB read/write units; fromLambda/from S3: bytes the client received; s: wall time):',
        USAGE_HEADER,
      );
      for (const [key, { small, large }] of results) {
        out.push(usageLine(`${key}, ${mb(small.bytes)}`, small.usage, small.seconds));
        out.push(usageLine(`${key}, ${mb(large.bytes)}`, large.usage, large.seconds));
        out.push(
          usageLine(
            `  fitted at ${mb(options.imageBytes)}`,
            fitAt(small, large, options.imageBytes),
          ),
        );
      }
      for (const [scale, label] of [
        [1, ''],
        [10, ' (ten times larger image)'],
      ] as const) {
        const bytes = options.imageBytes * scale;
        out.push(
          '',
          `${options.pulls.toLocaleString('en-US')} pulls of a ${mb(bytes)} image${label}: same region = EC2 runners in ${REGION} (no transfer charge), outside AWS = + transfer out`,
          ...costTable(results, bytes, options.pulls),
        );
      }
      const storage = storagePerMonth(options.imageBytes);
      out.push(
        '',
        `Storage, apart from pulls: one ${mb(options.imageBytes)} image kept a month costs ${usd(storage.s3)} in S3, ${usd(storage.ecr)} in ECR.`,
        `${(options.pulls * 10).toLocaleString('en-US')} pulls cost ten times the table above (request and transfer lines are per pull; storage does not grow).`,
        'ECR ptc: ECR pull-through cache; its API requests, its fill from the upstream and same-region transfer are free.',
        `via CloudFront: the stream front behind CloudFront (infra/edge.ts), computed from the same counts: CloudFront's transfer out (${price(PRICES.cloudFrontEgressGb.usd)}/GB instead of ${price(PRICES.internetEgressGb.usd)}/GB) and its requests (${price(PRICES.cloudFrontRequest.usd * 1e4)} per 10,000) in "egress out".`,
        '',
        `Prices (${REGION}, ${PRICES_AS_OF}; GB = ${GB} bytes):`,
        ...Object.entries(PRICES).map(
          ([name, p]) =>
            `  ${name}: ${price(p.usd)} per ${p.per}; ${p.source}; checked offline: ${p.checked}`,
        ),
      );
    } finally {
      await registry.stop();
      await stopAwsEmulators();
    }
  } finally {
    await work.cleanup();
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

runMain('bench:costs', main);
