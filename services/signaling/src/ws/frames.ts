import { Request } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';

/** The method names of the protocol, from the generated Request type. */
const methods = new Set(
  Object.keys({
    join: true, resume: true, createTransport: true, connectTransport: true, restartIce: true, produce: true,
    pauseProducer: true, resumeProducer: true, closeProducer: true, consume: true, resumeConsumer: true,
    pauseConsumer: true, setPreferredLayers: true, getStats: true, ping: true, leave: true, startRecording: true,
    pauseRecording: true, resumeRecording: true, stopRecording: true, sendMessage: true, redactMessage: true,
    requestSmartAction: true, answerSmartAction: true, deviceKeyOptions: true, registerDeviceKey: true, artifactUrl: true,
    // A Record over the generated union: a method added to the protocol must be listed here.
  } satisfies Record<NonNullable<Request['method']>['$case'], true>),
);

export interface ParsedFrame {
  id: number;
  request?: NonNullable<Request['method']>;
  error?: GatewayError;
}

/**
 * Parses one client frame. Never throws: a bad frame becomes an error to answer with, using the
 * frame's id when one could be read.
 */
export function parseFrame(text: string, maxBytes: number): ParsedFrame {
  if (Buffer.byteLength(text) > maxBytes) {
    return { id: 0, error: new GatewayError(ErrorCode.FRAME_TOO_LARGE, `frames are limited to ${maxBytes} bytes`) };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { id: 0, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the frame is not valid JSON') };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { id: 0, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the frame must be a JSON object') };
  }
  const object = value as Record<string, unknown>;
  const id = object.id;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    return { id: 0, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'id must be a non-negative integer') };
  }
  const keys = Object.keys(object).filter((k) => k !== 'id');
  if (keys.length !== 1) {
    return { id, error: new GatewayError(ErrorCode.UNKNOWN_METHOD, 'a request names exactly one method') };
  }
  const method = keys[0]!;
  if (!methods.has(method as never)) {
    return { id, error: new GatewayError(ErrorCode.UNKNOWN_METHOD, `unknown method "${method.slice(0, 64)}"`) };
  }
  const params = object[method];
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    return { id, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, `the parameters of ${method} must be an object`) };
  }
  const request = Request.fromJSON(object).method;
  if (!request) return { id, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the request could not be decoded') };
  return { id, request };
}
