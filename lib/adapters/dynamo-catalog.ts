import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type AwsSdkSettings, clientLocation } from '../config/aws-sdk.ts';
import { ComposedCatalog } from './composed-catalog.ts';
import { DynamoGcReports } from './dynamo/gc-reports.ts';
import { DynamoImageCatalog } from './dynamo/image-catalog.ts';
import { dynamoJobStore } from './dynamo/jobs.ts';
import { RequestCounter } from './dynamo/request-counter.ts';
import { createTable } from './dynamo/schema.ts';
import { DynamoStatsLog } from './dynamo/stats-log.ts';
import { Table } from './dynamo/table.ts';
import { DynamoTokens } from './dynamo/tokens.ts';
import { DynamoWatches } from './dynamo/watches.ts';

export { RequestCounter } from './dynamo/request-counter.ts';

export interface DynamoCatalogOptions {
  /** The catalog owns the client from here on: close() destroys it. */
  client: DynamoDBClient;
  tableName: string;
  /** Parallel Scan segments for whole-type listings (GC over many blobs). Default 4. */
  scanSegments?: number;
}

const DEFAULT_SCAN_SEGMENTS = 4;
/** Attempts per request when the environment does not say (AWS_MAX_ATTEMPTS): rides out throttling. */
const DEFAULT_MAX_ATTEMPTS = 8;

/**
 * The catalog in one DynamoDB table. Layout and access patterns: dynamo/schema.ts. Every blob
 * state change is one conditional write (the SQLite adapter's statements, one for one), every
 * multi-item change one transaction, and every read the GC protocol depends on is strongly
 * consistent. Vendor errors stop in dynamo/table.ts; condition failures come back as answers.
 */
export class DynamoCatalog extends ComposedCatalog {
  /** DynamoDB requests sent by this catalog, per operation: what benchmarks print. */
  readonly requests: RequestCounter;
  readonly #table: Table;

  constructor(options: DynamoCatalogOptions) {
    const table = new Table(
      options.client,
      options.tableName,
      options.scanSegments ?? DEFAULT_SCAN_SEGMENTS,
    );
    super({
      images: new DynamoImageCatalog(table),
      jobs: dynamoJobStore(table),
      tokens: new DynamoTokens(table),
      gcReports: new DynamoGcReports(table),
      stats: new DynamoStatsLog(table),
      watches: new DynamoWatches(table),
    });
    this.#table = table;
    this.requests = RequestCounter.attach(options.client);
  }

  /**
   * A client from the SDK's standard settings (AWS_ENDPOINT_URL_DYNAMODB for emulators), with
   * 8 attempts unless AWS_MAX_ATTEMPTS says otherwise, so throttling is ridden out.
   */
  static clientFor(sdk: AwsSdkSettings): DynamoDBClient {
    return new DynamoDBClient({
      ...clientLocation(sdk, 'dynamodb'),
      ...(!sdk.sdkReads.maxAttempts && { maxAttempts: DEFAULT_MAX_ATTEMPTS }),
    });
  }

  /** Creates the table if missing (on-demand, TTL); only for `--create-resources`. */
  async createTable(): Promise<void> {
    await createTable(this.#table.client, this.#table.name);
  }

  close(): void {
    this.#table.client.destroy();
  }
}
