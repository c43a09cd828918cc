import { describe, expect, it } from 'vitest';
import { HOUR_MS, hourOf, STATS_RETENTION_MS, type StatsLog } from '../../lib/ports/stats-log.ts';
import { type Conformance, freshHarness } from './harness.ts';

/** An hour of the last day: DynamoDB's TTL judges age by the real clock. */
const H0 = hourOf(Date.now()) - 10 * HOUR_MS;

/** The behaviour every StatsLog adapter must show; `make` gives a fresh, empty log per test. */
export const statsLogConformance: Conformance<StatsLog> = (name, make) => {
  describe(`StatsLog conformance: ${name}`, () => {
    const { store: log, another } = freshHarness(make);

    it('adds counters, replaces gauges, and lists hours oldest first', async () => {
      expect(await log.listHours(0)).toEqual([]);
      await log.addHour(H0 + HOUR_MS, { requests: 2, bytesServed: 1000 }, { storedBytes: 50 });
      await log.addHour(H0, { requests: 1 }, {});
      await log.addHour(H0 + HOUR_MS, { requests: 3, manifestHits: 4 }, { images: 2 });
      await log.addHour(H0 + HOUR_MS, {}, { storedBytes: 70 });
      expect(await log.listHours(H0)).toEqual([
        { hour: H0, counters: { requests: 1 }, gauges: {} },
        {
          hour: H0 + HOUR_MS,
          counters: { requests: 5, bytesServed: 1000, manifestHits: 4 },
          gauges: { storedBytes: 70, images: 2 },
        },
      ]);
    });

    it('answers the range asked for, both ends included', async () => {
      for (let i = 0; i < 5; i++) await log.addHour(H0 + i * HOUR_MS, { pulls: i + 1 }, {});
      const hours = await log.listHours(H0 + HOUR_MS, H0 + 3 * HOUR_MS);
      expect(hours.map((h) => [h.hour, h.counters.pulls])).toEqual([
        [H0 + HOUR_MS, 2],
        [H0 + 2 * HOUR_MS, 3],
        [H0 + 3 * HOUR_MS, 4],
      ]);
      expect(await log.listHours(H0 + 5 * HOUR_MS)).toEqual([]);
    });

    it('ignores zero and absent figures', async () => {
      await log.addHour(H0, { requests: 0, pulls: undefined }, { images: undefined });
      const hours = await log.listHours(H0);
      expect(hours.flatMap((h) => Object.keys({ ...h.counters, ...h.gauges }))).toEqual([]);
    });

    it('keeps large byte counts exactly', async () => {
      const big = 5 * 2 ** 40 + 7;
      await log.addHour(H0, { bytesFetched: big }, { storedBytes: big });
      await log.addHour(H0, { bytesFetched: 1 }, {});
      const [hour] = await log.listHours(H0);
      expect(hour?.counters.bytesFetched).toBe(big + 1);
      expect(hour?.gauges.storedBytes).toBe(big);
    });

    it('loses no count when two instances add to one hour at once', async () => {
      const other = await another();
      const adds = Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? log : other).addHour(H0, { requests: 1, bytesServed: 10 }, {}),
      );
      await Promise.all(adds);
      const [hour] = await log.listHours(H0);
      expect(hour?.counters).toEqual({ requests: 20, bytesServed: 200 });
      expect(await other.listHours(H0)).toEqual([hour]);
    });

    it('drops hours past retention', async () => {
      // SQLite deletes them on the next write; DynamoDB's TTL deletes lazily (within days), so
      // its reads leave out hours whose TTL has passed.
      const old = H0 - STATS_RETENTION_MS - 2 * HOUR_MS;
      await log.addHour(old, { requests: 1 }, {});
      await log.addHour(H0 - STATS_RETENTION_MS + 20 * HOUR_MS, { requests: 3 }, {});
      await log.addHour(H0, { requests: 2 }, {});
      const kept = await log.listHours(0);
      expect(kept.map((h) => h.hour)).toEqual([H0 - STATS_RETENTION_MS + 20 * HOUR_MS, H0]);
    });
  });
};
