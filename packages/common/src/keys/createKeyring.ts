import type { Logger } from 'pino';
import { watchSecretFile } from '../runtime/secretFile.js';
import type { ManagedKeyring } from './keyring.js';
import { type KeyringSettings, parseKmsAliases, parseStaticKeys } from './settings.js';
import { StaticKeyring } from './StaticKeyring.js';

/** The one place a service's keyring is built. */
export async function createKeyring(settings: KeyringSettings, log: Logger): Promise<ManagedKeyring> {
  if (settings.kind === 'static') {
    const keyring = new StaticKeyring(settings.tenants);
    if (settings.file) keyring.takeUpChanges(watchSecretFile(settings.file, 'tenant-keys', parseStaticKeys, (keys) => keyring.replace(keys), log));
    return keyring;
  }
  // Loaded only when used: a static deployment never loads the AWS SDK.
  const { KmsKeyring } = await import('./kmsKeyring.js');
  const keyring = new KmsKeyring(settings);
  if (settings.file) keyring.takeUpChanges(watchSecretFile(settings.file, 'kms-keys', parseKmsAliases, (aliases) => keyring.replaceAliases(aliases), log));
  return keyring;
}
