import type { Digest } from '../../digest.ts';
import { HOUR_MS } from '../../ports/stats-log.ts';
import {
  BACKGROUND_PULL_HOURS_KEPT_MS,
  type RegistryPause,
  type WatchCheckOutcome,
  type WatchRecord,
  type WatchSettings,
  type WatchStore,
} from '../../ports/watch-store.ts';
import {
  av,
  base,
  compare,
  type Item,
  num,
  optionalNumber,
  optNum,
  optStr,
  present,
  str,
  strings,
} from './items.ts';
import { keys, REGISTRY_PAUSES_PK, TTL_ATTRIBUTE, WATCHES_PK } from './schema.ts';
import type { Table } from './table.ts';

/** Rounds of create-or-update before giving up on a watch that keeps changing under us. */
const PUT_ATTEMPTS = 10;

type PutAnswer = { record: WatchRecord; created: boolean };

/**
 * Watches in the WATCHES partition, pauses in REGISTRY_PAUSES, and each registry's hourly
 * background-pull counts in a partition of its own (schema.ts). Whatever two schedulers may race
 * on (a claim, an outcome after a delete, a pause, a budget) is one conditional write; listings
 * are one Query of a partition, never a Scan.
 */
export class DynamoWatches implements WatchStore {
  readonly #table: Table;

  constructor(table: Table) {
    this.#table = table;
  }

  async putWatch(settings: WatchSettings, now: number, nextCheckAt: number): Promise<PutAnswer> {
    const fresh: WatchRecord = { ...settings, createdAt: now, nextCheckAt };
    for (let attempt = 0; attempt < PUT_ATTEMPTS; attempt++) {
      const put = await this.#table.put(watchItem(fresh), {
        ConditionExpression: 'attribute_not_exists(pk)',
      });
      if (put.ok) return { record: toWatch(watchItem(fresh)), created: true };
      const old = put.old ?? (await this.#table.get(keys.watch(settings.name)));
      if (!old) continue;
      // Conditional on the interval we compared with: a concurrent change of it sends us round
      // again, so the schedule is never kept for an interval it was not computed for.
      const oldEvery = num(old, 'everyMs');
      const reschedule = oldEvery !== settings.everyMs;
      const updated = await this.#table.update(
        keys.watch(settings.name),
        `SET #registry = :registry, #every = :every, #platforms = :platforms, #pin = :pin${
          reschedule ? ', nextCheckAt = :next' : ''
        }`,
        {
          ConditionExpression: '#every = :oldEvery',
          // Names as placeholders: DynamoDB reserves hundreds of words, and these may be among them.
          ExpressionAttributeNames: {
            '#registry': 'registry',
            '#every': 'everyMs',
            '#platforms': 'platforms',
            '#pin': 'pin',
          },
          ExpressionAttributeValues: {
            ':registry': av.s(settings.registry),
            ':every': av.n(settings.everyMs),
            ':platforms': av.list(settings.platforms),
            ':pin': { BOOL: settings.pin },
            ':oldEvery': av.n(oldEvery),
            ...(reschedule && { ':next': av.n(nextCheckAt) }),
          },
        },
        'ALL_NEW',
      );
      if (updated.ok && updated.attributes) {
        return { record: toWatch(updated.attributes), created: false };
      }
    }
    throw new Error(`watch ${settings.name} kept changing while it was being written`);
  }

  async getWatch(name: string): Promise<WatchRecord | undefined> {
    const item = await this.#table.get(keys.watch(name));
    return item && toWatch(item);
  }

  async deleteWatch(name: string): Promise<WatchRecord | undefined> {
    const outcome = await this.#table.delete(keys.watch(name));
    return outcome.ok && outcome.attributes ? toWatch(outcome.attributes) : undefined;
  }

  async listWatches(): Promise<WatchRecord[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': av.s(WATCHES_PK) },
    });
    return items.map(toWatch).sort((a, b) => compare(a.name, b.name));
  }

  async claimWatchCheck(name: string, due: number, leaseUntil: number): Promise<boolean> {
    // The condition also fails on a deleted watch: no attribute equals :due there.
    const outcome = await this.#table.update(keys.watch(name), 'SET nextCheckAt = :lease', {
      ConditionExpression: 'nextCheckAt = :due',
      ExpressionAttributeValues: { ':lease': av.n(leaseUntil), ':due': av.n(due) },
    });
    return outcome.ok;
  }

  async recordWatchCheck(name: string, outcome: WatchCheckOutcome): Promise<void> {
    const sets = ['lastCheckAt = :checked', 'nextCheckAt = :next'];
    const values: Item = {
      ':checked': av.n(outcome.checkedAt),
      ':next': av.n(outcome.nextCheckAt),
    };
    if (outcome.digest !== undefined) {
      sets.push('lastDigest = :digest');
      values[':digest'] = av.s(outcome.digest);
    }
    if (outcome.change) {
      sets.push('lastChangeAt = :changed', 'lastJobs = :jobs');
      values[':changed'] = av.n(outcome.change.at);
      values[':jobs'] = av.list(outcome.change.jobs);
    }
    if (outcome.error !== undefined) {
      sets.push('lastError = :error');
      values[':error'] = av.s(outcome.error);
    }
    const remove = outcome.error === undefined ? ' REMOVE lastError' : '';
    // A watch deleted meanwhile fails the condition, which table.update answers rather than
    // throws: the outcome is dropped instead of writing the watch back as a bare item.
    await this.#table.update(keys.watch(name), `SET ${sets.join(', ')}${remove}`, {
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: values,
    });
  }

  async pauseRegistry(pause: RegistryPause): Promise<void> {
    // A failed condition means a later pause stands: nothing to do.
    await this.#table.put(
      {
        ...base(keys.registryPause(pause.registry), 'registry-pause'),
        registry: av.s(pause.registry),
        until: av.n(pause.until),
        reason: av.s(pause.reason),
      },
      {
        ConditionExpression: 'attribute_not_exists(pk) OR #until < :until',
        ExpressionAttributeNames: { '#until': 'until' },
        ExpressionAttributeValues: { ':until': av.n(pause.until) },
      },
    );
  }

  async listRegistryPauses(): Promise<RegistryPause[]> {
    const items = await this.#table.query({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': av.s(REGISTRY_PAUSES_PK) },
    });
    return items
      .map((item) => ({
        registry: str(item, 'registry'),
        until: num(item, 'until'),
        reason: str(item, 'reason'),
      }))
      .sort((a, b) => compare(a.registry, b.registry));
  }

  async takeBackgroundPull(registry: string, hourStart: number, limit: number): Promise<boolean> {
    // ADD creates the item at 1, so a budget of none must not reach the write.
    if (limit < 1) return false;
    const outcome = await this.#table.update(
      keys.pullBudget(registry, hourStart),
      'SET #kind = :kind, #ttl = :ttl ADD pulls :one',
      {
        ConditionExpression: 'attribute_not_exists(pulls) OR pulls < :limit',
        ExpressionAttributeNames: { '#kind': 'kind', '#ttl': TTL_ATTRIBUTE },
        ExpressionAttributeValues: {
          ':kind': av.s('pull-budget'),
          ':ttl': av.n((hourStart + HOUR_MS + BACKGROUND_PULL_HOURS_KEPT_MS) / 1000),
          ':one': av.n(1),
          ':limit': av.n(limit),
        },
      },
    );
    return outcome.ok;
  }

  async backgroundPulls(registry: string, hourStart: number): Promise<number> {
    const item = await this.#table.get(keys.pullBudget(registry, hourStart), ['pulls']);
    return (item && optNum(item, 'pulls')) ?? 0;
  }
}

