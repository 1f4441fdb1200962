import { ErrorCode, GatewayError, inSpan, type Logger } from '@gateway/common';
import type { Confirmations } from '../Confirmations.js';
import type { ConnectorStore, DeliveryConnector } from '../connectors/ConnectorStore.js';
import type { Delivery } from '../destinations/types.js';
import type { DeliveryMetrics } from './metrics.js';

export interface DeliverDeps {
  connectors: ConnectorStore;
  confirmations: Confirmations;
  metrics: Pick<DeliveryMetrics, 'deliveries'>;
  log: Logger;
}

/**
 * What an attempt knows of its delivery's confirmations: read from KV once at its start, and
 * added to as destinations confirm (so neither the purge nor the alert reads them again).
 */
export interface AttemptState {
  /** The tenant's connectors as the attempt saw them. */
  destinations: DeliveryConnector[];
  /** The connectors that hold a confirmation of the delivery (earlier attempts' and this one's). */
  confirmed: Set<string>;
}

/** Reads, once per attempt and side by side, the tenant's connectors (kept a short while, see ConnectorStore) and the delivery's confirmations. */
export async function attemptState(deps: Pick<DeliverDeps, 'connectors' | 'confirmations'>, delivery: Delivery): Promise<AttemptState> {
  const [destinations, confirmed] = await Promise.all([deps.connectors.forDelivery(delivery.tenant), deps.confirmations.confirmed(delivery.tenant, delivery.deliveryId)]);
  return { destinations, confirmed };
}

/**
 * Delivers to every destination of the tenant that has not confirmed the delivery yet, recording
 * each confirmation as it comes (into `state` too). Returns once all have it; throws when any
 * failed (see `failedDelivery`) or the tenant has no destination. `context` goes into the log lines.
 */
export async function deliverToAll(deps: DeliverDeps, delivery: Delivery, state: AttemptState, context: Record<string, unknown>): Promise<void> {
  const connectors = state.destinations;
  if (connectors.length === 0) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the tenant has no destination connected');
  // Destinations that confirmed on an earlier attempt have it already.
  const confirmed = state.confirmed;
  let delivered = 0;
  // Every destination is tried on each attempt, so one that fails (for hours, perhaps) does not
  // hold the delivery back from the others; each confirmation is recorded as it comes.
  const failures: GatewayError[] = [];
  for (const connector of connectors) {
    if (confirmed.has(connector.name)) {
      delivered++;
      continue;
    }
    try {
      await deliverTo(deps, delivery, connector);
      confirmed.add(connector.name);
      delivered++;
    } catch (error) {
      const failure = GatewayError.from(error);
      failures.push(failure);
      deps.log.warn({ ...context, adapter: connector.type, code: failure.code, reason: failure.message }, 'a destination failed the delivery');
      // An artifact gone is gone for every destination: no use trying the others.
      if (failure.details.artifactGone === true) break;
    }
  }
  if (failures.length > 0) throw failedDelivery(failures);
  if (delivered === 0) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the tenant has no destination connected');
}

/**
 * Delivers to one destination, through its client kept between deliveries, and records its
 * confirmation before anything is purged (a crash from then on finds it).
 */
async function deliverTo(deps: DeliverDeps, delivery: Delivery, connector: DeliveryConnector): Promise<void> {
  try {
    await deps.connectors.withDestination(delivery.tenant, connector, (destination) =>
      inSpan(`deliver to ${connector.type}`, { attributes: { 'gateway.adapter': connector.type } }, () => destination.deliver(delivery)),
    );
    deps.metrics.deliveries.inc({ adapter: connector.type, kind: delivery.kind, result: 'delivered' });
  } catch (error) {
    deps.metrics.deliveries.inc({ adapter: connector.type, kind: delivery.kind, result: 'failed' });
    throw error;
  }
  await deps.confirmations.record(delivery.tenant, delivery.deliveryId, connector.name);
}

/**
 * One error for an attempt on which destinations failed: a missing artifact if one said so (it
 * decides what happens next), else the first failure; it carries the longest wait any of them
 * asked for, so that none is asked again before it said it could take it.
 */
function failedDelivery(failures: GatewayError[]): GatewayError {
  const main = failures.find((f) => f.details.artifactGone === true) ?? failures[0]!;
  const hints = failures.map((f) => Number(f.details.retryAfterMs ?? 0)).filter((ms) => Number.isFinite(ms) && ms > 0);
  if (failures.length === 1 || hints.length === 0) return main;
  return new GatewayError(main.code, main.message, { cause: main, details: { ...main.details, retryAfterMs: Math.max(...hints) } });
}
