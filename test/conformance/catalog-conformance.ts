import type { Catalog } from '../../lib/ports/catalog.ts';
import { gcReportLogConformance } from './gc-report-log-suite.ts';
import type { Conformance } from './harness.ts';
import { imageCatalogConformance } from './image-catalog-suite.ts';
import { imageEntriesConformance } from './image-entries-suite.ts';
import { imageUsageConformance } from './image-usage-suite.ts';
import { jobListingConformance } from './job-listing-suite.ts';
import { jobStoreConformance } from './job-store-suite.ts';
import { statsLogConformance } from './stats-log-suite.ts';
import { tokenStoreConformance } from './token-store-suite.ts';
import { watchStoreConformance } from './watch-store-suite.ts';

/** Runs the suite of each port over one adapter that implements them all. */
export const catalogConformance: Conformance<Catalog> = (name, make) => {
  imageCatalogConformance(name, make);
  imageEntriesConformance(name, make);
  imageUsageConformance(name, make);
  jobStoreConformance(name, make);
  jobListingConformance(name, make);
  tokenStoreConformance(name, make);
  gcReportLogConformance(name, make);
  statsLogConformance(name, make);
  watchStoreConformance(name, make);
};
