import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Counts the HTTP requests a DynamoDB client sends, per operation, retries included (requests
 * are what DynamoDB bills). Benchmarks attach one and print requests per pull and per GC.
 */
export class RequestCounter {
  readonly #counts = new Map<string, number>();

  /** Installs the counting middleware; it sits after the SDK's retry step, so every attempt counts. */
  static attach(client: DynamoDBClient): RequestCounter {
    const counter = new RequestCounter();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        counter.#count((context.commandName ?? 'Unknown').replace(/Command$/, ''));
        return next(args);
      },
      { step: 'deserialize', name: 'imageCacheRequestCounter', override: true },
    );
    return counter;
  }

  #count(operation: string): void {
    this.#counts.set(operation, (this.#counts.get(operation) ?? 0) + 1);
  }

  get total(): number {
    let total = 0;
    for (const count of this.#counts.values()) total += count;
    return total;
  }

  /** Operation name (`GetItem`, `TransactWriteItems`, ...) to requests sent, sorted by name. */
  byOperation(): Record<string, number> {
    return Object.fromEntries([...this.#counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  reset(): void {
    this.#counts.clear();
  }
}
