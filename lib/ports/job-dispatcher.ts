/**
 * Starts the runner for a job somewhere: in this process (the Node server, tests) or in the
 * worker function (Lambda, asynchronous invocation). Dispatching only hands over the id; the
 * job's record in the catalog says what to do, and its lease makes a second dispatch harmless.
 */
export interface JobDispatcher {
  dispatch(jobId: string): Promise<void>;
}
