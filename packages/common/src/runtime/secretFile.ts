import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { WatchedFiles } from './watchedFiles.js';

/**
 * A secret configuration value (tenants' keys, tenants' credentials) given either as a variable
 * (one machine: removed from the environment once read) or as a file (a mounted Secret, taken up
 * again when it changes). One parser checks both, at start-up and at every change.
 */

/** A parser's answer: the value, or what is wrong with the text (never quoting it). */
export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/** A file a secret came from (a mounted Secret), watched for changes; what it held at start-up. */
export interface SecretFile {
  path: string;
  contents: Buffer;
}

/** A zod transform from a parser: the problem becomes the variable's issue. */
export const parsedWith =
  <T>(parse: (raw: string) => Parsed<T>) =>
  (raw: string | undefined, ctx: z.RefinementCtx): T | undefined => {
    if (raw === undefined) return undefined;
    const result = parse(raw);
    if (!result.ok) {
      ctx.addIssue({ code: 'custom', message: result.problem });
      return z.NEVER;
    }
    return result.value;
  };

const invalid = (problem: string, cause?: unknown) => new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${problem}`, cause === undefined ? {} : { cause });

/** The variable or its file, never both; the file read and parsed now, so a bad one stops the service at start. */
export function fromVariableOrFile<T>(variable: string, fromVariable: T | undefined, file: string | undefined, parse: (raw: string) => Parsed<T>): { value: T; file?: SecretFile } | undefined {
  if (file === undefined) return fromVariable === undefined ? undefined : { value: fromVariable };
  if (fromVariable !== undefined) throw invalid(`${variable} and ${variable}_FILE: set one of them, not both`);
  let contents: Buffer;
  try {
    contents = readFileSync(file);
  } catch (error) {
    throw invalid(`${variable}_FILE=${JSON.stringify(file)}: cannot read the file`, error);
  }
  const parsed = parse(contents.toString('utf8'));
  if (!parsed.ok) throw invalid(`${variable}_FILE: the file ${parsed.problem}`);
  return { value: parsed.value, file: { path: file, contents } };
}

/**
 * Takes up a secret file again when it changes (a Secret updated in place): checked with the
 * same parser as at start-up; contents that do not parse are refused (logged without them,
 * counted in `gateway_config_reloads_total{source, outcome="rejected"}`) and the value in use stays.
 */
export function watchSecretFile<T>(file: SecretFile, source: string, parse: (raw: string) => Parsed<T>, use: (value: T) => void, log: Logger): WatchedFiles {
  return new WatchedFiles({
    source,
    files: [file.path],
    initial: [file.contents],
    apply: ([contents]) => {
      const parsed = parse(contents!.toString('utf8'));
      if (!parsed.ok) throw new GatewayError(ErrorCode.CONFIG_INVALID, `the new file ${parsed.problem}`);
      use(parsed.value);
    },
    log,
  });
}
