/**
 * Lambda containers in one benchmark process, each with its request counters. On AWS every
 * function (api, streamapi, worker, prune) runs in containers of its own, each with its own
 * composition (lib/lambda/runtime.ts builds one per module instance): clients, caches and the
 * in-memory JobSignals that let a follower in the same process skip the catalog. Here each
 * container imports the function's module graph under a tsx namespace of its own, so the
 * api's follower of a job the worker runs polls the catalog, as it does on AWS.
 *
 * Counted per container, retries included (middleware after the SDK's retry step, like
 * lib/adapters/dynamo/request-counter.ts): S3 requests per operation, and DynamoDB requests per
 * Catalog method that sent them (the outermost one, kept in an AsyncLocalStorage), which is how
 * a job's own writes and polls are told apart from the pull's.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { register } from 'tsx/esm/api';
import type { DynamoCatalog } from '../lib/adapters/dynamo-catalog.ts';
import type { S3BlobStore } from '../lib/adapters/s3-blob-store.ts';
import type { lambdaRuntime } from '../lib/lambda/runtime.ts';

/** Requests per key (an operation, a catalog method), sorted by key when read. */
export class RequestTally {
  readonly #counts = new Map<string, number>();

  /** Counts each request `client` sends under `keyOf(command name without "Command")`. */
  static attach(client: S3Client | DynamoDBClient, keyOf: (operation: string) => string) {
    const tally = new RequestTally();
    (client as S3Client).middlewareStack.add(
      (next, context) => async (args) => {
        const key = keyOf((context.commandName ?? 'Unknown').replace(/Command$/, ''));
        tally.#counts.set(key, (tally.#counts.get(key) ?? 0) + 1);
        return next(args);
      },
      { step: 'deserialize', name: 'benchRequestTally', override: true },
    );
    return tally;
  }

