/**
 * A job's progress as the catalog keeps it: Docker's progress stream compacted to what a
 * client joining late needs to draw the same screen (the latest message per layer id, in
 * first-seen order, and the last status lines), bounded so a DynamoDB item stays far below
 * 400 KB however many layers or warnings a pull has.
 */
import { type JobMessage, type JobProgress, MAX_JOB_PROGRESS_BYTES } from '../ports/job-store.ts';

/** Status lines (no id: `Digest:`, `Status:`, warnings) kept; a follower only lags so far. */
const LINES_KEPT = 20;
/** Layers with an id of their own; images have a few dozen, never near this. */
const LAYERS_KEPT = 256;
/** A message longer than this (a registry's error text) is cut: the record must stay small. */
const MESSAGE_CHARS = 1024;

export class ProgressLog {
  readonly #layers = new Map<string, JobMessage>();
  #lines: JobMessage[] = [];
  #linesSeen = 0;

  constructor(start?: JobProgress) {
    for (const message of start?.layers ?? []) this.#layers.set(message.id ?? '', message);
    this.#lines = [...(start?.lines ?? [])];
    this.#linesSeen = start?.linesSeen ?? this.#lines.length;
  }

  /**
   * Records a message; answers true when it changed a layer's state (its status text) or added
   * a line, which is worth writing at once rather than with the next throttled write.
   */
  add(raw: JobMessage): boolean {
    const message = bounded(raw);
    if (message.id === undefined) {
      this.#lines.push(message);
      this.#linesSeen++;
      if (this.#lines.length > LINES_KEPT) this.#lines.splice(0, this.#lines.length - LINES_KEPT);
      return true;
    }
    const previous = this.#layers.get(message.id);
    if (!previous && this.#layers.size >= LAYERS_KEPT) return false;
    this.#layers.set(message.id, message);
    return previous?.status !== message.status;
  }

  snapshot(): JobProgress {
    const progress = {
      layers: [...this.#layers.values()],
      lines: [...this.#lines],
      linesSeen: this.#linesSeen,
    };
    // Belt and braces for the item size: drop the oldest lines, then details, until it fits.
    while (JSON.stringify(progress).length > MAX_JOB_PROGRESS_BYTES && progress.lines.length > 1) {
      progress.lines.shift();
    }
    if (JSON.stringify(progress).length > MAX_JOB_PROGRESS_BYTES) {
      progress.layers = progress.layers.map(({ status, id }) => ({ status, id }));
    }
    return progress;
  }
}

function bounded(message: JobMessage): JobMessage {
  const status =
    message.status.length > MESSAGE_CHARS ? message.status.slice(0, MESSAGE_CHARS) : message.status;
  const id = message.id && message.id.length > 128 ? message.id.slice(0, 128) : message.id;
  return {
    status,
    ...(id !== undefined && { id }),
    ...(message.progressDetail && {
      progressDetail: {
        ...(message.progressDetail.current !== undefined && {
          current: message.progressDetail.current,
        }),
        ...(message.progressDetail.total !== undefined && { total: message.progressDetail.total }),
      },
    }),
  };
}

/**
 * What a follower that sent `sent` has not seen yet in `progress`: layers whose latest message
 * changed, then the status lines added since. Both the server's follow stream and the CLI's
 * wait loop use it, so a reconnecting client never prints a line twice.
 */
export class ProgressDiff {
  readonly #sentLayers = new Map<string, string>();
  #linesSent = 0;

  next(progress: JobProgress): JobMessage[] {
    const out: JobMessage[] = [];
    for (const message of progress.layers) {
      const text = JSON.stringify(message);
      if (this.#sentLayers.get(message.id ?? '') === text) continue;
      this.#sentLayers.set(message.id ?? '', text);
      out.push(message);
    }
    const fresh = Math.min(
      progress.lines.length,
      Math.max(0, progress.linesSeen - this.#linesSent),
    );
    out.push(...progress.lines.slice(progress.lines.length - fresh));
    this.#linesSent = Math.max(this.#linesSent, progress.linesSeen);
    return out;
  }
}