function watchItem(record: WatchRecord): Item {
  return {
    ...base(keys.watch(record.name), 'watch'),
    name: av.s(record.name),
    registry: av.s(record.registry),
    everyMs: av.n(record.everyMs),
    platforms: av.list(record.platforms),
    pin: { BOOL: record.pin },
    createdAt: av.n(record.createdAt),
    nextCheckAt: av.n(record.nextCheckAt),
    ...optionalNumber('lastCheckAt', record.lastCheckAt),
    ...(record.lastDigest !== undefined && { lastDigest: av.s(record.lastDigest) }),
    ...optionalNumber('lastChangeAt', record.lastChangeAt),
    ...(record.lastError !== undefined && { lastError: av.s(record.lastError) }),
    ...(record.lastJobs !== undefined && { lastJobs: av.list(record.lastJobs) }),
  };
}

function toWatch(item: Item): WatchRecord {
  const lastDigest = optStr(item, 'lastDigest');
  const lastError = optStr(item, 'lastError');
  return {
    name: str(item, 'name'),
    registry: str(item, 'registry'),
    everyMs: num(item, 'everyMs'),
    platforms: strings(item, 'platforms'),
    pin: item.pin?.BOOL === true,
    createdAt: num(item, 'createdAt'),
    nextCheckAt: num(item, 'nextCheckAt'),
    ...present('lastCheckAt', optNum(item, 'lastCheckAt')),
    ...(lastDigest !== undefined && { lastDigest: lastDigest as Digest }),
    ...present('lastChangeAt', optNum(item, 'lastChangeAt')),
    ...(lastError !== undefined && { lastError }),
    ...(item.lastJobs?.L !== undefined && { lastJobs: strings(item, 'lastJobs') }),
  };
}
