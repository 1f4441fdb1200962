import type { Request } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, describeIssues, jsonShapeProblem } from '@gateway/common';
import type { RawData } from 'ws';
import type { z } from 'zod';
import { requestSchemas } from './requests.js';

/** Deepest nesting a request needs (RTP capabilities: frame, method, codecs, codec, parameters) with room to spare. */
const MAX_DEPTH = 16;
/** Values in one frame: a browser's RTP capabilities are a few hundred. */
const MAX_NODES = 5_000;

export interface ParsedFrame<R = NonNullable<Request['method']>> {
  id: number;
  request?: R;
  error?: GatewayError;
}

const malformed = (id: number, message: string): ParsedFrame<never> => ({ id, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, message) });

/**
 * Parses one client frame. Never throws: a bad frame becomes an error to answer with, using the
 * frame's id when one could be read. The frame's JSON is bounded first (size, depth, values, no
 * prototype keys), then the method's parameters are checked by its schema.
 */
export function parseFrame(text: string, maxBytes: number): ParsedFrame {
  return parseFrameWith(text, maxBytes, requestSchemas) as ParsedFrame;
}

/** Parses one client frame of a protocol whose methods' parameters `table` checks (the room protocol's, the desk's). */
export function parseFrameWith<T extends Record<string, z.ZodType>>(text: string, maxBytes: number, table: T): ParsedFrame<{ [M in keyof T]: { $case: M; value: z.output<T[M]> } }[keyof T]> {
  if (Buffer.byteLength(text) > maxBytes) {
    return { id: 0, error: new GatewayError(ErrorCode.FRAME_TOO_LARGE, `frames are limited to ${maxBytes} bytes`) };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return malformed(0, 'the frame is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return malformed(0, 'the frame must be a JSON object');
  const object = value as Record<string, unknown>;
  const id = object.id;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) return malformed(0, 'id must be a non-negative integer');
  const shape = jsonShapeProblem(value, { maxDepth: MAX_DEPTH, maxNodes: MAX_NODES });
  if (shape) return malformed(id, `the frame is refused: ${shape}`);
  const keys = Object.keys(object).filter((k) => k !== 'id');
  if (keys.length !== 1) return { id, error: new GatewayError(ErrorCode.UNKNOWN_METHOD, 'a request names exactly one method') };
  const method = keys[0]!;
  if (!Object.hasOwn(table, method)) {
    return { id, error: new GatewayError(ErrorCode.UNKNOWN_METHOD, `unknown method "${method.slice(0, 64).replace(/[^\x20-\x7e]/g, '?')}"`) };
  }
  const params = object[method];
  if (typeof params !== 'object' || params === null || Array.isArray(params)) return malformed(id, `the parameters of ${method} must be an object`);
  const checked = table[method]!.safeParse(params);
  if (!checked.success) return malformed(id, `${method}: ${describeIssues(checked.error)}`);
  return { id, request: { $case: method, value: checked.data } as { [M in keyof T]: { $case: M; value: z.output<T[M]> } }[keyof T] };
}

/** A WebSocket message's bytes as text (the `ws` library hands them over in three shapes). */
export function rawToString(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
