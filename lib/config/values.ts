/**
 * The small parsers every setting shares. Each problem is a ConfigError whose message names
 * the flag or variable and says what is wrong, so a bad deployment fails before it serves a
 * single request instead of on the first pull.
 */
import { parseDuration } from '../duration.ts';
import { parseByteSize } from '../retention.ts';

export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** A setting's text and where it came from (`--flag` or the variable), for messages. */
export interface Setting {
  name: string;
  text: string;
}

/** Unset and blank are the same: a variable exported empty means "use the default". */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function integerIn(text: string, setting: string, min: number, max: number): number {
  const value = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new ConfigError(
      `${setting}: ${JSON.stringify(text)} must be a whole number from ${min} to ${max}`,
    );
  }
  return value;
}

/** 1/true/yes turn a switch on; 0/false/no or unset leave it off; anything else is named. */
export function envFlag(env: NodeJS.ProcessEnv, variable: string, fallback = false): boolean {
  const text = nonEmpty(env[variable])?.trim().toLowerCase();
  if (text === undefined) return fallback;
  if (['0', 'false', 'no'].includes(text)) return false;
  if (['1', 'true', 'yes'].includes(text)) return true;
  throw new ConfigError(`${variable}: ${JSON.stringify(env[variable])} must be 1 or 0`);
}

export function durationMs(found: Setting): number {
  try {
    return parseDuration(found.text);
  } catch (error) {
    throw new ConfigError(`${found.name}: ${(error as Error).message}`);
  }
}

export function byteSize(found: Setting, unit = ''): number {
  try {
    return parseByteSize(found.text);
  } catch (error) {
    throw new ConfigError(`${found.name}: ${(error as Error).message}${unit}`);
  }
}
