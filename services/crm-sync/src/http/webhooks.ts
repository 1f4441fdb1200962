import type http from 'node:http';
import { jetstream } from '@nats-io/jetstream';
import { ErrorCode, GatewayError, hasBody, methodNotAllowed, newId, readJsonRequest, refuseQuery, sendJson as send, subjects, type NatsConnection } from '@gateway/common';
import type { WebhookStore } from '../webhooks/WebhookStore.js';

const MAX_BODY_BYTES = 8 * 1024;
const BODY_SHAPE = { maxDepth: 3, maxNodes: 100 };
const collection = '/v1/webhooks';
const member = /^\/v1\/webhooks\/([A-Za-z0-9_-]{1,64})(?:\/(rotate-secret|test))?$/;

/** Whether the request is one of these routes' and takes a body (the admin API refuses bodies elsewhere). */
export function webhookRouteTakesBody(method: string | undefined, path: string): boolean {
  if (path === collection) return method === 'POST';
  const match = member.exec(path);
  return match !== null && ((match[2] === undefined && method === 'PATCH') || (match[2] === 'rotate-secret' && method === 'POST'));
}

/**
 * The webhook endpoints of the admin API (docs/webhooks.md); false when the path is not one of
 * theirs.
 *   GET    /v1/webhooks                       list (secrets are never shown)
 *   POST   /v1/webhooks                       {url, events?, description?, enabled?} → 201 {webhook, secret}
 *   GET    /v1/webhooks/{id}
 *   PATCH  /v1/webhooks/{id}                  {url?, events?, description?, enabled?}
 *   DELETE /v1/webhooks/{id}
 *   POST   /v1/webhooks/{id}/rotate-secret    {overlapSeconds?} → {webhook, secret}
 *   POST   /v1/webhooks/{id}/test             a webhook.test event to that endpoint → 202 {eventId}
 */
export async function routeWebhooks(req: http.IncomingMessage, res: http.ServerResponse, url: URL, tenant: string, webhooks: WebhookStore, nc: NatsConnection): Promise<boolean> {
  const body = () => readJsonRequest(req, 'the webhook', MAX_BODY_BYTES, BODY_SHAPE);
  if (url.pathname === collection) {
    refuseQuery(url);
    if (req.method === 'GET') send(res, 200, { webhooks: await webhooks.list(tenant) });
    else if (req.method === 'POST') send(res, 201, await webhooks.create(tenant, await body()));
    else throw methodNotAllowed(['GET', 'POST']);
    return true;
  }
  const match = member.exec(url.pathname);
  if (!match) return false;
  refuseQuery(url);
  const [, webhookId, action] = match as unknown as [string, string, 'rotate-secret' | 'test' | undefined];
  if (action === 'rotate-secret') {
    if (req.method !== 'POST') throw methodNotAllowed(['POST']);
    send(res, 200, await webhooks.rotateSecret(tenant, webhookId, hasBody(req) ? await body() : {}));
    return true;
  }
  if (action === 'test') {
    if (req.method !== 'POST') throw methodNotAllowed(['POST']);
    await webhooks.get(tenant, webhookId);
    // Straight to this endpoint's deliveries: posted, signed and retried like any event.
    const event = { id: newId('evt'), type: 'webhook.test', createdAtMs: Date.now(), data: { webhookId } };
    await jetstream(nc)
      .publish(subjects.webhookDelivery(tenant, webhookId), JSON.stringify(event), { msgID: `${event.id}.${webhookId}`, timeout: 10_000 })
      .catch((error: unknown) => {
        throw new GatewayError(ErrorCode.UNAVAILABLE, 'the test event could not be queued', { cause: error });
      });
    send(res, 202, { eventId: event.id });
    return true;
  }
  switch (req.method) {
    case 'GET':
      send(res, 200, await webhooks.get(tenant, webhookId));
      break;
    case 'PATCH':
      send(res, 200, await webhooks.update(tenant, webhookId, await body()));
      break;
    case 'DELETE':
      await webhooks.remove(tenant, webhookId);
      send(res, 204);
      break;
    default:
      throw methodNotAllowed(['GET', 'PATCH', 'DELETE']);
  }
  return true;
}
