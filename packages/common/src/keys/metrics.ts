import { Counter, Gauge, type Registry } from 'prom-client';
import type { ManagedKeyring } from './keyring.js';

/** The keyring's metrics: KMS calls by operation and outcome, and the unwrapped keys held. */
export function observeKeyring(registry: Registry, keyring: ManagedKeyring): void {
  const requests = new Counter({
    name: 'gateway_kms_requests_total',
    help: 'KMS calls by operation and outcome (ok, or the KMS error), after retries',
    labelNames: ['operation', 'outcome'],
    registers: [registry],
  });
  keyring.observer.on('request', (operation, outcome) => requests.inc({ operation, outcome }));
  new Gauge({
    name: 'gateway_kms_cached_keys',
    help: 'Unwrapped data keys held in memory (bounded by GATEWAY_KMS_CACHE_ENTRIES, each for GATEWAY_KMS_CACHE_SECONDS)',
    registers: [registry],
    collect() {
      this.set(keyring.cachedKeys);
    },
  });
}
