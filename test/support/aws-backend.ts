/**
 * The AWS backend composed in-process on the emulators (fauxqs, DynamoDB Local) on a fresh
 * bucket and table, without access control: its router and the DynamoDB request counter, for
 * tests that count what each Engine API request sends to the table.
 */
import type { DynamoCatalog } from '../../lib/adapters/dynamo-catalog.ts';
import type { Composition } from '../../lib/composition.ts';
import type { HttpResponse } from '../../lib/engine/http.ts';
import { createRouter, type Router } from '../../lib/engine/router.ts';
import type { TotalsSource } from '../../lib/metrics/stats-recorder.ts';
import { composeOnEmulators } from './aws-emulators.ts';
import { bodyBytes } from './aws-save-backend.ts';

export interface AwsBackend {
  composition: Composition;
  catalog: DynamoCatalog;
  /** The fresh table's name. */
  table: string;
  router: Router;
  /** One request through the router, its body read whole (a save's tarball too). */
  call(
    method: string,
    path: string,
    query?: Record<string, string>,
  ): Promise<{ status: number; body: Buffer }>;
  close(): Promise<void>;
}

export async function startAwsBackend(
  options: { totals?: TotalsSource } = {},
): Promise<AwsBackend> {
  const { composition, names } = await composeOnEmulators(options);
  const router = createRouter(composition.context);
  return {
    composition,
    catalog: composition.context.catalog as DynamoCatalog,
    table: names.table,
    router,
    async call(method, path, query = {}) {
      const response: HttpResponse = await router({
        method,
        path,
        query: new URLSearchParams(query),
        headers: {},
      });
      return { status: response.status, body: await bodyBytes(response) };
    },
    close: () => composition.close(),
  };
}
