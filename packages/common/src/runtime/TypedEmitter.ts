import { EventEmitter } from 'node:events';

/**
 * An EventEmitter checked against an events map. `safeEmit` catches listener exceptions so a
 * faulty listener (metrics, audit) never breaks the object that emits.
 */
export type EventMap = Record<string, unknown[]>;

export class TypedEmitter<E extends EventMap> {
  readonly #emitter = new EventEmitter();

  constructor() {
    this.#emitter.setMaxListeners(Infinity);
  }

  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#emitter.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#emitter.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    this.#emitter.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  removeAllListeners(): this {
    this.#emitter.removeAllListeners();
    return this;
  }

  safeEmit<K extends keyof E & string>(event: K, ...args: E[K]): boolean {
    const listeners = this.#emitter.listeners(event);
    for (const listener of listeners) {
      try {
        (listener as (...a: E[K]) => void)(...args);
      } catch (error) {
        // Listener bugs must not break the emitter; surface them asynchronously.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    return listeners.length > 0;
  }
}
