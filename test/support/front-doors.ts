/**
 * Each of the three HTTP front doors onto the router, started on 127.0.0.1 against real back
 * ends with access control on, behind one shape the front-door suite
 * (test/conformance/front-door-suite.ts) drives:
 *   - node: lib/server.ts on the embedded backend (files + SQLite), `--require-auth`;
 *   - api-gateway: functions/api.ts behind the local HTTP API, on DynamoDB Local + fauxqs;
 *   - function-url: functions/api-stream.ts behind the local streaming function URL, same.
 * Upstreams: a real docker-registry as docker.io (the suite pushes generated images to it) and
 * a FakeRegistry as faulty.example, for failures the real one cannot make.
 */
import type { Digest } from '../../lib/digest.ts';
import { API_GATEWAY_PAYLOAD_LIMIT } from './api-gateway-local.ts';
import { startCacheServer } from './cache-server.ts';
import { FakeRegistry } from './fake-registry.ts';
import { startApiFunctionGateway, startApiStreamFunctionUrl } from './lambda-fronts.ts';
import { LAMBDA_REQUEST_LIMIT } from './lambda-http-event.ts';
import { type RegistryServer, startRegistry } from './registry-server.ts';
import { startServerlessStack, stopServerlessProcess } from './serverless-stack.ts';

export type FrontDoorKind = 'node' | 'api-gateway' | 'function-url';

/** The registry name under which the FakeRegistry is allow-listed. */
export const FAULTY_REGISTRY = 'faulty.example';

/** The node front's load limit: set low, so its 413 costs a megabyte rather than 64 GiB. */
const NODE_BODY_LIMIT = 1024 * 1024;

export interface FrontDoorUnderTest {
  kind: FrontDoorKind;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Bearer tokens by scope, in the backend's catalog. */
  tokens: { admin: string; read: string };
  /** A request body past this many bytes gets this front's own 413. */
  bodyLimit: number;
  /**
   * Whether the front frames every body chunked, so a GET cannot carry Content-Length (the
   * function URL streams; a HEAD still carries it).
   */
  streamsChunked: boolean;
  /** docker.io: the real registry the suite pushes its images to. */
  registry: RegistryServer;
  /** faulty.example: a registry that breaks on demand. */
  faulty: FakeRegistry;
  /** Digests of the manifests the backend's catalog holds, to see a side effect (or none). */
  manifestDigests(): Promise<Digest[]>;
  /** Stops the front, its back end and the upstreams (for the file's afterAll). */
  close(): Promise<void>;
}

export async function startFrontDoor(kind: FrontDoorKind): Promise<FrontDoorUnderTest> {
  const faulty = await FakeRegistry.start();
  return kind === 'node' ? startNodeFront(faulty) : startLambdaFront(kind, faulty);
}

async function startNodeFront(faulty: FakeRegistry): Promise<FrontDoorUnderTest> {
  const registry = await startRegistry();
  const server = await startCacheServer({
    registries: `docker.io=${registry.url},${FAULTY_REGISTRY}=${faulty.url.origin}`,
    flags: ['--require-auth'],
    env: { IMAGE_CACHE_MAX_LOAD_BYTES: String(NODE_BODY_LIMIT) },
  });
  return {
    kind: 'node',
    url: server.url,
    tokens: { admin: await server.token('admin'), read: await server.token('read') },
    bodyLimit: NODE_BODY_LIMIT,
    streamsChunked: false,
    registry,
    faulty,
    manifestDigests: () => server.manifestDigests(),
    close: async () => {
      await server.close();
      await registry.stop();
      await faulty.close();
    },
  };
}

async function startLambdaFront(
  kind: 'api-gateway' | 'function-url',
  faulty: FakeRegistry,
): Promise<FrontDoorUnderTest> {
  const stack = await startServerlessStack(`front-door-${kind}`, {
    registries: { [FAULTY_REGISTRY]: faulty.url.origin },
  });
  const door =
    kind === 'api-gateway' ? await startApiFunctionGateway() : await startApiStreamFunctionUrl();
  return {
    kind,
    url: door.url,
    tokens: stack.tokens,
    // API Gateway's 10 MB payload; a function URL's 6 MB invocation payload.
    bodyLimit: kind === 'api-gateway' ? API_GATEWAY_PAYLOAD_LIMIT : LAMBDA_REQUEST_LIMIT,
    streamsChunked: kind === 'function-url',
    registry: stack.registry,
    faulty,
    manifestDigests: async () =>
      (await stack.adapters.catalog.listManifests()).map((m) => m.digest).sort(),
    close: async () => {
      await door.close();
      await stack.close();
      await faulty.close();
      await stopServerlessProcess();
    },
  };
}
