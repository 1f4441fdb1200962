import { browserSupportsWebAuthn, startAuthentication, startRegistration, type PublicKeyCredentialCreationOptionsJSON, type PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/browser';
import { ErrorCode, GatewayError } from '../errors.js';

/** What the server sends and expects back: the ceremony's options and answer as plain JSON. */
type Json = Record<string, unknown>;

/** Signs a verification's challenge with this device's registered key; returns the assertion for the server. */
export async function signChallenge(optionsJSON: PublicKeyCredentialRequestOptionsJSON): Promise<Json> {
  const response = await webauthnCeremony(() => startAuthentication({ optionsJSON }), 'the verification');
  return response as unknown as Json;
}

/** Creates a key on this device from the server's registration options; returns the attestation for the server. */
export async function createDeviceKey(options: Json): Promise<Json> {
  const optionsJSON = options as unknown as PublicKeyCredentialCreationOptionsJSON;
  const response = await webauthnCeremony(() => startRegistration({ optionsJSON }), 'the registration');
  return response as unknown as Json;
}

/**
 * Runs a WebAuthn ceremony (the browser's prompt for the device's key), turning what browsers
 * throw into GatewayErrors: cancelled or refused, already registered, or not possible here.
 */
export async function webauthnCeremony<T>(run: () => Promise<T>, what: string): Promise<T> {
  if (!browserSupportsWebAuthn()) throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot use device keys (WebAuthn needs https or localhost)');
  try {
    return await run();
  } catch (error) {
    const { name, code } = (error ?? {}) as { name?: string; code?: string };
    if (code === 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED' || name === 'InvalidStateError') {
      return Promise.reject(new GatewayError(ErrorCode.INVALID_STATE, 'this device already holds a registered key', { cause: error }));
    }
    if (name === 'NotAllowedError' || name === 'AbortError') return Promise.reject(new GatewayError(ErrorCode.PERMISSION_DENIED, `${what} was cancelled or not allowed`, { cause: error }));
    if (name === 'SecurityError' || name === 'NotSupportedError') return Promise.reject(new GatewayError(ErrorCode.UNSUPPORTED, `${what} is not possible on this page or device`, { cause: error }));
    throw GatewayError.from(error);
  }
}
