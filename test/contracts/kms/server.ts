import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { type LocalServer, readBody, serveLocally } from '../http.js';
import { type Key, KeyStore } from './keys.js';
import { authenticate, type KmsCredential, KmsError, type KmsOperation, operationOf, parseInput, requireJsonContentType } from './protocol.js';

/**
 * A contract server for the part of the AWS KMS API the platform's KmsKeyring uses, kept to
 * what AWS documents (https://docs.aws.amazon.com/kms/latest/APIReference/): the JSON 1.1
 * protocol (`POST /`, `Content-Type: application/x-amz-json-1.1`, `X-Amz-Target:
 * TrentService.<Operation>`, blobs as base64 strings), Signature Version 4 checked on every
 * request (service `kms`, credential scope, date, signature over the body), errors as
 * `{"__type": "<Name>", "message": "..."}` with status 400 (500 for KMSInternalException), key
 * states (Enabled, Disabled, PendingDeletion) and what each refuses, aliases, and an opaque
 * CiphertextBlob that names its key and is bound to the EncryptionContext (Decrypt and ReEncrypt
 * refuse any other context with InvalidCiphertextException). Faults and a rate limit
 * (ThrottlingException) are injected on demand. AWS KMS cannot be reached from here, and no KMS
 * emulator installs (LocalStack needs Docker; moto is Python). Beside it: protocol.ts (the wire,
 * errors, SigV4), keys.ts (keys, aliases, the operations), ciphertext.ts (the blob).
 */

export type { KmsCredential, KmsOperation } from './protocol.js';

/** A failure to answer with instead of the real result. */
export type KmsFault = { kind: 'error'; type: string; status?: number; message?: string } | { kind: 'reset' };

export interface KmsContractServerOptions {
  region?: string;
  account?: string;
  credentials?: KmsCredential[];
}

export class KmsContractServer {
  readonly region: string;
  readonly account: string;
  readonly url: string;
  /** Requests answered (errors included), by operation: what a test can count. */
  readonly calls = new Map<KmsOperation, number>();
  private readonly keys: KeyStore;
  private readonly credentials = new Map<string, KmsCredential>();
  private readonly faults: Array<{ operation: KmsOperation | '*'; fault: KmsFault; times: number }> = [];
  /** Requests allowed per second (ThrottlingException past it); undefined is no limit. */
  private rate: { perSecond: number; windowStart: number; used: number } | undefined;

  private constructor(
    private readonly server: LocalServer,
    options: Required<KmsContractServerOptions>,
  ) {
    this.region = options.region;
    this.account = options.account;
    this.keys = new KeyStore(this.region, this.account);
    for (const credential of options.credentials) this.credentials.set(credential.accessKeyId, credential);
    this.url = server.url;
  }

  static async start(options: KmsContractServerOptions = {}): Promise<KmsContractServer> {
    let contract: KmsContractServer | undefined;
    const server = await serveLocally((req, res) => contract!.handle(req, res));
    contract = new KmsContractServer(server, {
      region: options.region ?? 'eu-west-1',
      account: options.account ?? '111122223333',
      credentials: options.credentials ?? [{ accessKeyId: 'AKIAGATEWAYTEST', secretAccessKey: 'gateway-kms-contract-secret' }],
    });
    return contract;
  }

  /** Creates a key (and its alias) directly, as an operator's Terraform would. */
  createKey(alias?: string, description = ''): Key {
    return this.keys.create(alias, description);
  }

  /** A key by id, ARN or alias, as the API resolves it. */
  key(id: string): Key | undefined {
    return this.keys.resolve(id);
  }

  /** The key an alias points at. */
  aliasTarget(alias: string): Key | undefined {
    return this.keys.aliasTarget(alias);
  }

  /** The next `times` requests of an operation (or any, '*') fail with this. */
  inject(operation: KmsOperation | '*', fault: KmsFault, times = 1): void {
    this.faults.push({ operation, fault, times });
  }

  /** At most `perSecond` requests a second are answered; the others get ThrottlingException. `undefined` lifts it. */
  rateLimit(perSecond: number | undefined): void {
    this.rate = perSecond === undefined ? undefined : { perSecond, windowStart: Date.now(), used: 0 };
  }

  callsOf(operation: KmsOperation): number {
    return this.calls.get(operation) ?? 0;
  }

  async close(): Promise<void> {
    await this.server.close();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    const requestId = randomUUID();
    try {
      const operation = operationOf(req);
      this.calls.set(operation, (this.calls.get(operation) ?? 0) + 1);
      requireJsonContentType(req);
      const principal = authenticate(req, body, this.region, this.credentials);
      const fault = this.takeFault(operation);
      if (fault?.kind === 'reset') {
        req.socket.destroy();
        return;
      }
      if (fault) throw new KmsError(fault.type, fault.message ?? `${fault.type} (injected)`, fault.status ?? 400);
      this.throttle();
      if (principal.deny?.includes(operation)) {
        throw new KmsError(
          'AccessDeniedException',
          `User: arn:aws:iam::${this.account}:user/${principal.accessKeyId} is not authorized to perform: kms:${operation} because no resource-based policy allows the kms:${operation} action`,
        );
      }
      const output = this.keys.run(operation, parseInput(body));
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': requestId });
      res.end(JSON.stringify(output));
    } catch (error) {
      const kms = error instanceof KmsError ? error : new KmsError('KMSInternalException', 'internal error', 500);
      res.writeHead(kms.status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': requestId });
      res.end(JSON.stringify({ __type: kms.type, message: kms.message }));
    }
  }

  private takeFault(operation: KmsOperation): KmsFault | undefined {
    const index = this.faults.findIndex((f) => f.operation === operation || f.operation === '*');
    if (index < 0) return undefined;
    const entry = this.faults[index]!;
    if (--entry.times <= 0) this.faults.splice(index, 1);
    return entry.fault;
  }

  private throttle(): void {
    if (!this.rate) return;
    const now = Date.now();
    if (now - this.rate.windowStart >= 1000) {
      this.rate.windowStart = now;
      this.rate.used = 0;
    }
    if (++this.rate.used > this.rate.perSecond) throw new KmsError('ThrottlingException', 'Rate exceeded');
  }
}
