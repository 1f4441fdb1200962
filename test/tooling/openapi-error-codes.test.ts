import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@gateway/common';
import { OpenApiContract, specFiles } from '../support/openapi.js';

/**
 * Codes only the WebSocket protocols answer with (a request of no method, before or after a join;
 * an agent's answer to an offer on the desk); no HTTP route can.
 */
const WEBSOCKET_ONLY_CODES = new Set<string>([ErrorCode.UNKNOWN_METHOD, ErrorCode.NOT_JOINED, ErrorCode.ALREADY_JOINED, ErrorCode.OFFER_MOVED_ON]);

/**
 * docs/openapi/signaling.yaml's Error.code enum follows the platform's codes
 * (packages/common/src/errors.ts): a code added there and not documented fails here.
 */
describe('the error codes of the signaling contract', () => {
  it("signaling's Error.code names every code an HTTP answer can carry (ErrorCode, less the WebSocket-only ones)", () => {
    const spec = OpenApiContract.load(specFiles.signaling).spec as { components: { schemas: { Error: { properties: { error: { properties: { code: { enum: string[] } } } } } } } };
    const documented = spec.components.schemas.Error.properties.error.properties.code.enum;
    const visible = Object.values(ErrorCode).filter((code) => !WEBSOCKET_ONLY_CODES.has(code));
    expect([...documented].sort()).toEqual([...visible].sort());
  });
});
