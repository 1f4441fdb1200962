import { ErrorCode, GatewayError } from '../errors.js';
import type { DeviceKind, MediaDevice } from '../types.js';
import { mediaDevices } from './capture.js';

const KINDS: readonly DeviceKind[] = ['videoinput', 'audioinput', 'audiooutput'];

/**
 * The browser's cameras, microphones and audio outputs (or those of one kind). Before the user
 * allowed a capture, browsers list at most one of each kind, without names.
 */
export async function listDevices(kind?: DeviceKind): Promise<MediaDevice[]> {
  const devices = mediaDevices();
  if (!devices.enumerateDevices) throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot list its devices');
  const all = await devices.enumerateDevices();
  return all
    .filter((d): d is MediaDeviceInfo & { kind: DeviceKind } => KINDS.includes(d.kind as DeviceKind) && (kind === undefined || d.kind === kind))
    .map(({ deviceId, kind: k, label, groupId }) => ({ deviceId, kind: k, label, groupId }));
}

/**
 * Calls `changed` with the new list whenever a device is plugged in or out (the browser's
 * `devicechange`); returns the function that stops listening. Does nothing where the browser
 * cannot tell (no mediaDevices outside a secure context).
 */
export function watchDevices(changed: (devices: MediaDevice[]) => void): () => void {
  const devices = (globalThis as { navigator?: Navigator }).navigator?.mediaDevices;
  if (!devices?.addEventListener) return () => undefined;
  const listener = () => {
    void listDevices().then(changed, () => undefined);
  };
  devices.addEventListener('devicechange', listener);
  return () => devices.removeEventListener('devicechange', listener);
}
