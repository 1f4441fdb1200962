import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import type http from 'node:http';
import { createServerPki, type ServerPki } from '@gateway/testing';
import { drain, parseJsonObject, readBody, serveLocally, type LocalServer } from '../http.js';

/**
 * The part of the Kubernetes API a Pod uses to annotate itself, as the API server answers it:
 * PATCH /api/v1/namespaces/{namespace}/pods/{name} over HTTPS under a CA of its own, a bearer
 * token for one service account, whose grant (a Role) names the namespace and the pods it may
 * patch. The server checks in the API server's order: the token (401), the grant (403), the
 * patch type (415: only application/merge-patch+json here), the Pod (404), then applies the
 * JSON merge patch (RFC 7386) to the Pod; only metadata.annotations and metadata.labels may
 * change, annotations are strings, and the deletion cost annotation a 32-bit integer (422, as
 * the API server's Pod validation). It answers the Pod as it now is, with a new
 * resourceVersion; refusals are Status objects. Faults are injected on request: a status (429
 * with Retry-After, 500, ...) or a hostile answer (bad JSON, a huge body, another Pod, a cut
 * connection).
 */

/** A Pod as the server keeps it: what a PATCH answer carries, a little of a real one. */
export interface StoredPod {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: { name: string; namespace: string; uid: string; resourceVersion: string; labels: Record<string, string>; annotations: Record<string, string>; [field: string]: unknown };
  spec: { containers: Array<{ name: string; image: string }> };
  status: { phase: string };
}

/** What one request was and what it got: the tests read the order and the spacing of writes here. */
export interface RecordedRequest {
  atMs: number;
  method: string;
  path: string;
  token: string | undefined;
  contentType: string | undefined;
  status: number;
  /** The deletion cost annotation the patch carried, as written (null: removed). */
  deletionCost?: string | null;
  /** The fault injected instead of the honest answer, if any. */
  fault?: Fault['kind'];
}

/** An answer the honest server would not give. */
export type Fault =
  | { kind: 'status'; status: number; retryAfter?: string }
  /** 200 with a body that is not JSON. */
  | { kind: 'badJson' }
  /** 200 with a JSON body of `bytes` bytes, sent as fast as the client reads. */
  | { kind: 'hugeBody'; bytes: number }
  /** 200 with another Pod than the one patched. */
  | { kind: 'otherPod' }
  /** 200 with JSON that is no Pod (an array, a Status of success, a Pod without metadata). */
  | { kind: 'notPod'; body: unknown }
  /** Headers, then the connection cut halfway through the body. */
  | { kind: 'cut' }
  /** No answer at all until the client gives up. */
  | { kind: 'silent' };

const POD_DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';
const PATCH_BODY_LIMIT = 3 * 1024 * 1024;
const podPath = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/;

export class KubernetesApiServer {
  private readonly pods = new Map<string, StoredPod>();
  private token = randomBytes(24).toString('base64url');
  private grant: { namespace: string; pods: string[] | '*' } = { namespace: 'default', pods: '*' };
  private readonly faults: Fault[] = [];
  private hostile: (() => Fault | undefined) | undefined;
  private revision = 1000;
  readonly requests: RecordedRequest[] = [];

  private constructor(
    private readonly server: LocalServer,
    readonly pki: ServerPki,
  ) {}

