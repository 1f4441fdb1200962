import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type DeliveryMetrics = ReturnType<typeof createDeliveryMetrics>;

/**
 * Where a delivery's time goes. `read` is observed per artifact read: the time its reader waited
 * on the artifact store (the data-key record, the chunks over NATS, their decryption);
 * `destinations` holds the reads, so a destination's own time is the difference.
 */
export type DeliveryStage = 'contacts' | 'read' | 'destinations' | 'delete' | 'settle';

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
    stage: new Histogram({
      name: 'gateway_crm_sync_stage_seconds',
      help: 'Time spent in each stage of successful deliveries: contacts (opening sealed participants), read (per artifact: waiting on the artifact store, NATS and decryption), destinations (every destination, reads included, with their confirmations), delete (our copies), settle (erasing and acknowledging the event)',
      labelNames: ['stage'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
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

/** Runs one stage of a delivery and records its time when it succeeds (a failure's time says nothing of the stage). */
export async function timeStage<T>(metrics: Pick<DeliveryMetrics, 'stage'>, stage: DeliveryStage, work: () => Promise<T>): Promise<T> {
  const began = performance.now();
  const result = await work();
  metrics.stage.observe({ stage }, (performance.now() - began) / 1000);
  return result;
}
