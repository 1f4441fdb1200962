import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { drain, serveLocally, type LocalServer } from '../http.js';

/**
 * The instance metadata service of one cloud, as much of it as an instance asking for its public
 * address meets, answering as each cloud documents it:
 *
 * - AWS (IMDSv2 required, `HttpTokens=required`): PUT /latest/api/token takes
 *   X-aws-ec2-metadata-token-ttl-seconds (1 to 21,600; 400 without it or out of range) and
 *   answers a token; GET /latest/meta-data/public-ipv4 needs X-aws-ec2-metadata-token (401
 *   without it, or with a token it did not give or that expired) and answers 404 when the
 *   instance has no public IPv4 address. A request carrying X-Forwarded-For is refused (403).
 * - GCP: GET /computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip
 *   needs Metadata-Flavor: Google (403 without it, or with X-Forwarded-For); every answer carries
 *   Metadata-Flavor: Google; 404 when the interface has no access config (no external address).
 * - Azure: GET /metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress needs
 *   Metadata: true (400 without it, or with X-Forwarded-For) and api-version (400 without it);
 *   with format=text it answers the address, or an empty body when there is none (a Standard-SKU
 *   public IP or a load balancer's may not appear there).
 *
 * Faults are injected on request, one per request in order, or by a generator (fuzz): a status
 * (429 and 500 bursts, with Retry-After), a 200 with a body of anything, a huge body, a cut
 * connection, silence.
 */

export type Cloud = 'aws' | 'gcp' | 'azure';

export type Fault =
  | { kind: 'status'; status: number; retryAfter?: string }
  /** 200 with this body (hostile: random bytes, a private address, a list, a name...). */
  | { kind: 'body'; body: Buffer }
  | { kind: 'hugeBody'; bytes: number }
  /** Headers, then the connection cut halfway through the body. */
  | { kind: 'cut' }
  /** No answer until the client gives up. */
  | { kind: 'silent' };

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
  fault?: Fault['kind'];
  /** AWS: whether the request carried a token the server gave. */
  tokenValid?: boolean;
}

const AWS_TOKEN_PATH = '/latest/api/token';
const AWS_ADDRESS_PATH = '/latest/meta-data/public-ipv4';
const GCP_ADDRESS_PATH = '/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip';
const AZURE_ADDRESS_PATH = '/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress';

export class CloudMetadataServer {
  /** The instance's public address; undefined: it has none. */
  publicAddress: string | undefined = '52.95.110.1';
  readonly requests: RecordedRequest[] = [];
  private readonly tokens = new Map<string, number>();
  private readonly faults: Fault[] = [];
  private hostile: (() => Fault | undefined) | undefined;

  private constructor(
    readonly cloud: Cloud,
    private readonly server: LocalServer,
  ) {}

  static async start(cloud: Cloud): Promise<CloudMetadataServer> {
    let metadata: CloudMetadataServer | undefined;
    const server = await serveLocally((req, res) => metadata!.handle(req, res));
    metadata = new CloudMetadataServer(cloud, server);
    return metadata;
  }

  /** The base URL an SFU is given (SFU_<CLOUD>_METADATA_URL). */
  get url(): string {
    return this.server.url;
  }

  /** The next requests get these answers instead of the honest ones, in order. */
  failNext(...faults: Fault[]): void {
    this.faults.push(...faults);
  }

  /** Every request asks `pick` first: a fault, or undefined for the honest answer. */
  answerWith(pick: () => Fault | undefined): void {
    this.hostile = pick;
  }

  honest(): void {
    this.faults.length = 0;
    this.hostile = undefined;
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    await drain(req);
    const url = new URL(req.url ?? '/', 'http://metadata');
    const record: RecordedRequest = { method: req.method ?? '', path: url.pathname, status: 0 };
    this.requests.push(record);
    const fault = this.faults.shift() ?? this.hostile?.();
    if (fault) {
      record.fault = fault.kind;
      return this.inject(fault, res, record);
    }
    const answer = this.answer(req, url, record);
    record.status = answer.status;
    const headers: Record<string, string> = { 'content-type': 'text/plain', ...(this.cloud === 'gcp' ? { 'metadata-flavor': 'Google' } : {}) };
    res.writeHead(answer.status, headers).end(answer.body);
  }

