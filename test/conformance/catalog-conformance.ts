import type { Catalog } from '../../lib/ports/catalog.ts';
import { gcReportLogConformance } from './gc-report-log-suite.ts';
import type { StoreHarness } from './harness.ts';
import { imageCatalogConformance } from './image-catalog-suite.ts';
import { jobStoreConformance } from './job-store-suite.ts';
import { tokenStoreConformance } from './token-store-suite.ts';

/** Runs the suite of each of the four ports over one adapter that implements them all. */
export function catalogConformance(name: string, make: () => Promise<StoreHarness<Catalog>>): void {
  imageCatalogConformance(name, make);
  jobStoreConformance(name, make);
  tokenStoreConformance(name, make);
  gcReportLogConformance(name, make);
}
