/**
 * What a service opens while it starts (a NATS connection, mediasoup workers, a listening port),
 * closed again, latest first, when a later step fails: a start-up that fails half way leaves
 * nothing behind, which matters where services start inside one process (the tests) and where a
 * supervisor retries a start in place. Once the start succeeds, the service's own `close()`
 * owns everything, in the order its shutdown needs.
 */
export class Startup {
  private readonly undo: Array<() => unknown> = [];

  private constructor() {}

  /** Runs a service's start; when it throws, closes what it had opened and throws the start's error. */
  static async run<T>(start: (startup: Startup) => Promise<T>): Promise<T> {
    const startup = new Startup();
    try {
      return await start(startup);
    } catch (error) {
      await startup.unwind();
      throw error;
    }
  }

  /** Remembers how to close what a step opened, and hands it back. */
  opened<T>(resource: T, close: (resource: T) => unknown): T {
    this.undo.push(() => close(resource));
    return resource;
  }

  private async unwind(): Promise<void> {
    for (const close of this.undo.reverse()) {
      // A close that fails must not hide the start's own error, nor stop the closes after it.
      await Promise.resolve()
        .then(close)
        .catch(() => undefined);
    }
  }
}
