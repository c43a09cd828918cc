import { describe, expect, it } from 'vitest';
import type { GcReport, GcReportLog } from '../../lib/ports/gc-report-log.ts';
import { type Conformance, freshStore } from './harness.ts';

export function gcReport(id: string, startedAt: number): GcReport {
  return {
    id,
    trigger: 'manual',
    dryRun: false,
    graceMs: 0,
    startedAt,
    durationMs: 3,
    examined: { blobs: 3, bytes: 30 },
    kept: { blobs: 1, bytes: 10 },
    deleted: { blobs: 2, bytes: 20 },
    orphans: { blobs: 0, bytes: 0 },
    errors: [],
  };
}

/** The behaviour every GcReportLog adapter must show; `make` gives a fresh, empty log per test. */
export const gcReportLogConformance: Conformance<GcReportLog> = (name, make) => {
  describe(`GcReportLog conformance: ${name}`, () => {
    const log = freshStore(make);

    it('lists the newest first, up to the limit', async () => {
      expect(await log.listGcReports(10)).toEqual([]);
      await log.putGcReport(gcReport('a', 10));
      await log.putGcReport({ ...gcReport('b', 20), trigger: 'prune', errors: ['x: boom'] });
      await log.putGcReport(gcReport('c', 30));
      expect((await log.listGcReports(10)).map((r) => r.id)).toEqual(['c', 'b', 'a']);
      expect(await log.listGcReports(1)).toEqual([gcReport('c', 30)]);
      expect((await log.listGcReports(2))[1]).toEqual({
        ...gcReport('b', 20),
        trigger: 'prune',
        errors: ['x: boom'],
      });
      expect(await log.listGcReports(0)).toEqual([]);
    });

    it('keeps only the latest 100', async () => {
      for (let i = 0; i < 105; i++) await log.putGcReport(gcReport(`r${i}`, 1000 + i));
      const reports = await log.listGcReports(1000);
      expect(reports).toHaveLength(100);
      expect(reports[0]?.id).toBe('r104');
      expect(reports.at(-1)?.id).toBe('r5');
    });
  });
};
