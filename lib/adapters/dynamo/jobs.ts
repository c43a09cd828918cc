/**
 * Job records in the DynamoDB table. Single flight lives in a small key item per single-flight
 * key naming the active job: creating a job is one transaction that puts both items on condition
 * that neither exists (with the job's entry in the JOBS listing), and finishing one is one
 * transaction that ends the job and deletes the key item, so a key never names a job that ended.
 * Every item carries the TTL attribute.
 */
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import type {
  JobEnd,
  JobKind,
  JobProgress,
  JobRecord,
  JobStatus,
  JobStore,
  LeaseTerms,
  NewJob,
} from '../../ports/job-store.ts';
import { av, type Item, keyItem, num, optNum, optStr, str } from './items.ts';
import { JOBS_PK, keys, TTL_ATTRIBUTE } from './schema.ts';
import { backoff, CONFLICT_ATTEMPTS, itemId, lostRace, type Table } from './table.ts';

const EMPTY_PROGRESS: JobProgress = { layers: [], lines: [], linesSeen: 0 };
const ACTIVE: readonly JobStatus[] = ['queued', 'running'];

export async function createOrJoinJob(
  table: Table,
  job: NewJob,
): Promise<{ job: JobRecord; created: boolean }> {
  const keyKey = keys.jobKey(job.key);
  const item = jobItem(job);
  for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
    if (attempt > 0) await backoff(attempt);
    const outcome = await table.transact([
      {
        Put: {
          TableName: table.name,
          Item: {
            ...keyItem(keyKey),
            kind: av.s('job-key'),
            jobId: av.s(job.id),
            [TTL_ATTRIBUTE]: av.n(job.expiresAt / 1000),
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        },
      },
      {
        Put: { TableName: table.name, Item: item, ConditionExpression: 'attribute_not_exists(pk)' },
      },
      {
        // The dashboard's listing: one small item per job, gone with the job's first TTL. A job
        // that ends later keeps its own longer TTL and simply leaves the listing first.
        Put: {
          TableName: table.name,
          Item: {
            ...keyItem(keys.jobListing(job.now, job.id)),
            kind: av.s('job-listing'),
            jobId: av.s(job.id),
            [TTL_ATTRIBUTE]: av.n(job.expiresAt / 1000),
          },
        },
      },
    ]);
    if (outcome.ok) return { job: toJob(item), created: true };
    if (outcome.failed.includes(1)) throw new Error(`job id ${job.id} is taken`);
    if (!outcome.failed.includes(0)) continue;
    const pointer = await table.get(keyKey);
    const activeId = pointer && optStr(pointer, 'jobId');
    if (!activeId) continue;
    const active = await table.get(keys.job(activeId));
    if (active && ACTIVE.includes(str(active, 'status') as JobStatus)) {
      return { job: toJob(active), created: false };
    }
    // The key names a job that is gone (TTL) or ended: free it, unless it moved meanwhile.
    await table.delete(keyKey, {
      ConditionExpression: 'jobId = :id',
      ExpressionAttributeValues: { ':id': av.s(activeId) },
    });
  }
  throw lostRace();
}

/** Newest first from the JOBS partition, the jobs by key; those gone or expired left out. */
export async function listRecentJobs(
  table: Table,
  limit: number,
  now: number,
): Promise<JobRecord[]> {
  const listed = await table.query(
    {
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': av.s(JOBS_PK) },
      ScanIndexForward: false,
      Limit: limit,
    },
    limit,
  );
  const ids = listed.slice(0, limit).map((item) => str(item, 'jobId'));
  const found = await table.batchGet(ids.map((id) => keys.job(id)));
  return ids
    .map((id) => found.get(itemId(keyItem(keys.job(id)))))
    .filter((item): item is Item => item !== undefined)
    .map(toJob)
    .filter((job) => ACTIVE.includes(job.status) || job.expiresAt >= now);
}

export async function getJob(table: Table, id: string): Promise<JobRecord | undefined> {
  const item = await table.get(keys.job(id));
  return item && toJob(item);
}

export async function claimJob(
  table: Table,
  id: string,
  { owner, now, until }: LeaseTerms,
): Promise<JobRecord | undefined> {
  const outcome = await table.update(
    keys.job(id),
    'SET #status = :running, leaseOwner = :owner, leaseUntil = :until, updatedAt = :now',
    {
      ConditionExpression:
        'attribute_exists(pk) AND (#status = :queued OR (#status = :running AND ' +
        '(attribute_not_exists(leaseUntil) OR leaseUntil < :now OR leaseOwner = :owner)))',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: {
        ':running': av.s('running'),
        ':queued': av.s('queued'),
        ':owner': av.s(owner),
        ':until': av.n(until),
        ':now': av.n(now),
      },
    },
    'ALL_NEW',
  );
  return outcome.ok && outcome.attributes ? toJob(outcome.attributes) : undefined;
}

