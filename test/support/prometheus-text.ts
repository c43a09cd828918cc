/**
 * A parser of the Prometheus text exposition format (0.0.4), enough to judge /metrics the way a
 * scraper reads it: `# HELP` and `# TYPE` lines, samples `name{label="value",...} number`, label
 * values with `\\`, `\"` and `\n` escapes. It refuses what Prometheus would refuse (a sample
 * before its family's TYPE with another name, a malformed line, a duplicate series), so a
 * broken exposition fails the test rather than reading as zero.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
  /** Sum of the samples named `name` whose labels include every pair of `where`. */
  sum(name: string, where?: Record<string, string>): number;
  /** Whether some sample is named `name` (with `where`). */
  has(name: string, where?: Record<string, string>): boolean;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

export function parsePrometheusText(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const type =
        /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type) types.set(type[1]!, type[2]!);
      else if (!/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* /.test(line)) {
        throw new Error(`line ${index + 1}: not a HELP or TYPE comment: ${line}`);
      }
      continue;
    }
    const sample = parseSample(line, index + 1);
    const family = familyOf(sample.name, types);
    if (!family) throw new Error(`line ${index + 1}: ${sample.name} has no TYPE before it`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new Error(`line ${index + 1}: duplicate series ${key}`);
    seen.add(key);
    samples.push(sample);
  }
  const matching = (name: string, where: Record<string, string> = {}) =>
    samples.filter(
      (s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v),
    );
  return {
    types,
    samples,
    sum: (name, where) => matching(name, where).reduce((total, s) => total + s.value, 0),
    has: (name, where) => matching(name, where).length > 0,
  };
}

/** A histogram's `_bucket`, `_sum` and `_count` belong to the family its TYPE named. */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return types.get(base) === 'histogram' || types.get(base) === 'summary' ? base : undefined;
}

function parseSample(line: string, lineNumber: number): Sample {
  const fail = (why: string) => new Error(`line ${lineNumber}: ${why}: ${line}`);
  const name = NAME.exec(line)?.[0];
  if (!name) throw fail('no metric name');
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    while (!rest.startsWith('}')) {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(rest);
      if (!label) throw fail('bad label');
      rest = rest.slice(label[0].length);
      let value = '';
      for (;;) {
        const char = rest[0];
        if (char === undefined) throw fail('unterminated label value');
        rest = rest.slice(1);
        if (char === '"') break;
        if (char === '\\') {
          const escaped = rest[0];
          rest = rest.slice(1);
          value += escaped === 'n' ? '\n' : escaped;
        } else value += char;
      }
      labels[label[1]!] = value;
      if (rest.startsWith(',')) rest = rest.slice(1);
    }
    rest = rest.slice(1);
  }
  const parts = rest.trim().split(/\s+/);
  if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw fail('no value');
  const raw = parts[0]!;
  const value =
    raw === '+Inf'
      ? Number.POSITIVE_INFINITY
      : raw === '-Inf'
        ? Number.NEGATIVE_INFINITY
        : Number(raw);
  if (Number.isNaN(value) && raw !== 'NaN') throw fail('value is not a number');
  return { name, labels, value };
}
