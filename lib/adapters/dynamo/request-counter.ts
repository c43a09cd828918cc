import type { ConsumedCapacity, DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Counts the HTTP requests a DynamoDB client sends, per operation, retries included (requests
 * are what DynamoDB bills), and, once `measureCapacity` was called, the capacity units DynamoDB
 * reports as consumed. Benchmarks print both per command; tests assert which operations a
 * request sent (no Scan on a request path).
 */
export class RequestCounter {
  readonly #counts = new Map<string, number>();
  readonly #capacity = new Map<string, number>();
  #measuring = false;

  /**
   * Installs the middleware: counting sits after the SDK's retry step, so every attempt counts;
   * capacity is asked for and read around the whole command, where its final output is.
   */
  static attach(client: DynamoDBClient): RequestCounter {
    const counter = new RequestCounter();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        counter.#count(operationOf(context.commandName));
        return next(args);
      },
      { step: 'deserialize', name: 'imageCacheRequestCounter', override: true },
    );
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (!counter.#measuring) return next(args);
        const input = args.input as { ReturnConsumedCapacity?: string };
        input.ReturnConsumedCapacity = 'TOTAL';
        const result = await next(args);
        const consumed = (
          result.output as { ConsumedCapacity?: ConsumedCapacity | ConsumedCapacity[] }
        ).ConsumedCapacity;
        counter.#addCapacity(operationOf(context.commandName), consumed);
        return result;
      },
      { step: 'initialize', name: 'imageCacheCapacityCounter', override: true },
    );
    return counter;
  }

  /** From now on every command asks for ReturnConsumedCapacity TOTAL and its units are added. */
  measureCapacity(): void {
    this.#measuring = true;
  }

  #count(operation: string): void {
    this.#counts.set(operation, (this.#counts.get(operation) ?? 0) + 1);
  }

  #addCapacity(operation: string, consumed: ConsumedCapacity | ConsumedCapacity[] | undefined) {
    const units = [consumed ?? []].flat().reduce((sum, c) => sum + (c.CapacityUnits ?? 0), 0);
    this.#capacity.set(operation, (this.#capacity.get(operation) ?? 0) + units);
  }

  get total(): number {
    let total = 0;
    for (const count of this.#counts.values()) total += count;
    return total;
  }

  /** Capacity units consumed since the last reset (0 unless measureCapacity was called). */
  get capacity(): number {
    let total = 0;
    for (const units of this.#capacity.values()) total += units;
    return total;
  }

  /** Operation name (`GetItem`, `TransactWriteItems`, ...) to requests sent, sorted by name. */
  byOperation(): Record<string, number> {
    return Object.fromEntries([...this.#counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  /** Operation name to capacity units consumed, sorted by name. */
  capacityByOperation(): Record<string, number> {
    return Object.fromEntries([...this.#capacity].sort(([a], [b]) => a.localeCompare(b)));
  }

  reset(): void {
    this.#counts.clear();
    this.#capacity.clear();
  }
}

function operationOf(commandName: string | undefined): string {
  return (commandName ?? 'Unknown').replace(/Command$/, '');
}
