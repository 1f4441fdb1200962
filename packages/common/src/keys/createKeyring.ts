import type { ManagedKeyring } from './keyring.js';
import type { KeyringSettings } from './settings.js';
import { StaticKeyring } from './StaticKeyring.js';

/** The one place a service's keyring is built. */
export async function createKeyring(settings: KeyringSettings): Promise<ManagedKeyring> {
  if (settings.kind === 'static') return new StaticKeyring(settings.tenants);
  // Loaded only when used: a static deployment never loads the AWS SDK.
  const { KmsKeyring } = await import('./kmsKeyring.js');
  return new KmsKeyring(settings);
}
