import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { GatewayError } from '../errors.js';
import { webauthnCeremony } from './webauthn.js';

const browser = vi.hoisted(() => ({ supported: true }));
vi.mock('@simplewebauthn/browser', () => ({ browserSupportsWebAuthn: () => browser.supported, startAuthentication: vi.fn(), startRegistration: vi.fn() }));

const thrown = (name: string, code?: string) => Object.assign(new Error(name), { name, ...(code ? { code } : {}) });

describe('webauthnCeremony', () => {
  beforeEach(() => {
    browser.supported = true;
  });

  it('returns what the ceremony returns', async () => {
    await expect(webauthnCeremony(async () => 'signed', 'the verification')).resolves.toBe('signed');
  });

  it('refuses without WebAuthn, before any prompt', async () => {
    browser.supported = false;
    const run = vi.fn(async () => 'signed');
    await expect(webauthnCeremony(run, 'the verification')).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    expect(run).not.toHaveBeenCalled();
  });

  it('turns what browsers throw into GatewayErrors that say what happened', async () => {
    const codeOf = (error: Error) => webauthnCeremony(() => Promise.reject(error), 'the registration').catch((e: GatewayError) => [e.code, e.message]);
    expect(await codeOf(thrown('NotAllowedError'))).toEqual(['PERMISSION_DENIED', 'the registration was cancelled or not allowed']);
    expect(await codeOf(thrown('AbortError'))).toEqual(['PERMISSION_DENIED', 'the registration was cancelled or not allowed']);
    expect(await codeOf(thrown('InvalidStateError'))).toEqual(['INVALID_STATE', 'this device already holds a registered key']);
    expect(await codeOf(thrown('Error', 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED'))).toEqual(['INVALID_STATE', 'this device already holds a registered key']);
    expect(await codeOf(thrown('SecurityError'))).toEqual(['UNSUPPORTED', 'the registration is not possible on this page or device']);
    expect(await codeOf(thrown('NotSupportedError'))).toEqual(['UNSUPPORTED', 'the registration is not possible on this page or device']);
    expect(await codeOf(thrown('TypeError'))).toEqual(['INTERNAL', 'TypeError']);
  });

  it("keeps the browser's error as the cause", async () => {
    const error = thrown('NotAllowedError');
    await expect(webauthnCeremony(() => Promise.reject(error), 'the verification')).rejects.toMatchObject({ cause: error });
  });
});
