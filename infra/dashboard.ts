/**
 * The CloudWatch dashboard of the stack: the figures a platform team is asked about (is it
 * working, what does it save, what does the upstream think of us), from the EMF lines each
 * function writes (lib/lambda/emf.ts: namespace ImageCache, dimension service=image-cache)
 * beside the Lambda, API Gateway and SQS metrics AWS keeps anyway. No custom metric is put
 * with an API call: CloudWatch Logs extracts the EMF lines.
 */
import { Duration } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  TextWidget,
} from 'aws-cdk-lib/aws-cloudwatch';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { EMF_JOB_METRICS, EMF_NAMESPACE, EMF_SERVICE } from '../lib/lambda/emf.ts';
import type { CounterName } from '../lib/metrics/names.ts';

export interface CacheDashboardProps {
  functions: Record<'Api' | 'StreamApi' | 'Worker' | 'Prune' | 'Watch', NodejsFunction>;
  httpApi: HttpApi;
  jobs: { queue: Queue; deadLetters: Queue };
}

const PERIOD = Duration.minutes(5);

/** One EMF figure, summed over the period across every function that wrote it. */
function cacheMetric(name: CounterName | string, label: string): Metric {
  return new Metric({
    namespace: EMF_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: EMF_SERVICE },
    statistic: 'Sum',
    period: PERIOD,
    label,
  });
}

function graph(title: string, left: IMetric[], right: IMetric[] = []): GraphWidget {
  return new GraphWidget({ title, left, right, width: 8, height: 6 });
}

export class CacheDashboard extends Construct {
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: CacheDashboardProps) {
    super(scope, id);
    const { functions, httpApi, jobs } = props;
    const hits = {
      mh: cacheMetric('manifestHits', 'manifest hits'),
      bh: cacheMetric('blobHits', 'blob hits'),
      mm: cacheMetric('manifestMisses', 'manifest misses'),
      bm: cacheMetric('blobMisses', 'blob misses'),
    };
    const lambda = (pick: (fn: NodejsFunction) => IMetric) =>
      Object.values(functions).map((fn) => pick(fn));
    this.dashboard = new Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.days(7),
      widgets: [
        [
          new TextWidget({
            markdown:
              '# image-cache\nCounts from the functions (EMF, namespace `ImageCache`), summed per 5 minutes. `/metrics` and `/cache/stats` give the same figures.',
            width: 24,
            height: 2,
          }),
        ],
        [
          graph(
            'Requests and 5xx',
            [cacheMetric('requests', 'requests')],
            [
              cacheMetric('requestErrors', '5xx (router)'),
              httpApi.metricServerError({ period: PERIOD, label: '5xx (HTTP API)' }),
            ],
          ),
          graph(
            'Hit ratio (manifests and blobs)',
            [
              new MathExpression({
                expression: '100 * (mh + bh) / (mh + bh + mm + bm)',
                usingMetrics: hits,
                label: 'hit ratio %',
                period: PERIOD,
              }),
            ],
            [cacheMetric('manifestHits', 'upstream pulls saved')],
          ),
          graph('Bytes served and fetched', [
            cacheMetric('bytesServed', 'served from the cache'),
            cacheMetric('bytesFetched', 'fetched upstream'),
          ]),
        ],
        [
          graph(
            'Upstream: requests, errors, 429s',
            [cacheMetric('upstreamRequests', 'requests'), cacheMetric('upstreamErrors', 'errors')],
            [cacheMetric('upstreamThrottled', '429s')],
          ),
          graph('Docker Hub manifest GETs (what its rate limit counts)', [
            cacheMetric('hubManifestGets', 'manifest GETs'),
            cacheMetric('joins', 'single-flight joins'),
          ]),
          graph(
            'Jobs',
            [
              cacheMetric(EMF_JOB_METRICS.succeeded, 'succeeded'),
              cacheMetric(EMF_JOB_METRICS.failed, 'failed'),
            ],
            [
              jobs.queue.metricApproximateNumberOfMessagesVisible({
                period: PERIOD,
                label: 'queued',
              }),
              jobs.deadLetters.metricApproximateNumberOfMessagesVisible({
                period: PERIOD,
                label: 'dead letters',
              }),
            ],
          ),
        ],
        [
          graph(
            'Garbage collection',
            [cacheMetric('bytesReclaimed', 'bytes reclaimed')],
            [cacheMetric('gcRuns', 'runs')],
          ),
          graph(
            'Lambda errors',
            lambda((fn) => fn.metricErrors({ period: PERIOD })),
          ),
          graph(
            'Lambda duration (p99)',
            lambda((fn) => fn.metricDuration({ period: PERIOD, statistic: 'p99' })),
          ),
        ],
      ],
    });
  }
}