  static async start(): Promise<KubernetesApiServer> {
    const pki = createServerPki('kube-apiserver', ['DNS:kubernetes.default.svc', 'DNS:localhost', 'IP:127.0.0.1']);
    let api: KubernetesApiServer | undefined;
    const server = await serveLocally(
      (req, res) => api!.handle(req, res),
      (res) => res.destroy(),
      { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) },
    );
    api = new KubernetesApiServer(server, pki);
    return api;
  }

  /** 127.0.0.1, as KUBERNETES_SERVICE_HOST gives it. */
  get host(): string {
    return '127.0.0.1';
  }

  get port(): number {
    return this.server.port;
  }

  /** The CA a client must trust (the service account's ca.crt). */
  get caFile(): string {
    return this.pki.caFile;
  }

  /** The only token taken from now on (as when the kubelet has rotated it and the old one expired). */
  get currentToken(): string {
    return this.token;
  }

  rotateToken(): string {
    this.token = randomBytes(24).toString('base64url');
    return this.token;
  }

  /** What the service account's Role grants: patching these pods (all with '*') of one namespace. */
  allow(namespace: string, pods: string[] | '*'): void {
    this.grant = { namespace, pods };
  }

  addPod(namespace: string, name: string): StoredPod {
    const pod: StoredPod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, uid: randomUUID(), resourceVersion: String(++this.revision), labels: { 'app.kubernetes.io/name': 'sfu' }, annotations: {} },
      spec: { containers: [{ name: 'sfu', image: 'gateway/sfu:0.1.0' }] },
      status: { phase: 'Running' },
    };
    this.pods.set(`${namespace}/${name}`, pod);
    return pod;
  }

  pod(namespace: string, name: string): StoredPod | undefined {
    return this.pods.get(`${namespace}/${name}`);
  }

  /** The Pod's deletion cost as the ReplicaSet controller would read it, or undefined. */
  deletionCost(namespace: string, name: string): number | undefined {
    const value = this.pod(namespace, name)?.metadata.annotations[POD_DELETION_COST];
    return value === undefined ? undefined : Number(value);
  }

  /** The next requests (after the token is checked) get these faults, one each, in order. */
  failNext(...faults: Fault[]): void {
    this.faults.push(...faults);
  }

  /** Every request gets the fault `pick` gives (an honest answer for undefined) until `honest()`. */
  answerWith(pick: () => Fault | undefined): void {
    this.hostile = pick;
  }

  honest(): void {
    this.hostile = undefined;
    this.faults.length = 0;
  }

  close(): Promise<void> {
    rmSync(this.pki.dir, { recursive: true, force: true });
    return this.server.close();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const authorization = req.headers.authorization;
    const token = authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : undefined;
    const record: RecordedRequest = { atMs: Date.now(), method: req.method ?? '', path: req.url ?? '', token, contentType: req.headers['content-type'], status: 0 };
    this.requests.push(record);
    const refuse = async (code: number, reason: string, message: string, headers: Record<string, string> = {}) => {
      await drain(req);
      record.status = code;
      sendJson(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }, headers);
    };
    if (token !== this.token) return refuse(401, 'Unauthorized', 'Unauthorized');
    const fault = this.hostile ? this.hostile() : this.faults.shift();
    if (fault) {
      record.fault = fault.kind;
      if (fault.kind === 'status') {
        return refuse(fault.status, fault.status === 429 ? 'TooManyRequests' : 'InternalError', 'injected', fault.retryAfter ? { 'retry-after': fault.retryAfter } : {});
      }
      await drain(req);
      record.status = fault.kind === 'silent' ? 0 : 200;
      return answerHostile(res, fault, req);
    }
    const match = podPath.exec(new URL(req.url ?? '/', 'https://localhost').pathname);
    const namespace = match ? decodeURIComponent(match[1]!) : '';
    const name = match ? decodeURIComponent(match[2]!) : '';
    if (!match) return refuse(404, 'NotFound', 'the server could not find the requested resource');
    const granted = namespace === this.grant.namespace && (this.grant.pods === '*' || this.grant.pods.includes(name));
    if (!granted) return refuse(403, 'Forbidden', `pods "${name}" is forbidden: cannot patch resource "pods" in the namespace "${namespace}"`);
    if (req.method !== 'PATCH') return refuse(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    const contentType = req.headers['content-type']?.split(';')[0]?.trim();
    if (contentType !== 'application/merge-patch+json')
      return refuse(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
      );
    const pod = this.pod(namespace, name);
    if (!pod) return refuse(404, 'NotFound', `pods "${name}" not found`);
    const body = await readBody(req, PATCH_BODY_LIMIT);
    const patch = body && parseJsonObject(body);
    if (!patch) return refuse(400, 'BadRequest', 'the patch is not a JSON object');
    const annotations = (patch.metadata as { annotations?: Record<string, unknown> } | undefined)?.annotations;
    if (annotations && POD_DELETION_COST in annotations) record.deletionCost = annotations[POD_DELETION_COST] as string | null;
    const patched = mergePatch(structuredClone(pod), patch) as StoredPod;
    const problem = invalidUpdate(pod, patched);
    if (problem) return refuse(422, 'Invalid', problem);
    patched.metadata.resourceVersion = String(++this.revision);
    this.pods.set(`${namespace}/${name}`, patched);
    record.status = 200;
    sendJson(res, 200, patched);
  }
}

function sendJson(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** JSON merge patch (RFC 7386): objects merge member by member, null removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** What the API server refuses of a Pod update made by a patch, as its 422 message; undefined when valid. */
function invalidUpdate(before: StoredPod, after: StoredPod): string | undefined {
  const { annotations = {}, labels = {}, ...metadata } = after.metadata ?? ({} as StoredPod['metadata']);
  const { annotations: _a, labels: _l, ...metadataBefore } = before.metadata;
  const { metadata: _m, ...rest } = after;
  const { metadata: _mb, ...restBefore } = before;
  if (JSON.stringify(metadata) !== JSON.stringify(metadataBefore) || JSON.stringify(rest) !== JSON.stringify(restBefore))
    return 'Pod is invalid: spec: Forbidden: pod updates may not change fields other than labels and annotations here';
  for (const [kind, map] of [
    ['annotations', annotations],
    ['labels', labels],
  ] as const) {
    if (typeof map !== 'object' || Array.isArray(map)) return `Pod is invalid: metadata.${kind}: Invalid value`;
    for (const [key, value] of Object.entries(map)) if (typeof value !== 'string') return `Pod is invalid: metadata.${kind}[${key}]: Invalid value: must be a string`;
  }
  const cost = (annotations as Record<string, string>)[POD_DELETION_COST];
  if (cost !== undefined) {
    const value = /^-?\d{1,10}$/.test(cost) ? Number(cost) : Number.NaN;
    if (!(value >= -2_147_483_648 && value <= 2_147_483_647)) return `Pod is invalid: metadata.annotations[${POD_DELETION_COST}]: Invalid value: "${cost}": must be a 32bit integer`;
  }
  return undefined;
}

function answerHostile(res: http.ServerResponse, fault: Exclude<Fault, { kind: 'status' }>, req: http.IncomingMessage): void {
  switch (fault.kind) {
    case 'badJson':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"Pod","metadata":{"name":');
      return;
    case 'hugeBody': {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let left = fault.bytes;
      res.write('{"kind":"Pod","padding":"');
      const pump = () => {
        while (left > 0) {
          left -= chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end('"}');
      };
      // A client that stops reading closes the connection; nothing more to send then.
      res.once('close', () => {
        left = 0;
      });
      pump();
      return;
    }
    case 'otherPod': {
      const [, namespace = 'default'] = podPath.exec(req.url ?? '') ?? [];
      sendJson(res, 200, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'someone-else', namespace, annotations: {} } });
      return;
    }
    case 'notPod':
      sendJson(res, 200, fault.body);
      return;
    case 'cut':
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '4096' });
      res.write('{"kind":"Pod",');
      setTimeout(() => res.destroy(), 10);
      return;
    case 'silent':
      // Held until the client gives up or the server closes.
      return;
  }
}