  private answer(req: http.IncomingMessage, url: URL, record: RecordedRequest): { status: number; body: string } {
    const header = (name: string) => {
      const value = req.headers[name];
      return typeof value === 'string' ? value : undefined;
    };
    const forwarded = header('x-forwarded-for') !== undefined;
    switch (this.cloud) {
      case 'aws': {
        if (forwarded) return { status: 403, body: 'Forbidden' };
        if (url.pathname === AWS_TOKEN_PATH) {
          if (req.method !== 'PUT') return { status: 405, body: 'Method Not Allowed' };
          const ttl = header('x-aws-ec2-metadata-token-ttl-seconds');
          if (ttl === undefined || !/^\d+$/.test(ttl) || Number(ttl) < 1 || Number(ttl) > 21_600) return { status: 400, body: 'Bad Request' };
          const token = `AQAEA${randomBytes(36).toString('base64url')}==`;
          this.tokens.set(token, Date.now() + Number(ttl) * 1000);
          return { status: 200, body: token };
        }
        if (req.method !== 'GET') return { status: 405, body: 'Method Not Allowed' };
        const token = header('x-aws-ec2-metadata-token');
        const expires = token === undefined ? undefined : this.tokens.get(token);
        record.tokenValid = expires !== undefined && expires > Date.now();
        if (!record.tokenValid) return { status: 401, body: 'Unauthorized' };
        if (url.pathname !== AWS_ADDRESS_PATH || this.publicAddress === undefined) return { status: 404, body: 'Not Found' };
        return { status: 200, body: this.publicAddress };
      }
      case 'gcp': {
        if (header('metadata-flavor') !== 'Google' || forwarded) return { status: 403, body: 'Missing Metadata-Flavor:Google header.' };
        if (req.method !== 'GET') return { status: 405, body: 'Method Not Allowed' };
        if (url.pathname !== GCP_ADDRESS_PATH || this.publicAddress === undefined) return { status: 404, body: 'Not Found' };
        return { status: 200, body: this.publicAddress };
      }
      case 'azure': {
        if (header('metadata') !== 'true' || forwarded) return { status: 400, body: '{"error":"Bad request. Required metadata header not specified"}' };
        if (!url.searchParams.has('api-version')) return { status: 400, body: '{"error":"Bad request. api-version was not specified in the request."}' };
        if (req.method !== 'GET') return { status: 405, body: 'Method Not Allowed' };
        if (url.pathname !== AZURE_ADDRESS_PATH) return { status: 404, body: 'Not Found' };
        // format=text: the value alone, empty when the interface has no public address.
        return { status: 200, body: this.publicAddress ?? '' };
      }
    }
  }

  private inject(fault: Fault, res: http.ServerResponse, record: RecordedRequest): void {
    const flavor = this.cloud === 'gcp' ? { 'metadata-flavor': 'Google' } : {};
    switch (fault.kind) {
      case 'status':
        record.status = fault.status;
        res.writeHead(fault.status, { ...flavor, ...(fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter }) }).end();
        return;
      case 'body':
        record.status = 200;
        res.writeHead(200, { 'content-type': 'text/plain', ...flavor }).end(fault.body);
        return;
      case 'hugeBody': {
        record.status = 200;
        res.writeHead(200, { 'content-type': 'text/plain', ...flavor });
        const chunk = Buffer.alloc(64 * 1024, '1');
        let sent = 0;
        const write = () => {
          while (sent < fault.bytes) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', write);
          }
          res.end();
        };
        res.on('error', () => undefined);
        write();
        return;
      }
      case 'cut':
        record.status = 200;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '14', ...flavor });
        res.write('52.95.');
        setTimeout(() => res.destroy(), 20);
        return;
      case 'silent':
        return;
    }
  }
}
