import type { types } from 'mediasoup-client';
import { backoffDelayMs } from '@gateway/common/backoff';

/** What an ICE restart looks at on a transport. */
export type RestartableTransport = Pick<types.Transport, 'closed' | 'connectionState'>;

export interface IceRestartsContext<T extends RestartableTransport> {
  /** Whether the room is gone (nothing to restart any more). */
  isClosed(): boolean;
  /** Whether signaling is connected: while it reconnects, its restore restarts ICE anyway. */
  signalingConnected(): boolean;
  /** Asks the server for new ICE credentials and hands them to the transport. */
  restart(transport: T): Promise<void>;
}

/**
 * Brings a transport's media path back while signaling is fine (a network change, say): ICE is
 * restarted when the transport fails or stays disconnected, and again with backoff until it
 * connects, since new credentials do not guarantee a path.
 */
export class IceRestarts<T extends RestartableTransport = types.Transport> {
  private readonly pending = new Map<T, { timer?: ReturnType<typeof setTimeout>; attempts: number }>();

  constructor(private readonly context: IceRestartsContext<T>) {}

  /** Call on every connectionstatechange of a transport. */
  onStateChange(transport: T, state: types.ConnectionState): void {
    if (state === 'connected') {
      this.forget(transport);
    } else if (state === 'failed' || state === 'disconnected') {
      // 'disconnected' often heals by itself within a second or two; 'failed' never does.
      this.schedule(transport, state === 'failed' ? 0 : 1_500);
    }
  }

  /** Stops looking after a transport (it connected, or is being closed). */
  forget(transport: T): void {
    clearTimeout(this.pending.get(transport)?.timer);
    this.pending.delete(transport);
  }

  cancelAll(): void {
    for (const entry of this.pending.values()) clearTimeout(entry.timer);
    this.pending.clear();
  }

  private schedule(transport: T, delayMs: number): void {
    const entry = this.pending.get(transport) ?? { attempts: 0 };
    if (entry.timer) return;
    this.pending.set(transport, entry);
    entry.timer = setTimeout(async () => {
      entry.timer = undefined;
      if (this.context.isClosed() || transport.closed || transport.connectionState === 'connected') return;
      if (!this.context.signalingConnected()) return;
      entry.attempts++;
      await this.context.restart(transport).catch(() => undefined);
      if (this.pending.get(transport) === entry) this.schedule(transport, backoffDelayMs(entry.attempts, { initialMs: 2_000, maxMs: 15_000 }));
    }, delayMs);
  }
}
