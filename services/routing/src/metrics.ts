import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { AgentStatus, type QueueView } from '@gateway/proto/gateway/routing/v1/routing';
import type { RoutingObserver } from './ownership/TenantRouting.js';

const agentStates: Array<[AgentStatus, string]> = [
  [AgentStatus.AGENT_STATUS_AVAILABLE, 'available'],
  [AgentStatus.AGENT_STATUS_AWAY, 'away'],
  [AgentStatus.AGENT_STATUS_BUSY, 'busy'],
  [AgentStatus.AGENT_STATUS_AFTER_CONTACT_WORK, 'after_contact_work'],
  [AgentStatus.AGENT_STATUS_OFFLINE, 'offline'],
];

/**
 * The routing figures (docs/routing.md): the queues' state read from the tenants this replica
 * decides for at each scrape (labelled by tenant and queue ids, never names of people), and the
 * commands and offers as they happen.
 */
export function routingMetrics(registry: Registry, views: () => Array<{ tenant: string; view: QueueView }>): { observer: RoutingObserver } {
  const perQueue = (name: string, help: string, value: (q: QueueView['queues'][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['tenant', 'queue'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { tenant, view } of views()) for (const queue of view.queues) this.set({ tenant, queue: queue.queueId }, value(queue));
      },
    });
  perQueue('gateway_routing_contacts_waiting', 'contacts waiting in the queue (offered ones included)', (q) => q.waiting);
  perQueue('gateway_routing_longest_wait_seconds', 'how long the longest-waiting contact of the queue has waited', (q) => q.longestWaitSeconds);
  perQueue('gateway_routing_service_level_ratio', "today's contacts answered within the queue's target, of those answered or abandoned after it", (q) => q.serviceLevel);
  perQueue('gateway_routing_abandon_ratio', "today's contacts abandoned, of those that ended", (q) => q.abandonRate);
  new Gauge({
    name: 'gateway_routing_agents',
    help: 'agents by state',
    labelNames: ['tenant', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { tenant, view } of views()) {
        for (const [status, state] of agentStates) this.set({ tenant, state }, view.agents.filter((a) => a.status === status).length);
      }
    },
  });
  new Gauge({
    name: 'gateway_routing_tenants_owned',
    help: 'tenants this replica decides for (holds the lease of)',
    registers: [registry],
    collect() {
      this.set(views().length);
    },
  });
  const commands = new Histogram({
    name: 'gateway_routing_command_seconds',
    help: 'time to serve a routing command (stored before answered), by kind and outcome code',
    labelNames: ['command', 'code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const offers = new Counter({
    name: 'gateway_routing_offers_total',
    help: 'offers made and how they ended: offered, accepted, declined, expired',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const ended = new Counter({ name: 'gateway_routing_contacts_ended_total', help: 'contacts ended: completed or abandoned', labelNames: ['reason'], registers: [registry] });
  const offerLatency = new Histogram({
    name: 'gateway_routing_wait_to_offer_seconds',
    help: 'from asking for support to an offer, per offer',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900],
    registers: [registry],
  });
  return {
    observer: {
      command: (kind, code, durationMs) => commands.observe({ command: kind, code }, durationMs / 1000),
      event: (event, nowMs, contact) => {
        if (event.type === 'offered') {
          offers.inc({ outcome: 'offered' });
          if (contact) offerLatency.observe(Math.max(0, nowMs - contact.requestedAtMs) / 1000);
        } else if (event.type === 'connected') offers.inc({ outcome: 'accepted' });
        else if (event.type === 'declined') offers.inc({ outcome: 'declined' });
        else if (event.type === 'offer_expired') offers.inc({ outcome: 'expired' });
        else if (event.type === 'ended') ended.inc({ reason: event.reason });
      },
    },
  };
}
