import { readFileSync } from 'node:fs';
import https from 'node:https';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubernetesApiServer, mergePatch } from './server.js';

/** The contract server answers the pod PATCH as the Kubernetes API server does. */

describe('the Kubernetes API contract server: a Pod patching itself', () => {
  let api: KubernetesApiServer;
  let ca: Buffer;

  beforeAll(async () => {
    api = await KubernetesApiServer.start();
    ca = readFileSync(api.caFile);
  });
  afterAll(() => api?.close());
  beforeEach(() => {
    api.honest();
    api.allow('gateway-media', ['sfu-a']);
    api.addPod('gateway-media', 'sfu-a');
    api.addPod('gateway-media', 'sfu-b');
  });

  const patch = (body: unknown, options: { path?: string; token?: string; contentType?: string; trust?: Buffer } = {}): Promise<{ status: number; headers: Record<string, unknown>; json: any }> =>
    new Promise((resolve, reject) => {
      const request = https.request(
        {
          host: api.host,
          port: api.port,
          method: 'PATCH',
          path: options.path ?? '/api/v1/namespaces/gateway-media/pods/sfu-a',
          ca: options.trust ?? ca,
          headers: { authorization: `Bearer ${options.token ?? api.currentToken}`, 'content-type': options.contentType ?? 'application/merge-patch+json' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
        },
      );
      request.on('error', reject);
      request.end(JSON.stringify(body));
    });
  const annotate = (annotations: Record<string, string | null>) => ({ metadata: { annotations } });

  it('serves HTTPS under a CA of its own: a client trusting another CA is refused the connection', async () => {
    const other = KubernetesApiServer.start();
    const stranger = await other;
    try {
      await expect(patch(annotate({ a: '1' }), { trust: readFileSync(stranger.caFile) })).rejects.toThrow(/certificate/);
    } finally {
      await stranger.close();
    }
  });

  it('merges annotations (RFC 7386): adds, replaces, removes with null, keeps the rest; answers the Pod with a new resourceVersion', async () => {
    const before = api.pod('gateway-media', 'sfu-a')!.metadata.resourceVersion;
    expect((await patch(annotate({ keep: 'x', 'controller.kubernetes.io/pod-deletion-cost': '12' }))).status).toBe(200);
    const answer = await patch(annotate({ 'controller.kubernetes.io/pod-deletion-cost': '-3', gone: null }));
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ kind: 'Pod', metadata: { name: 'sfu-a', namespace: 'gateway-media', annotations: { keep: 'x', 'controller.kubernetes.io/pod-deletion-cost': '-3' } } });
    expect(answer.json.metadata.resourceVersion).not.toBe(before);
    expect(api.deletionCost('gateway-media', 'sfu-a')).toBe(-3);
    expect((await patch(annotate({ keep: null }))).json.metadata.annotations).toEqual({ 'controller.kubernetes.io/pod-deletion-cost': '-3' });
    expect(api.pod('gateway-media', 'sfu-b')!.metadata.annotations).toEqual({});
    expect(mergePatch({ a: { b: 1, c: [1] } }, { a: { c: [2], d: null } })).toEqual({ a: { b: 1, c: [2] } });
  });

  it('401 for a wrong or missing token, and for the token before a rotation', async () => {
    expect((await patch(annotate({ a: '1' }), { token: 'nope' })).json).toMatchObject({ kind: 'Status', reason: 'Unauthorized', code: 401 });
    const old = api.currentToken;
    api.rotateToken();
    expect((await patch(annotate({ a: '1' }), { token: old })).status).toBe(401);
    expect((await patch(annotate({ a: '1' }))).status).toBe(200);
  });

  it('403 for a Pod or a namespace the grant does not name; 404 for an unknown Pod it does', async () => {
    expect((await patch(annotate({ a: '1' }), { path: '/api/v1/namespaces/gateway-media/pods/sfu-b' })).json).toMatchObject({ reason: 'Forbidden', code: 403 });
    expect((await patch(annotate({ a: '1' }), { path: '/api/v1/namespaces/gateway/pods/sfu-a' })).status).toBe(403);
    api.allow('gateway-media', '*');
    expect((await patch(annotate({ a: '1' }), { path: '/api/v1/namespaces/gateway-media/pods/sfu-zz' })).json).toMatchObject({ reason: 'NotFound', code: 404 });
  });

  it('415 for a patch type other than a merge patch', async () => {
    for (const contentType of ['application/json', 'application/strategic-merge-patch+json', 'text/plain'])
      expect((await patch(annotate({ a: '1' }), { contentType })).json).toMatchObject({ reason: 'UnsupportedMediaType', code: 415 });
  });

  it('422 for a deletion cost that is no 32-bit integer, a value that is no string, or a change beyond the metadata', async () => {
    for (const cost of ['1.5', '2147483648', 'low', '']) expect((await patch(annotate({ 'controller.kubernetes.io/pod-deletion-cost': cost }))).json).toMatchObject({ reason: 'Invalid', code: 422 });
    expect((await patch({ metadata: { annotations: { a: 1 } } })).status).toBe(422);
    expect((await patch({ spec: { containers: [] } })).status).toBe(422);
    expect((await patch({ metadata: { name: 'other' } })).status).toBe(422);
    expect(api.pod('gateway-media', 'sfu-a')!.metadata.annotations).toEqual({});
  });

  it('answers injected faults in order: 429 with Retry-After, then 500, then honestly', async () => {
    api.failNext({ kind: 'status', status: 429, retryAfter: '2' }, { kind: 'status', status: 500 });
    const limited = await patch(annotate({ a: '1' }));
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('2');
    expect(limited.json).toMatchObject({ kind: 'Status', reason: 'TooManyRequests' });
    expect((await patch(annotate({ a: '1' }))).status).toBe(500);
    expect((await patch(annotate({ a: '1' }))).status).toBe(200);
    expect(api.requests.slice(-3).map((r) => [r.status, r.fault])).toEqual([
      [429, 'status'],
      [500, 'status'],
      [200, undefined],
    ]);
  });
});
