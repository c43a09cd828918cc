import { InvalidArgumentError } from './errors.ts';

/**
 * Docker's `filters` query parameter: `{"dangling":{"true":true}}`, or the legacy
 * `{"dangling":["true"]}`. Parsed into name -> values.
 */
export type Filters = Map<string, string[]>;

export function parseFilters(raw: string | null, allowed: readonly string[]): Filters {
  const filters: Filters = new Map();
  if (!raw) return filters;
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw new InvalidArgumentError(`invalid filter: ${raw} is not JSON`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidArgumentError('invalid filter: expected a JSON object');
  }
  for (const [name, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!allowed.includes(name)) throw new InvalidArgumentError(`invalid filter '${name}'`);
    const values = Array.isArray(value)
      ? value.map(String)
      : value && typeof value === 'object'
        ? Object.entries(value)
            .filter(([, on]) => on === true)
            .map(([v]) => v)
        : [];
    filters.set(name, values);
  }
  return filters;
}

/** `dangling=true|false|1|0`; anything else is Docker's "invalid filter" error. */
export function booleanFilter(filters: Filters, name: string): boolean | undefined {
  const values = filters.get(name);
  if (!values || values.length === 0) return undefined;
  const parsed = new Set(
    values.map((v) => {
      const lower = v.toLowerCase();
      if (lower === 'true' || lower === '1') return true;
      if (lower === 'false' || lower === '0') return false;
      throw new InvalidArgumentError(`invalid filter '${name}=${v}'`);
    }),
  );
  if (parsed.size > 1) throw new InvalidArgumentError(`conflicting filters for '${name}'`);
  return [...parsed][0];
}

/**
 * Go's path.Match as Docker's reference filter uses it: `*` and `?` never cross a `/`.
 * Character classes are kept simple (`[abc]`, `[a-z]`).
 */
export function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new InvalidArgumentError(`invalid reference filter pattern ${pattern}`);
      const body = pattern
        .slice(i + 1, end)
        .replace(/^!/, '^')
        .replace(/\\/g, '\\\\');
      source += `[${body}]`;
      i = end;
    } else source += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** Labels filter: `key` (present) or `key=value`. */
export function matchesLabel(labels: Record<string, string>, filter: string): boolean {
  const eq = filter.indexOf('=');
  if (eq < 0) return Object.hasOwn(labels, filter);
  return labels[filter.slice(0, eq)] === filter.slice(eq + 1);
}
