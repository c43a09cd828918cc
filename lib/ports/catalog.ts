import type { GcReportLog } from './gc-report-log.ts';
import type { ImageCatalog } from './image-catalog.ts';
import type { JobStore } from './job-store.ts';
import type { TokenStore } from './token-store.ts';

export type * from './gc-report-log.ts';
export type * from './image-catalog.ts';
export * from './job-store.ts';
export type * from './token-store.ts';

/**
 * Everything one backend stores, as the adapters implement it and the composition root holds it.
 * Consumers take the narrowest of the four ports instead (see docs/architecture.md).
 */
export type Catalog = ImageCatalog & JobStore & TokenStore & GcReportLog;
