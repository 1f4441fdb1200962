import type { Logger, NatsConnection } from '@gateway/common';
import type { MsgHdrs, Subscription } from '@nats-io/transport-node';
import type { RoutingClient } from './RoutingClient.js';

/** What routing published, with its headers (the trace context of a contact that connected). */
type Listener = (data: Uint8Array, headers: MsgHdrs | undefined) => void;

/** How often the agents' and end users' apps connected here are reported to routing (its presence timeout is a few times this). */
export const PRESENCE_REPORT_MS = 5_000;

/**
 * The desk connections of one signaling replica: one NATS subscription per routing subject,
 * shared by the connections that listen to it (an agent with two tabs), and the presence report
 * every few seconds that holds agents available and end users in their queues while their apps
 * are connected (docs/routing.md).
 */
export class DeskHub {
  private readonly subscriptions = new Map<string, { subscription: Subscription; listeners: Set<Listener> }>();
  /** Connected here, per tenant: agent ids and contact ids, counted (several connections may hold one). */
  private readonly agents = new Map<string, Map<string, number>>();
  private readonly contacts = new Map<string, Map<string, number>>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly nc: NatsConnection,
    private readonly routing: RoutingClient,
    private readonly replicaId: string,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.report(), PRESENCE_REPORT_MS);
    this.timer.unref();
  }

  /** Listens to a routing subject until the returned function is called. */
  listen(subject: string, listener: Listener): () => void {
    let entry = this.subscriptions.get(subject);
    if (!entry) {
      const listeners = new Set<Listener>();
      const subscription = this.nc.subscribe(subject, {
        callback: (error, msg) => {
          if (error) return;
          for (const each of listeners) each(msg.data, msg.headers);
        },
      });
      entry = { subscription, listeners };
      this.subscriptions.set(subject, entry);
    }
    entry.listeners.add(listener);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      entry.listeners.delete(listener);
      if (entry.listeners.size === 0) {
        entry.subscription.unsubscribe();
        this.subscriptions.delete(subject);
      }
    };
  }

  /** An agent's app is connected here until the returned function is called. */
  holdAgent(tenant: string, agentId: string): () => void {
    return this.hold(this.agents, tenant, agentId);
  }

  /** An end user's contact is held by an app connected here until the returned function is called. */
  holdContact(tenant: string, contactId: string): () => void {
    return this.hold(this.contacts, tenant, contactId);
  }

  private hold(table: Map<string, Map<string, number>>, tenant: string, key: string): () => void {
    const held = table.get(tenant) ?? new Map<string, number>();
    table.set(tenant, held);
    held.set(key, (held.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (held.get(key) ?? 1) - 1;
      if (left > 0) held.set(key, left);
      else held.delete(key);
      if (held.size === 0) table.delete(tenant);
    };
  }

  private async report(): Promise<void> {
    const sends: Array<Promise<unknown>> = [];
    for (const [tenant, held] of this.agents) sends.push(this.routing.send(tenant, { $case: 'presence', value: { replica: this.replicaId, agentIds: [...held.keys()] } }));
    for (const [tenant, held] of this.contacts) sends.push(this.routing.send(tenant, { $case: 'endUserPresence', value: { replica: this.replicaId, contactIds: [...held.keys()] } }));
    for (const outcome of await Promise.allSettled(sends)) {
      if (outcome.status === 'rejected') this.log.debug({ err: outcome.reason }, 'presence report not taken; the next one follows');
    }
  }

  close(): void {
    clearInterval(this.timer);
    for (const { subscription } of this.subscriptions.values()) subscription.unsubscribe();
    this.subscriptions.clear();
  }
}
