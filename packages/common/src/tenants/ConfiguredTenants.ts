import type { Logger } from 'pino';
import { watchSecretFile } from '../runtime/secretFile.js';
import type { WatchedFiles } from '../runtime/watchedFiles.js';
import { parseTenants, type Tenant, type TenantsSettings } from './config.js';

/**
 * The configured tenants as they are now. Given as a file, the tenants are taken up again when
 * it changes (a Secret updated in place): a new tenant's credentials work at once, a removed
 * tenant's are refused, changed policies apply to what comes next. A file that cannot be read or
 * does not parse keeps the tenants in use (logged without its contents, counted in
 * `gateway_config_reloads_total{source="tenants",outcome="rejected"}`).
 *
 * Whatever looks a tenant up asks here each time, never keeps the list: a tenant may be gone at
 * the next look, and per-tenant state must then fall back to the deployment's defaults.
 */
export class ConfiguredTenants {
  #tenants: readonly Tenant[];
  #watch: WatchedFiles | undefined;

  private constructor(tenants: readonly Tenant[]) {
    this.#tenants = tenants;
  }

  /** The tenants of the settings, watched when they came from a file. */
  static start(settings: TenantsSettings, log: Logger): ConfiguredTenants {
    const configured = new ConfiguredTenants(settings.tenants);
    if (settings.file) configured.#watch = watchSecretFile(settings.file, 'tenants', parseTenants, (tenants) => configured.#replace(tenants, log), log);
    return configured;
  }

  /** A fixed list (tools and tests). */
  static of(tenants: readonly Tenant[]): ConfiguredTenants {
    return new ConfiguredTenants(tenants);
  }

  /** Every configured tenant now. */
  get current(): readonly Tenant[] {
    return this.#tenants;
  }

  /** The tenant of that name, or undefined when it is not (or no longer) configured. */
  find(name: string): Tenant | undefined {
    return this.#tenants.find((t) => t.name === name);
  }

  #replace(tenants: readonly Tenant[], log: Logger): void {
    const before = new Set(this.#tenants.map((t) => t.name));
    const after = new Set(tenants.map((t) => t.name));
    this.#tenants = tenants;
    // Names only: the file holds every tenant's secret.
    log.info({ added: [...after].filter((n) => !before.has(n)), removed: [...before].filter((n) => !after.has(n)), tenants: tenants.length }, 'tenants changed');
  }

  /** Stops watching the file; the tenants in use stay readable. Safe to repeat. */
  close(): void {
    this.#watch?.close();
    this.#watch = undefined;
  }

  /** Reads the file now (tests: no waiting for the watch). */
  async check(): Promise<void> {
    await this.#watch?.check();
  }
}
