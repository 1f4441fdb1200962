import { describe, expect, it } from 'vitest';
import { errors } from '@nats-io/transport-node';
import { ErrorCode, GatewayError } from './errors.js';

describe('GatewayError.from', () => {
  it('makes a NATS timeout or a connection going away UNAVAILABLE, which a client may retry', () => {
    for (const error of [new errors.TimeoutError(), new errors.ClosedConnectionError(), new errors.DrainingConnectionError(), new errors.NoRespondersError('$JS.API.x')]) {
      const mapped = GatewayError.from(error);
      expect(mapped.code, error.name).toBe(ErrorCode.UNAVAILABLE);
      expect(mapped.cause).toBe(error);
    }
  });

  it('keeps the fallback for anything else, and a GatewayError as it is', () => {
    expect(GatewayError.from(new TypeError('x is undefined')).code).toBe(ErrorCode.INTERNAL);
    expect(GatewayError.from(new Error('refused'), ErrorCode.BAD_REQUEST).code).toBe(ErrorCode.BAD_REQUEST);
    const own = new GatewayError(ErrorCode.NOT_FOUND, 'no such room');
    expect(GatewayError.from(own)).toBe(own);
  });
});
