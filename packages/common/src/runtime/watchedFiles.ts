import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { GatewayError } from '../errors.js';
import { TypedEmitter } from './TypedEmitter.js';

/**
 * Files a service takes up again while it runs (certificates, keys): rotation without a
 * restart. Kubernetes updates a mounted Secret by swapping a symlink in its directory, which a
 * watch on the file itself would miss, so the files' directories are watched, and a periodic
 * read catches whatever the watch did not (some volumes send no events at all).
 */

/** How often the files are read even without an event: the fallback, not the usual way. */
export const FILE_RELOAD_INTERVAL_MS = 30_000;
/** Events come in bursts (a symlink swap is several); the files are read once the burst is over. */
const SETTLE_MS = 200;

/**
 * Every reload of every watched source in this process, for metrics: `createMetricsRegistry`
 * counts them (`gateway_config_reloads_total{source, outcome}`).
 */
export const fileReloads = new TypedEmitter<{ reloaded: [source: string]; rejected: [source: string] }>();

export interface WatchedFilesOptions {
  /** What the files are, in logs and metrics (`grpc-tls`, `tenant-keys`). */
  source: string;
  files: readonly string[];
  /** The contents already in use (read at start-up), so an unchanged file is not taken up twice. */
  initial: readonly Buffer[];
  /**
   * Checks and takes up new contents, in the order of `files`. Throwing keeps what is in use;
   * the error's code and message are logged, so they must never quote the contents.
   */
  apply: (contents: Buffer[]) => void;
  log: Logger;
  intervalMs?: number;
}

const digestOf = (contents: readonly Buffer[]) => {
  const hash = createHash('sha256');
  for (const content of contents) hash.update(createHash('sha256').update(content).digest());
  return hash.digest('hex');
};

export class WatchedFiles {
  readonly #options: WatchedFilesOptions;
  /** The contents last looked at, taken up or not: the same contents are judged once. */
  #seen: string;
  /** The contents in use: back to them after a refusal or a moment unreadable is no change. */
  #inUse: string;
  readonly #watchers: FSWatcher[] = [];
  readonly #timer: ReturnType<typeof setInterval>;
  #settle: ReturnType<typeof setTimeout> | undefined;
  #checking: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(options: WatchedFilesOptions) {
    this.#options = options;
    this.#seen = digestOf(options.initial);
    this.#inUse = this.#seen;
    for (const directory of new Set(options.files.map((file) => path.dirname(path.resolve(file))))) {
      try {
        // Not persistent: a watch never keeps a stopping service alive.
        const watcher = watch(directory, { persistent: false }, () => this.#soon());
        watcher.on('error', () => watcher.close());
        this.#watchers.push(watcher);
      } catch {
        // No watch on this file system: the periodic read alone then.
      }
    }
    this.#timer = setInterval(() => void this.check(), options.intervalMs ?? FILE_RELOAD_INTERVAL_MS);
    this.#timer.unref();
  }

  #soon(): void {
    if (this.#closed) return;
    clearTimeout(this.#settle);
    this.#settle = setTimeout(() => void this.check(), SETTLE_MS);
    this.#settle.unref();
  }

  /** Reads the files now and takes them up if they changed; resolves once that is done. */
  async check(): Promise<void> {
    if (this.#checking) {
      this.#again = true;
      return this.#checking;
    }
    this.#checking = this.#read().finally(() => {
      this.#checking = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.check();
      }
    });
    return this.#checking;
  }

  async #read(): Promise<void> {
    const { source, files, apply, log } = this.#options;
    let contents: Buffer[];
    try {
      contents = await Promise.all(files.map((file) => readFile(file)));
    } catch (error) {
      // A file missing for a moment (being replaced) is looked at again at the next event or tick.
      if (this.#seen !== 'unreadable') {
        this.#seen = 'unreadable';
        fileReloads.safeEmit('rejected', source);
        log.warn({ source, reason: (error as NodeJS.ErrnoException).code ?? 'unreadable' }, 'a watched file cannot be read: the contents in use stay');
      }
      return;
    }
    if (this.#closed) return;
    const digest = digestOf(contents);
    if (digest === this.#seen) return;
    this.#seen = digest;
    if (digest === this.#inUse) return;
    try {
      apply(contents);
    } catch (error) {
      fileReloads.safeEmit('rejected', source);
      const code = error instanceof GatewayError ? error.code : undefined;
      log.error({ source, code, reason: error instanceof GatewayError ? error.message : 'rejected' }, 'new contents of watched files rejected: the contents in use stay');
      return;
    }
    this.#inUse = digest;
    fileReloads.safeEmit('reloaded', source);
    log.info({ source }, 'watched files changed: new contents in use');
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#settle);
    for (const watcher of this.#watchers) watcher.close();
  }
}
