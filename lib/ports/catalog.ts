import type { GcReportLog } from './gc-report-log.ts';
import type { ImageCatalog } from './image-catalog.ts';
import type { JobStore } from './job-store.ts';
import type { StatsLog } from './stats-log.ts';
import type { TokenStore } from './token-store.ts';
import type { WatchStore } from './watch-store.ts';

export type * from './gc-report-log.ts';
export type * from './image-catalog.ts';
export * from './job-store.ts';
export * from './stats-log.ts';
export type * from './token-store.ts';
export * from './watch-store.ts';

/**
 * Everything one backend stores, as the adapters implement it and the composition root holds it.
 * Consumers take the narrowest of the six ports instead (see docs/architecture.md).
 */
export type Catalog = ImageCatalog & JobStore & TokenStore & GcReportLog & StatsLog & WatchStore;
