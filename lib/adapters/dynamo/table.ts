/**
 * Thin access to the one table: consistent reads, paginated queries and scans, conditional
 * single-item writes and transactions. This is the boundary where vendor errors stop: callers
 * get outcomes (`ok`, which action failed, the old item) and turn them into domain errors;
 * anything unexpected propagates as it is and the HTTP layer answers 500.
 */
import {
  BatchGetItemCommand,
  type BatchGetItemCommandOutput,
  BatchWriteItemCommand,
  type BatchWriteItemCommandOutput,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  type DeleteItemCommandInput,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type PutItemCommandInput,
  QueryCommand,
  type QueryCommandInput,
  ScanCommand,
  TransactionCanceledException,
  TransactionConflictException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type UpdateItemCommandInput,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb';
import { ConflictError } from '../../errors.ts';
import { type Item, keyItem } from './items.ts';
import type { Key } from './schema.ts';

/** Attempts for a write that keeps losing to concurrent transactions on the same items. */
export const CONFLICT_ATTEMPTS = 30;

export type WriteOutcome = { ok: true; attributes?: Item } | { ok: false; old?: Item };

export type TransactOutcome =
  | { ok: true }
  /** `failed`: indexes of actions whose condition failed. `conflict`: lost to another writer. */
  | { ok: false; failed: number[]; conflict: boolean };

type Expression = Pick<
  UpdateItemCommandInput,
  'ExpressionAttributeNames' | 'ExpressionAttributeValues' | 'ConditionExpression'
>;

/** Cancellation reasons that no retry can cure (TransactWriteItems' CancellationReason codes). */
const UNRETRYABLE_REASONS = new Set(['ValidationError', 'ItemCollectionSizeLimitExceeded']);

export class Table {
  readonly client: DynamoDBClient;
  readonly name: string;
  readonly scanSegments: number;

  constructor(client: DynamoDBClient, name: string, scanSegments: number) {
    this.client = client;
    this.name = name;
    this.scanSegments = scanSegments;
  }

  async get(key: Key, projection?: string[]): Promise<Item | undefined> {
    const { Item: item } = await this.client.send(
      new GetItemCommand({
        TableName: this.name,
        Key: keyItem(key),
        ConsistentRead: true,
        ...projectionOf(projection),
      }),
    );
    return item;
  }

  /** Consistent reads of many keys (100 per request); answers items by `pk\nsk`. */
  async batchGet(wanted: Key[], projection?: string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    const unique = [...new Map(wanted.map((k) => [keyId(k), k])).values()];
    for (let i = 0; i < unique.length; i += 100) {
      let request: Item[] | undefined = unique.slice(i, i + 100).map(keyItem);
      for (let attempt = 0; request && request.length > 0; attempt++) {
        if (attempt > 0) await backoff(attempt);
        const output: BatchGetItemCommandOutput = await this.client.send(
          new BatchGetItemCommand({
            RequestItems: {
              [this.name]: { Keys: request, ConsistentRead: true, ...projectionOf(projection) },
            },
          }),
        );
        for (const item of output.Responses?.[this.name] ?? []) found.set(itemId(item), item);
        request = output.UnprocessedKeys?.[this.name]?.Keys;
      }
    }
    return found;
  }

  /** Every page of a consistent Query, or pages until `max` items are in. */
  async query(
    input: Omit<QueryCommandInput, 'TableName' | 'ConsistentRead'>,
    max = Number.POSITIVE_INFINITY,
  ): Promise<Item[]> {
    const items: Item[] = [];
    let start: Item | undefined;
    do {
      const output = await this.client.send(
        new QueryCommand({
          ...input,
          TableName: this.name,
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      items.push(...(output.Items ?? []));
      start = output.LastEvaluatedKey;
    } while (start && items.length < max);
    return items;
  }

  /** A consistent parallel Scan of the items of the given kinds, every page of every segment. */
  async scanKinds(kinds: string[]): Promise<Item[]> {
    const values = Object.fromEntries(kinds.map((k, i) => [`:k${i}`, { S: k }]));
    const segments = Array.from({ length: this.scanSegments }, async (_, segment) => {
      const items: Item[] = [];
      let start: Item | undefined;
      do {
        const output = await this.client.send(
          new ScanCommand({
            TableName: this.name,
            ConsistentRead: true,
            Segment: segment,
            TotalSegments: this.scanSegments,
            FilterExpression: `#kind IN (${Object.keys(values).join(', ')})`,
            ExpressionAttributeNames: { '#kind': 'kind' },
            ExpressionAttributeValues: values,
            ExclusiveStartKey: start,
          }),
        );
        items.push(...(output.Items ?? []));
        start = output.LastEvaluatedKey;
      } while (start);
      return items;
    });
    return (await Promise.all(segments)).flat();
  }

  async put(item: Item, expression: Expression = {}): Promise<WriteOutcome> {
    const input: PutItemCommandInput = {
      TableName: this.name,
      Item: item,
      ...expression,
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    };
    return this.#conditional(async () => {
      await this.client.send(new PutItemCommand(input));
      return {};
    });
  }

  async update(
    key: Key,
    update: string,
    expression: Expression,
    returnValues?: UpdateItemCommandInput['ReturnValues'],
  ): Promise<WriteOutcome> {
    const input: UpdateItemCommandInput = {
      TableName: this.name,
      Key: keyItem(key),
      UpdateExpression: update,
      ...expression,
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      ...(returnValues && { ReturnValues: returnValues }),
    };
    return this.#conditional(async () => {
      const output = await this.client.send(new UpdateItemCommand(input));
      return { attributes: output.Attributes };
    });
  }

  async delete(key: Key, expression: Expression = {}): Promise<WriteOutcome> {
    const input: DeleteItemCommandInput = {
      TableName: this.name,
      Key: keyItem(key),
      ...expression,
      ReturnValues: 'ALL_OLD',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    };
    return this.#conditional(async () => {
      const output = await this.client.send(new DeleteItemCommand(input));
      return { attributes: output.Attributes };
    });
  }

  /**
   * A single-item write whose condition failure is an answer, not an error. A write that
   * collides with a transaction in flight on the same item is retried here (the SDK does not
   * count TransactionConflictException as retryable).
   */
  async #conditional(send: () => Promise<{ attributes?: Item }>): Promise<WriteOutcome> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { attributes } = await send();
        return attributes ? { ok: true, attributes } : { ok: true };
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) {
          return error.Item ? { ok: false, old: error.Item } : { ok: false };
        }
        if (!(error instanceof TransactionConflictException)) throw error;
        if (attempt + 1 >= CONFLICT_ATTEMPTS) throw lostRace(error);
        await backoff(attempt);
      }
    }
  }

  /** All or nothing; at most 100 actions and 4 MB (callers size their batches). */
  async transact(actions: TransactWriteItem[]): Promise<TransactOutcome> {
    try {
      await this.client.send(new TransactWriteItemsCommand({ TransactItems: actions }));
      return { ok: true };
    } catch (error) {
      if (error instanceof TransactionConflictException) {
        return { ok: false, failed: [], conflict: true };
      }
      if (!(error instanceof TransactionCanceledException)) throw error;
      const reasons = error.CancellationReasons ?? [];
      // An item too large or otherwise invalid fails the same way every time: not a race.
      if (reasons.some((reason) => reason.Code && UNRETRYABLE_REASONS.has(reason.Code)))
        throw error;
      const failed: number[] = [];
      let conflict = false;
      reasons.forEach((reason, index) => {
        if (reason.Code === 'ConditionalCheckFailed') failed.push(index);
        else if (reason.Code && reason.Code !== 'None') conflict = true;
      });
      // A cancellation without reasons (some emulators) is treated as a lost race: re-read.
      if (failed.length === 0) conflict = true;
      return { ok: false, failed, conflict };
    }
  }

  /** Unconditional puts and deletes, 25 per request, unprocessed ones resent. */
  async batchWrite(requests: WriteRequest[]): Promise<void> {
    for (let i = 0; i < requests.length; i += 25) {
      let pending: WriteRequest[] | undefined = requests.slice(i, i + 25);
      for (let attempt = 0; pending && pending.length > 0; attempt++) {
        if (attempt > 0) await backoff(attempt);
        const output: BatchWriteItemCommandOutput = await this.client.send(
          new BatchWriteItemCommand({ RequestItems: { [this.name]: pending } }),
        );
        pending = output.UnprocessedItems?.[this.name];
      }
    }
  }
}

export function keyId(key: Key): string {
  return `${key.pk}\n${key.sk}`;
}

export function itemId(item: Item): string {
  return `${item.pk?.S}\n${item.sk?.S}`;
}

export function lostRace(cause?: unknown): ConflictError {
  const error = new ConflictError(
    'the catalog is busy: too many concurrent changes to the same records, try again',
  );
  if (cause !== undefined) Object.defineProperty(error, 'cause', { value: cause });
  return error;
}

/** Full-jitter exponential backoff, capped so a busy tag settles within seconds. */
export async function backoff(attempt: number): Promise<void> {
  const ceiling = Math.min(250, 10 * 2 ** Math.min(attempt, 8));
  await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}

function projectionOf(projection?: string[]) {
  if (!projection) return {};
  const names = Object.fromEntries(projection.map((p, i) => [`#p${i}`, p]));
  return {
    ProjectionExpression: Object.keys(names).join(', '),
    ExpressionAttributeNames: names,
  };
}
