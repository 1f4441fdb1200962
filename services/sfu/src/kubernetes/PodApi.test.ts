import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GatewayError } from '@gateway/common';
import { KubernetesApiServer } from '../../../../test/contracts/kubernetes/server.js';
import { hostileAnswer } from '../../../../test/contracts/kubernetes/hostileAnswers.js';
import { seededRandom } from '../../../../test/support/seededRandom.js';
import { PodApi, type PodApiFailure } from './PodApi.js';

const COST = 'controller.kubernetes.io/pod-deletion-cost';
const failures: readonly PodApiFailure[] = ['credentials', 'unauthenticated', 'forbidden', 'not_found', 'refused', 'rate_limited', 'server_error', 'unreachable', 'bad_answer'];

/** PodApi against the contract server of the Kubernetes API (test/contracts/kubernetes). */
describe('PodApi: the SFU annotating its own Pod', () => {
  let api: KubernetesApiServer;
  let dir: string;
  const pod = { name: 'sfu-0', namespace: 'gateway-media' };
  const client = (name = pod.name) => new PodApi({ pod: { ...pod, name }, apiServer: { host: api.host, port: api.port }, serviceAccountDir: dir });
  /** Replaces the token file as the kubelet does: a new file moved into place. */
  const writeToken = (token: string) => {
    writeFileSync(path.join(dir, 'token.new'), token);
    renameSync(path.join(dir, 'token.new'), path.join(dir, 'token'));
  };
  const failureOf = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatewayError);
    return error as GatewayError;
  };

  beforeAll(async () => {
    api = await KubernetesApiServer.start();
    dir = mkdtempSync(path.join(tmpdir(), 'gateway-serviceaccount-'));
    copyFileSync(api.caFile, path.join(dir, 'ca.crt'));
  });
  afterAll(async () => {
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    api.honest();
    api.allow(pod.namespace, [pod.name]);
    api.addPod(pod.namespace, pod.name);
    api.addPod(pod.namespace, 'sfu-1');
    writeToken(api.currentToken);
  });

  it('writes the annotation with a merge patch and takes the Pod answered only as written', async () => {
    const pods = client();
    await pods.patchAnnotations({ [COST]: '17' });
    expect(api.deletionCost(pod.namespace, pod.name)).toBe(17);
    await pods.patchAnnotations({ [COST]: '-2147483648' });
    expect(api.deletionCost(pod.namespace, pod.name)).toBe(-2_147_483_648);
    expect(api.requests.at(-1)).toMatchObject({ method: 'PATCH', path: '/api/v1/namespaces/gateway-media/pods/sfu-0', contentType: 'application/merge-patch+json', status: 200 });
    pods.close();
  });

  it('names why a write failed: the token, the grant, the Pod, the server', async () => {
    const pods = client();
    writeToken('not-the-token');
    expect((await failureOf(pods.patchAnnotations({ [COST]: '1' }))).details).toMatchObject({ failure: 'unauthenticated', status: 401 });
    writeToken(api.currentToken);
    expect((await failureOf(client('sfu-1').patchAnnotations({ [COST]: '1' }))).details).toMatchObject({ failure: 'forbidden', status: 403 });
    api.allow(pod.namespace, '*');
    expect((await failureOf(client('sfu-9').patchAnnotations({ [COST]: '1' }))).details).toMatchObject({ failure: 'not_found', status: 404 });
    api.failNext({ kind: 'status', status: 429, retryAfter: '3' }, { kind: 'status', status: 503 }, { kind: 'status', status: 500, retryAfter: '1' });
    expect((await failureOf(pods.patchAnnotations({ [COST]: '1' }))).details).toEqual({ failure: 'rate_limited', status: 429, retryAfterMs: 3_000 });
    expect((await failureOf(pods.patchAnnotations({ [COST]: '1' }))).details).toEqual({ failure: 'server_error', status: 503 });
    expect((await failureOf(pods.patchAnnotations({ [COST]: '1' }))).details).toEqual({ failure: 'server_error', status: 500, retryAfterMs: 1_000 });
    // The API server refuses a cost that is no 32-bit integer.
    expect((await failureOf(pods.patchAnnotations({ [COST]: 'high' }))).details).toMatchObject({ failure: 'refused', status: 422 });
    rmSync(path.join(dir, 'token'));
    expect((await failureOf(pods.patchAnnotations({ [COST]: '1' }))).details).toMatchObject({ failure: 'credentials' });
    expect(api.deletionCost(pod.namespace, pod.name)).toBeUndefined();
    pods.close();
  });

  it('reads the token file again at each write: a rotated token is used at once', async () => {
    const pods = client();
    await pods.patchAnnotations({ [COST]: '1' });
    // The server takes the new token only, and the file has it before the next write.
    writeToken(api.rotateToken());
    await pods.patchAnnotations({ [COST]: '2' });
    expect(api.deletionCost(pod.namespace, pod.name)).toBe(2);
    expect(api.requests.at(-1)).toMatchObject({ token: api.currentToken, status: 200 });
    pods.close();
  });

  it('fuzz: hostile answers (bad JSON, huge bodies, no Pod, another Pod, cut connections) are failures with a reason, never believed, never a crash', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 25);
    const random = seededRandom(seed);
    const pods = client();
    api.answerWith(() => hostileAnswer(random));
    for (let i = 0; i < 60; i++) {
      const error = await failureOf(pods.patchAnnotations({ [COST]: String(i) }));
      expect(failures, `seed ${seed}, answer ${i}: ${error.message}`).toContain(error.details.failure);
    }
    expect(api.deletionCost(pod.namespace, pod.name)).toBeUndefined();
    // And the client still writes once the server is honest again.
    api.honest();
    await pods.patchAnnotations({ [COST]: '3' });
    expect(api.deletionCost(pod.namespace, pod.name)).toBe(3);
    pods.close();
  });
});
