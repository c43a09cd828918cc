/** What one garbage collection did; the catalog keeps the latest ones. */
export interface GcReport {
  id: string;
  trigger: 'manual' | 'schedule' | 'prune';
  dryRun: boolean;
  graceMs: number;
  startedAt: number;
  durationMs: number;
  examined: { blobs: number; bytes: number };
  kept: { blobs: number; bytes: number };
  deleted: { blobs: number; bytes: number };
  /** Files found in the blob store without a catalog record (left by a crash). */
  orphans: { blobs: number; bytes: number };
  /**
   * Temp files or staging objects of writes that died halfway, removed by a full collection;
   * absent from collections that do not sweep them (prune's) and from older reports.
   */
  staging?: { files: number; bytes: number };
  errors: string[];
}

/** What the collector leaves behind for /cache/gc: the latest reports, newest first. */
export interface GcReportLog {
  putGcReport(report: GcReport): Promise<void>;
  /** Newest first. */
  listGcReports(limit: number): Promise<GcReport[]>;
}
