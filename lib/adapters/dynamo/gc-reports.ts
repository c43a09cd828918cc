import type { GcReport, GcReportLog } from '../../ports/gc-report-log.ts';
import { av, gcReportItem, type Item, keyItem, num, optStr, str, toGcReport } from './items.ts';
import { GC_REPORT_PREFIX, GC_REPORTS_KEPT, GC_REPORTS_PK, keys } from './schema.ts';
import type { Table } from './table.ts';

/** GC reports in the table's GC partition, ordered by a table-wide sequence. */
export class DynamoGcReports implements GcReportLog {
  readonly #table: Table;

  constructor(table: Table) {
    this.#table = table;
  }

  async putGcReport(report: GcReport): Promise<void> {
    // A table-wide sequence orders reports from any process; re-storing an id makes it newest.
    const sequence = await this.#table.update(
      keys.gcSequence(),
      'ADD #seq :one',
      {
        ExpressionAttributeNames: { '#seq': 'seq' },
        ExpressionAttributeValues: { ':one': av.n(1) },
      },
      'UPDATED_NEW',
    );
    if (!sequence.ok || !sequence.attributes) throw new Error('GC report sequence not updated');
    const seq = num(sequence.attributes, 'seq');
    await this.#table.put(gcReportItem(report, seq));
    const stored = await this.#reportItems(['pk', 'sk', 'id']);
    const stale: Item[] = [];
    let kept = 0;
    for (const item of stored) {
      const mine = item.sk?.S === keys.gcReport(seq).sk;
      if (!mine && optStr(item, 'id') === report.id) stale.push(item);
      else if (++kept > GC_REPORTS_KEPT) stale.push(item);
    }
    await this.#table.batchWrite(
      stale.map((item) => ({
        DeleteRequest: { Key: keyItem({ pk: str(item, 'pk'), sk: str(item, 'sk') }) },
      })),
    );
  }

  async listGcReports(limit: number): Promise<GcReport[]> {
    const count = Math.max(0, Math.trunc(limit));
    if (count === 0) return [];
    const items = await this.#reportItems(undefined, Math.min(count, GC_REPORTS_KEPT));
    return items.slice(0, count).map(toGcReport);
  }

  /** Newest first. */
  async #reportItems(projection?: string[], limit?: number): Promise<Item[]> {
    const names = projection && Object.fromEntries(projection.map((p, i) => [`#p${i}`, p]));
    return this.#table.query(
      {
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: {
          ':pk': av.s(GC_REPORTS_PK),
          ':prefix': av.s(GC_REPORT_PREFIX),
        },
        ScanIndexForward: false,
        ...(names && {
          ProjectionExpression: Object.keys(names).join(', '),
          ExpressionAttributeNames: names,
        }),
        ...(limit !== undefined && { Limit: limit }),
      },
      limit,
    );
  }
}
