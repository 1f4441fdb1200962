import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { SUBJECT_TOKEN } from '../nats/subjects.js';

/**
 * What crosses a boundary (a WebSocket frame, an HTTP body, a gRPC request, a NATS message, a
 * KV record read back) is checked here before use: types, lengths, ranges and character sets
 * by a schema, never by coercion. A value that fails is refused with a code and a message that
 * names where it failed, never what it held (it may be personal data or a secret).
 */

/** Ids we mint and take back (participants, transports, producers, actions, artifacts): URL- and subject-safe. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** C0 and C1 control characters, DEL, and the Unicode line and paragraph separators. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// eslint-disable-next-line no-control-regex
const CONTROL_BUT_LINES = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u2028\u2029]/;

/** A string without lone surrogates (they cannot be encoded as UTF-8 and turn into U+FFFD). */
export function isWellFormed(value: string): boolean {
  return (value as unknown as { isWellFormed(): boolean }).isWellFormed();
}

const subjectToken = () => z.string().regex(SUBJECT_TOKEN, 'must be 1-64 letters, digits, _ or -');

export const schemas = {
  /** An id of ours: 1-64 of letters, digits, _ and -. */
  id: () => z.string().regex(ID_PATTERN, 'must be 1-64 letters, digits, _ or -'),
  /**
   * A name that becomes one token of a NATS subject or KV key (a tenant, a room, a connector):
   * 1-64 letters, digits, _ or -. The one schema of room names (join tokens, the room API,
   * records and events).
   */
  subjectToken,
  /** A room's name (subjectToken). */
  room: subjectToken,
  /** An id that may be left empty (proto3's default for "not given"). */
  optionalId: () => z.union([z.literal(''), z.string().regex(ID_PATTERN, 'must be 1-64 letters, digits, _ or -')]),
  /**
   * Text a person wrote or an app chose (a display identity, a chat message): well-formed
   * Unicode without control characters; `lines` allows tabs and line breaks.
   */
  text: (max: number, options: { lines?: boolean; min?: number } = {}) =>
    z
      .string()
      .min(options.min ?? 0)
      .max(max)
      .refine(isWellFormed, 'must be well-formed Unicode')
      .refine((value) => !(options.lines ? CONTROL_BUT_LINES : CONTROL).test(value), 'must not contain control characters'),
  /** A printable ASCII token (tokens, base64url, header values): no spaces, no controls. */
  token: (max: number) =>
    z
      .string()
      .min(1)
      .max(max)
      .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
  /** A whole number of milliseconds since the epoch (int64 in proto JSON: a number or a decimal string). */
  int64: () =>
    z
      .union([
        z.number().int().safe(),
        z
          .string()
          .regex(/^-?\d{1,16}$/, 'must be an integer')
          .transform(Number),
      ])
      .pipe(z.number().int().safe()),
  uint32: () => z.number().int().min(0).max(0xffffffff),
};

export interface JsonLimits {
  /** Deepest nesting of arrays and objects. */
  maxDepth: number;
  /** Values of every kind, counted through the whole tree. */
  maxNodes: number;
}

/** Keys that would reach an object's prototype if a value were ever merged with Object.assign. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Checks the shape of parsed JSON before any schema walks it: nesting depth, size, no keys that
 * touch prototypes, well-formed strings. Iterative, so no input can exhaust the stack. Returns
 * the first problem, or undefined.
 */
export function jsonShapeProblem(value: unknown, limits: JsonLimits): string | undefined {
  const stack: Array<{ value: unknown; depth: number }> = [{ value, depth: 0 }];
  let nodes = 0;
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop()!;
    if (++nodes > limits.maxNodes) return `more than ${limits.maxNodes} values`;
    if (typeof current === 'string') {
      if (!isWellFormed(current)) return 'a string is not well-formed Unicode';
      continue;
    }
    if (typeof current !== 'object' || current === null) continue;
    if (depth >= limits.maxDepth) return `nested deeper than ${limits.maxDepth} levels`;
    if (Array.isArray(current)) {
      for (const item of current) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    for (const key of Object.keys(current)) {
      if (FORBIDDEN_KEYS.has(key)) return `the key "${key}" is not allowed`;
      if (!isWellFormed(key)) return 'a key is not well-formed Unicode';
      stack.push({ value: (current as Record<string, unknown>)[key], depth: depth + 1 });
    }
  }
  return undefined;
}

/** A path segment as it may be shown: indexes and field names; a key the sender chose (a record's) is not echoed. */
const pathSegment = (segment: PropertyKey) => (typeof segment === 'number' || (typeof segment === 'string' && /^[A-Za-z0-9_-]{1,32}$/.test(segment)) ? String(segment) : '(key)');

/** Where a value failed its schema, by path and rule; never the value itself. */
export function describeIssues(error: z.ZodError, max = 3): string {
  return error.issues
    .slice(0, max)
    .map((issue) => `${issue.path.length ? issue.path.map(pathSegment).join('.') : 'value'}: ${issue.message}`)
    .join('; ');
}

/**
 * Checks a value against a schema; a failure throws a GatewayError with `code` (the boundary's
 * "malformed" code) naming `what` and where it failed.
 */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string, code: ErrorCode = ErrorCode.BAD_REQUEST): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new GatewayError(code, `${what} is invalid: ${describeIssues(result.error)}`);
  return result.data;
}

/** Anything that decodes protobuf bytes (a ts-proto message codec). */
export interface ProtoCodec<T> {
  decode(input: Uint8Array): T;
}

/**
 * Decodes protobuf bytes that came from outside the process (NATS, KV) and checks the result
 * against a schema: protobuf decoding alone checks neither lengths nor character sets, and
 * throws plain errors on garbage.
 */
export function decodeChecked<T>(codec: ProtoCodec<T>, bytes: Uint8Array, schema: z.ZodType, what: string): T {
  let decoded: T;
  try {
    decoded = codec.decode(bytes);
  } catch (error) {
    throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, `${what} does not decode`, { cause: error });
  }
  // The schema checks; the decoded message (all its fields, typed by the codec) is what is used.
  parseWith(schema, decoded, what, ErrorCode.MALFORMED_MESSAGE);
  return decoded;
}
