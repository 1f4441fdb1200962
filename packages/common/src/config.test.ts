import { describe, expect, it } from 'vitest';
import { env, loadConfig } from './config.js';
import { ErrorCode, GatewayError } from './errors.js';

const shape = { SOME_PORT: env.port(8080), SOME_FLAG: env.boolean(false), SOME_NAME: env.string('x') };

describe('loadConfig', () => {
  it('applies defaults, and treats empty variables as unset', () => {
    expect(loadConfig(shape, { SOME_PORT: '' })).toEqual({ SOME_PORT: 8080, SOME_FLAG: false, SOME_NAME: 'x' });
  });

  it('parses the values it is given', () => {
    expect(loadConfig(shape, { SOME_PORT: '9000', SOME_FLAG: 'yes', SOME_NAME: 'y' })).toEqual({ SOME_PORT: 9000, SOME_FLAG: true, SOME_NAME: 'y' });
  });

  it('names every bad variable and its value', () => {
    let error: unknown;
    try {
      loadConfig(shape, { SOME_PORT: 'eighty', SOME_FLAG: 'maybe' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe(ErrorCode.CONFIG_INVALID);
    expect((error as GatewayError).message).toContain('SOME_PORT="eighty"');
    expect((error as GatewayError).message).toContain('SOME_FLAG="maybe"');
  });
});
