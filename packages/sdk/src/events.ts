/**
 * A tiny typed event emitter that runs in browsers (the SDK cannot use node:events). Listeners
 * run in the order they were added; one that throws does not stop the others, nor the SDK
 * code that emitted: its exception is rethrown on its own task, where the browser reports it.
 */
export class Emitter<E extends { [K in keyof E]: unknown[] }> {
  private readonly listeners = new Map<keyof E, Set<unknown>>();

  on<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return this;
  }

  off<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  once<K extends keyof E>(event: K, listener: (...args: E[K]) => void): this {
    const wrapper = (...args: E[K]) => {
      this.off(event, wrapper);
      listener(...args);
    };
    return this.on(event, wrapper);
  }

  protected emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (...a: E[K]) => void)(...args);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  protected removeAllListeners(): void {
    this.listeners.clear();
  }
}

/** An emitter's emit, handed to the parts of an object that emit events on its behalf. */
export type Emit<E extends { [K in keyof E]: unknown[] }> = <K extends keyof E>(event: K, ...args: E[K]) => void;