  get total(): number {
    return [...this.#counts.values()].reduce((a, b) => a + b, 0);
  }

  byKey(): Record<string, number> {
    return Object.fromEntries([...this.#counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  reset(): void {
    this.#counts.clear();
  }
}

/** The DynamoDB operations that can report the capacity they consumed, read or write. */
const CAPACITY_KIND: Record<string, 'read' | 'write'> = {
  GetItem: 'read',
  BatchGetItem: 'read',
  Query: 'read',
  Scan: 'read',
  TransactGetItems: 'read',
  PutItem: 'write',
  UpdateItem: 'write',
  DeleteItem: 'write',
  BatchWriteItem: 'write',
  TransactWriteItems: 'write',
};

/**
 * Read and write request units a DynamoDB client consumed, which is what on-demand DynamoDB
 * bills (a request count is not: a transaction costs two units per item, an eventually
 * consistent read half of one). Every capable request asks for ReturnConsumedCapacity TOTAL and
 * the answer's units are added up; a write refused by its condition returns no capacity but is
 * billed, so it counts one write unit per item it named.
 */
export class CapacityTally {
  read = 0;
  write = 0;

  static attach(client: DynamoDBClient): CapacityTally {
    const tally = new CapacityTally();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const operation = (context.commandName ?? '').replace(/Command$/, '');
        const kind = CAPACITY_KIND[operation];
        if (!kind) return next(args);
        const input = args.input as { ReturnConsumedCapacity?: string; TransactItems?: unknown[] };
        input.ReturnConsumedCapacity = 'TOTAL';
        try {
          const result = await next(args);
          const consumed = (result.output as { ConsumedCapacity?: unknown }).ConsumedCapacity;
          const units = [consumed]
            .flat()
            .reduce<number>(
              (sum, c) => sum + ((c as { CapacityUnits?: number } | undefined)?.CapacityUnits ?? 0),
              0,
            );
          tally[kind] += units;
          return result;
        } catch (error) {
          if (kind === 'write') tally.write += input.TransactItems?.length ?? 1;
          throw error;
        }
      },
      { step: 'initialize', name: 'benchCapacityTally', override: true },
    );
    return tally;
  }

  reset(): void {
    this.read = 0;
    this.write = 0;
  }
}

export interface LambdaContainer<M> {
  /** The function: api, streamapi, worker, prune. */
  name: string;
  /** The function's module (its handler), imported in this container's namespace. */
  module: M;
  /** DynamoDB requests per operation (the catalog's own counter). */
  catalog: DynamoCatalog;
  /** DynamoDB requests per Catalog method. */
  dynamoByMethod: RequestTally;
  /** S3 requests per operation. */
  s3: RequestTally;
  /** DynamoDB read and write request units. */
  capacity: CapacityTally;
  reset(): void;
  /** Closes its composition (the clients; waits for jobs it runs itself). */
  close(): Promise<void>;
}

const OUTSIDE_THE_CATALOG = '(no catalog method)';

/**
 * Imports `functionModule` (a path relative to this file) under a namespace of its own and
 * builds its composition from `env` (the function's environment in the stack) before its
 * first invocation, so the counters are on its clients from the start.
 */
export async function startLambdaContainer<M>(
  name: string,
  functionModule: string,
  env: NodeJS.ProcessEnv,
): Promise<LambdaContainer<M>> {
  const scope = register({ namespace: `bench-lambda-${name}` });
  const load = (specifier: string) => scope.import(specifier, import.meta.url);
  const { DynamoCatalog: Catalog } = (await load('../lib/adapters/dynamo-catalog.ts')) as {
    DynamoCatalog: typeof DynamoCatalog;
  };
  const runtime = (await load('../lib/lambda/runtime.ts')) as {
    lambdaRuntime: typeof lambdaRuntime;
  };
  // The composition makes its DynamoDB client here and keeps it private: catch it on the way.
  const clientFor = Catalog.clientFor;
  let client: DynamoDBClient | undefined;
  Catalog.clientFor = (sdk) => {
    client = clientFor.call(Catalog, sdk);
    return client;
  };
  let composition: Awaited<ReturnType<typeof lambdaRuntime>>['composition'];
  try {
    ({ composition } = await runtime.lambdaRuntime(env));
  } finally {
    Catalog.clientFor = clientFor;
  }
  if (!client) throw new Error(`${name}: the composition made no DynamoDB client`);
  const { context } = composition;
  const catalog = context.catalog as DynamoCatalog;
  const method = labelMethods(catalog);
  const dynamoByMethod = RequestTally.attach(
    client,
    () => method.getStore() ?? OUTSIDE_THE_CATALOG,
  );
  const s3 = RequestTally.attach((context.blobs as S3BlobStore).client, (operation) => operation);
  const capacity = CapacityTally.attach(client);
  return {
    name,
    module: (await load(functionModule)) as M,
    catalog,
    dynamoByMethod,
    s3,
    capacity,
    reset() {
      catalog.requests.reset();
      dynamoByMethod.reset();
      s3.reset();
      capacity.reset();
    },
    close: () => composition.close(),
  };
}

/**
 * Runs every method of `target` (the instance: its holders call through it) inside a label
 * with the method's name, unless a method of it is already running (`commitImage` calling
 * another keeps the outer name).
 */
function labelMethods(target: object): AsyncLocalStorage<string> {
  const label = new AsyncLocalStorage<string>();
  const prototype = Object.getPrototypeOf(target) as object;
  for (const name of Object.getOwnPropertyNames(prototype)) {
    const descriptor = Object.getOwnPropertyDescriptor(prototype, name);
    if (name === 'constructor' || typeof descriptor?.value !== 'function') continue;
    const original = descriptor.value as (...args: unknown[]) => unknown;
    Object.defineProperty(target, name, {
      configurable: true,
      value: (...args: unknown[]) =>
        label.getStore() === undefined
          ? label.run(name, () => original.apply(target, args))
          : original.apply(target, args),
    });
  }
  return label;
}
