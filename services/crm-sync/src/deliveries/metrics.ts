import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type DeliveryMetrics = ReturnType<typeof createDeliveryMetrics>;

/** crm-sync's delivery metrics; `load` is read at each scrape. */
export function createDeliveryMetrics(registry: Registry, load: () => { running: number; waiting: number }) {
  return {
    deliveries: new Counter({
      name: 'gateway_crm_sync_deliveries_total',
      help: 'Deliveries to customer destinations by adapter, kind and result',
      labelNames: ['adapter', 'kind', 'result'] as const,
      registers: [registry],
    }),
    expired: new Counter({
      name: 'gateway_crm_sync_expired_total',
      help: 'Communications deleted undelivered because the retention limit passed (an alert each)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    missing: new Counter({
      name: 'gateway_crm_sync_artifacts_missing_total',
      help: 'Delivery attempts that found an artifact gone before every destination confirmed (an alert each)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    deferred: new Counter({
      name: 'gateway_crm_sync_deferred_total',
      help: 'Events handed back for later because their tenant had its deliveries running at its limit',
      registers: [registry],
    }),
    terminated: new Counter({
      name: 'gateway_crm_sync_malformed_events_total',
      help: 'Events terminated because they are not what crm-sync takes (malformed, or a tenant other than their subject)',
      registers: [registry],
    }),
    seconds: new Histogram({
      name: 'gateway_crm_sync_delivery_duration_seconds',
      help: 'Time from taking an event to its acknowledgement, for successful deliveries',
      labelNames: ['kind'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'gateway_crm_sync_deliveries_in_progress',
      help: 'Deliveries running (state="running") and waiting for a slot (state="waiting")',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const { running, waiting } = load();
        this.set({ state: 'running' }, running);
        this.set({ state: 'waiting' }, waiting);
      },
    }),
  };
}