export async function recordJobProgress(
  table: Table,
  id: string,
  { owner, now, until }: LeaseTerms,
  progress: JobProgress,
): Promise<boolean> {
  const outcome = await table.update(
    keys.job(id),
    'SET progress = :progress, updatedAt = :now, leaseUntil = :until',
    {
      ConditionExpression: '#status = :running AND leaseOwner = :owner',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: {
        ':progress': av.s(JSON.stringify(progress)),
        ':now': av.n(now),
        ':until': av.n(until),
        ':running': av.s('running'),
        ':owner': av.s(owner),
      },
    },
  );
  return outcome.ok;
}

export async function finishJob(
  table: Table,
  id: string,
  owner: string,
  end: JobEnd,
): Promise<boolean> {
  const job = await table.get(keys.job(id));
  if (!job) return false;
  const outcomeValue =
    end.status === 'succeeded'
      ? { name: 'result', value: JSON.stringify(end.result) }
      : { name: 'error', value: JSON.stringify(end.error) };
  const actions: TransactWriteItem[] = [
    {
      Update: {
        TableName: table.name,
        Key: keyItem(keys.job(id)),
        UpdateExpression: `SET #status = :status, #outcome = :outcome, progress = :progress,
          updatedAt = :now, expiresAt = :expires, #ttl = :ttl REMOVE leaseOwner, leaseUntil`,
        ConditionExpression: '#status = :running AND leaseOwner = :owner',
        ExpressionAttributeNames: {
          '#status': 'status',
          '#outcome': outcomeValue.name,
          '#ttl': TTL_ATTRIBUTE,
        },
        ExpressionAttributeValues: {
          ':status': av.s(end.status),
          ':outcome': av.s(outcomeValue.value),
          ':progress': av.s(JSON.stringify(end.progress)),
          ':now': av.n(end.now),
          ':expires': av.n(end.expiresAt),
          ':ttl': av.n(end.expiresAt / 1000),
          ':running': av.s('running'),
          ':owner': av.s(owner),
        },
      },
    },
    {
      // Frees the key for the next job; a key already freed (or naming another job) stays.
      Delete: {
        TableName: table.name,
        Key: keyItem(keys.jobKey(str(job, 'jobKey'))),
        ConditionExpression: 'jobId = :id',
        ExpressionAttributeValues: { ':id': av.s(id) },
      },
    },
  ];
  for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
    if (attempt > 0) await backoff(attempt);
    const outcome = await table.transact(actions);
    if (outcome.ok) return true;
    if (outcome.failed.includes(0)) return false;
    if (outcome.failed.includes(1)) {
      // The key item is gone or names another job: end the job alone.
      return (await table.transact(actions.slice(0, 1))).ok;
    }
  }
  throw lostRace();
}

function jobItem(job: NewJob): Item {
  return {
    ...keyItem(keys.job(job.id)),
    kind: av.s('job'),
    id: av.s(job.id),
    jobKind: av.s(job.kind),
    jobKey: av.s(job.key),
    request: av.s(JSON.stringify(job.request)),
    status: av.s('queued'),
    progress: av.s(JSON.stringify(EMPTY_PROGRESS)),
    createdAt: av.n(job.now),
    updatedAt: av.n(job.now),
    expiresAt: av.n(job.expiresAt),
    [TTL_ATTRIBUTE]: av.n(job.expiresAt / 1000),
  };
}

function toJob(item: Item): JobRecord {
  const result = optStr(item, 'result');
  const error = optStr(item, 'error');
  const leaseOwner = optStr(item, 'leaseOwner');
  const leaseUntil = optNum(item, 'leaseUntil');
  return {
    id: str(item, 'id'),
    kind: str(item, 'jobKind') as JobKind,
    key: str(item, 'jobKey'),
    request: JSON.parse(str(item, 'request')),
    status: str(item, 'status') as JobStatus,
    progress: JSON.parse(str(item, 'progress')),
    ...(result !== undefined && { result: JSON.parse(result) }),
    ...(error !== undefined && { error: JSON.parse(error) }),
    createdAt: num(item, 'createdAt'),
    updatedAt: num(item, 'updatedAt'),
    ...(leaseOwner !== undefined &&
      leaseUntil !== undefined && { lease: { owner: leaseOwner, until: leaseUntil } }),
    expiresAt: num(item, 'expiresAt'),
  };
}

/** The functions above as the JobStore of one table. */
export function dynamoJobStore(table: Table): JobStore {
  return {
    createOrJoinJob: (job) => createOrJoinJob(table, job),
    getJob: (id) => getJob(table, id),
    listRecentJobs: (limit, now) => listRecentJobs(table, limit, now),
    claimJob: (id, lease) => claimJob(table, id, lease),
    recordJobProgress: (id, lease, progress) => recordJobProgress(table, id, lease, progress),
    finishJob: (id, owner, end) => finishJob(table, id, owner, end),
  };
}
