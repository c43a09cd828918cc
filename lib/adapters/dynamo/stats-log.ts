import {
  type Figures,
  HOUR_MS,
  STATS_RETENTION_MS,
  type StatsHour,
  type StatsLog,
} from '../../ports/stats-log.ts';
import { av, type Item } from './items.ts';
import {
  keys,
  STATS_COUNTER_PREFIX,
  STATS_GAUGE_PREFIX,
  STATS_HOUR_PREFIX,
  STATS_PK,
  TTL_ATTRIBUTE,
} from './schema.ts';
import type { Table } from './table.ts';

/**
 * The hourly history in the STATS partition, one item per hour (schema.ts). An add is one
 * UpdateItem: counters with ADD, so concurrent containers never lose each other's counts, gauges
 * with SET, and the TTL that drops the hour after 35 days. Read with one Query over a sort-key
 * range; nothing here Scans.
 */
export class DynamoStatsLog implements StatsLog {
  readonly #table: Table;

  constructor(table: Table) {
    this.#table = table;
  }

  async addHour(hourStart: number, counters: Figures, gauges: Figures): Promise<void> {
    const names: Record<string, string> = { '#kind': 'kind', '#ttl': TTL_ATTRIBUTE };
    const values: Item = {
      ':kind': av.s('stats'),
      ':ttl': av.n((hourStart + HOUR_MS + STATS_RETENTION_MS) / 1000),
    };
    const adds: string[] = [];
    const sets = ['#kind = :kind', '#ttl = :ttl'];
    let i = 0;
    for (const [name, value] of Object.entries(counters)) {
      if (!value) continue;
      names[`#f${i}`] = `${STATS_COUNTER_PREFIX}${name}`;
      values[`:f${i}`] = av.n(value);
      adds.push(`#f${i} :f${i}`);
      i++;
    }
    for (const [name, value] of Object.entries(gauges)) {
      if (value === undefined) continue;
      names[`#f${i}`] = `${STATS_GAUGE_PREFIX}${name}`;
      values[`:f${i}`] = av.n(value);
      sets.push(`#f${i} = :f${i}`);
      i++;
    }
    const update = `SET ${sets.join(', ')}${adds.length > 0 ? ` ADD ${adds.join(', ')}` : ''}`;
    await this.#table.update(keys.statsHour(hourStart), update, {
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  async listHours(sinceHour: number, untilHour = Number.MAX_SAFE_INTEGER): Promise<StatsHour[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :since AND :until',
      // TTL deletes within days, not on the second: an hour whose time is up is gone already.
      FilterExpression: '#ttl > :now',
      ExpressionAttributeNames: { '#ttl': TTL_ATTRIBUTE },
      ExpressionAttributeValues: {
        ':now': av.n(Date.now() / 1000),
        ':pk': av.s(STATS_PK),
        ':since': av.s(keys.statsHour(Math.max(0, sinceHour)).sk),
        ':until': av.s(keys.statsHour(untilHour).sk),
      },
    });
    return items.map(toStatsHour);
  }
}

function toStatsHour(item: Item): StatsHour {
  const sk = item.sk?.S ?? '';
  const hour: StatsHour = {
    hour: Number(sk.slice(STATS_HOUR_PREFIX.length)),
    counters: {},
    gauges: {},
  };
  for (const [name, value] of Object.entries(item)) {
    if (value.N === undefined) continue;
    if (name.startsWith(STATS_COUNTER_PREFIX)) {
      hour.counters[name.slice(STATS_COUNTER_PREFIX.length)] = Number(value.N);
    } else if (name.startsWith(STATS_GAUGE_PREFIX)) {
      hour.gauges[name.slice(STATS_GAUGE_PREFIX.length)] = Number(value.N);
    }
  }
  return hour;
}
