import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COUNTER_NAMES, type CounterName } from '../lib/metrics/names.ts';
import type { ApiGatewayLocal } from './support/api-gateway-local.ts';
import { type GeneratedImage, generateImage } from './support/image-factory.ts';
import { startApiFunctionGateway } from './support/lambda-fronts.ts';
import { pushImage } from './support/push.ts';
import { type RecordingProxy, startRecordingProxy } from './support/recording-proxy.ts';
import { type RegistryServer, startRegistry } from './support/registry-server.ts';
import {
  type ServerlessStack,
  startServerlessStack,
  stopServerlessProcess,
} from './support/serverless-stack.ts';

/**
 * The Lambda side of /metrics: functions/api.ts behind the local API Gateway, on DynamoDB Local
 * and fauxqs, pulled through by the real docker CLI, with a recording proxy in front of the
 * registry that plays Docker Hub. Every invocation must leave one Embedded Metric Format line
 * on stdout (what CloudWatch Logs turns into metrics without an API call), and the lines
 * together must say what the clients did and what the proxy saw.
 */
afterAll(stopServerlessProcess);

interface EmfLine {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
  };
  [key: string]: unknown;
}

describe('the api function writes one EMF line per invocation', () => {
  let hub: RegistryServer;
  let upstream: RecordingProxy;
  let stack: ServerlessStack;
  let gateway: ApiGatewayLocal;
  let image: GeneratedImage;
  const lines: EmfLine[] = [];
  const write = process.stdout.write.bind(process.stdout);

  beforeAll(async () => {
    hub = await startRegistry();
    image = await generateImage({ seed: 'emf', format: 'docker', layers: 2 });
    await pushImage({ url: hub.url, repository: 'library/app' }, image, { tags: ['1'] });
    upstream = await startRecordingProxy(hub.url);
    stack = await startServerlessStack('lambda-emf', { registries: { 'docker.io': upstream.url } });
    gateway = await startApiFunctionGateway();
    // Powertools writes through a Console on process.stdout: read what CloudWatch Logs would.
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const emf = String(chunk)
        .split('\n')
        .filter((text) => text.includes('"_aws"'));
      for (const text of emf) lines.push(JSON.parse(text) as EmfLine);
      // The EMF lines are kept here (the test's output stays readable), the rest passes on.
      if (emf.length > 0) return true;
      return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
  });

  afterAll(async () => {
    process.stdout.write = write;
    await gateway?.close();
    await stack?.close();
    await upstream?.close();
    await hub?.stop();
  });

  const sum = (name: CounterName) =>
    lines.reduce((total, line) => total + ((line[name] as number | undefined) ?? 0), 0);

  it('names the namespace, the dimension and every counter, with units', async () => {
    const response = await fetch(`${gateway.url}/_ping`);
    expect(response.status).toBe(200);
    expect(lines).toHaveLength(1);
    const [line] = lines;
    const [directive] = line!._aws.CloudWatchMetrics;
    expect(directive!.Namespace).toBe('ImageCache');
    expect(directive!.Dimensions).toEqual([['service']]);
    expect(line!.service).toBe('image-cache');
    expect(directive!.Metrics.map((m) => m.Name).sort()).toEqual(
      [...COUNTER_NAMES, 'jobsSucceeded', 'jobsFailed'].sort(),
    );
    expect(directive!.Metrics.find((m) => m.Name === 'bytesFetched')).toMatchObject({
      Unit: 'Bytes',
    });
    expect(line!.requests).toBe(1);
  });

  it('a pull through the docker CLI: requests, misses, bytes and upstream GETs add up', async () => {
    const pulled = await stack.docker(gateway.hostPort, ['pull', 'app:1']);
    expect(pulled.code).toBe(0);
    // A last request, so work the pull's job finished after its answer is written too.
    expect((await fetch(`${gateway.url}/_ping`)).status).toBe(200);
    expect(lines).toHaveLength(gateway.invocations.length);
    expect(sum('requests')).toBe(gateway.invocations.length);
    expect(sum('bytesFetched')).toBe(image.blobs.reduce((total, blob) => total + blob.size, 0));
    expect(sum('upstreamRequests')).toBe(upstream.exchanges.length);
    const manifestGets = upstream.exchanges.filter(
      (e) => e.method === 'GET' && e.path.includes('/manifests/'),
    ).length;
    expect(manifestGets).toBe(1);
    expect(sum('hubManifestGets')).toBe(manifestGets);
    expect(sum('pulls')).toBe(1);
    // Behind API Gateway the pull ran as a job (in this process: no queue is configured), which
    // counts the lookups of the Engine API pull that started it.
    expect(lines.reduce((total, line) => total + (line.jobsSucceeded as number), 0)).toBe(1);
    expect(sum('manifestMisses')).toBe(1);
    expect(sum('blobMisses')).toBe(image.blobs.length);
    expect(sum('manifestHits') + sum('blobHits')).toBe(0);
  });

  it('a second pull is counted as hits, with no upstream request', async () => {
    const before = upstream.exchanges.length;
    expect((await stack.docker(gateway.hostPort, ['pull', 'app:1'])).code).toBe(0);
    expect(upstream.exchanges.length).toBe(before);
    expect(sum('manifestHits')).toBe(1);
    expect(sum('blobHits')).toBe(image.blobs.length);
    expect(sum('manifestMisses')).toBe(1);
    expect(sum('upstreamRequests')).toBe(before);
    expect(lines).toHaveLength(gateway.invocations.length);
  });

  it('the prune and worker functions write theirs, from the same container', async () => {
    const prune = (await import('../functions/prune.ts')).handler;
    const worker = (await import('../functions/worker.ts')).handler;
    const before = lines.length;
    const report = await prune();
    expect(lines).toHaveLength(before + 1);
    expect(lines.at(-1)!.gcRuns).toBe(1);
    expect(lines.at(-1)!.bytesReclaimed).toBe(report.gc.deleted.bytes);
    // A job nobody created: nothing to run, and still one line (of zeros) for the invocation.
    expect(await worker({ jobId: '0123456789abcdef0123456789abcdef' })).toEqual({
      jobId: '0123456789abcdef0123456789abcdef',
      status: 'not claimed',
    });
    expect(lines).toHaveLength(before + 2);
    expect(lines.at(-1)!.requests).toBe(0);
  });
});
