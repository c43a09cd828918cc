/**
 * `GET /cache/jobs?limit=N`: the running and recent jobs, newest first (the dashboard).
 * `GET /cache/jobs/{id}?wait=N`: a background job, long-polled until it ends or N seconds; a
 * succeeded export's result carries a freshly signed download URL. Reading a job that looks
 * abandoned dispatches it again.
 */
import { ROUTE_SCOPES } from '../auth/scopes.ts';
import { InvalidArgumentError, NotFoundError } from '../errors.ts';
import { jobSummary } from '../jobs/job-view.ts';
import { followJob, isEnded } from '../jobs/jobs.ts';
import { json, limitQuery } from './http.ts';
import { answerBy } from './job-deadline.ts';
import { viewWithDownload } from './job-export.ts';
import type { Route } from './router.ts';

/** Longest wait the Node server holds a request for; behind a deadline, less. */
const MAX_WAIT_S = 600;
const DEFAULT_LISTED = 20;
const MAX_LISTED = 100;

export const jobRoutes: Route[] = [
  {
    method: 'GET',
    pattern: /^\/cache\/jobs$/,
    scope: ROUTE_SCOPES['GET /cache/jobs'],
    handler: async (request, _params, context) => {
      const limit = limitQuery(request.query, DEFAULT_LISTED, MAX_LISTED);
      const jobs = await context.jobStore.listRecentJobs(limit, context.clock.now());
      return json(200, jobs.map(jobSummary));
    },
  },
  {
    method: 'GET',
    pattern: /^\/cache\/jobs\/([A-Za-z0-9_-]{1,128})$/,
    scope: ROUTE_SCOPES['GET /cache/jobs/{id}'],
    handler: async (request, [id], context) => {
      const waitText = request.query.get('wait') ?? '0';
      if (!/^\d{1,6}$/.test(waitText)) {
        throw new InvalidArgumentError('wait must be a whole number of seconds');
      }
      const notFound = () => new NotFoundError(`no such job: ${id}`);
      let job = await context.jobStore.getJob(id!);
      if (!job) throw notFound();
      const { jobs } = context;
      // Waiting on a job whose worker died would wait in vain: each read starts it again.
      const waitMs = Math.min(Number(waitText), MAX_WAIT_S) * 1000;
      if (waitMs > 0 && !isEnded(job)) {
        // A client that leaves stops the wait where the front door tells (request.signal);
        // elsewhere it lasts until `wait` or the deadline.
        const until = Math.min(
          Date.now() + waitMs,
          request.deadline === undefined ? Number.POSITIVE_INFINITY : answerBy(request.deadline),
        );
        job =
          (await followJob(context.jobStore, id!, {
            until,
            ...(jobs && { signals: jobs.signals }),
            ...(jobs && { redispatcher: jobs.redispatcher }),
            ...(request.signal && { signal: request.signal }),
          })) ?? job;
      } else if (jobs && !isEnded(job)) {
        await jobs.redispatcher.ifAbandoned(job);
      }
      return json(200, await viewWithDownload(job, context.exports));
    },
  },
];
