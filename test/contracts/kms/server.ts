import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

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
 * emulator installs (LocalStack needs Docker; moto is Python).
 */

export type KmsOperation =
  | 'CreateKey'
  | 'DescribeKey'
  | 'EnableKey'
  | 'DisableKey'
  | 'ScheduleKeyDeletion'
  | 'CancelKeyDeletion'
  | 'GenerateDataKey'
  | 'Encrypt'
  | 'Decrypt'
  | 'ReEncrypt'
  | 'CreateAlias'
  | 'UpdateAlias'
  | 'DeleteAlias'
  | 'ListAliases'
  | 'ListKeys';

const operations = new Set<string>([
  'CreateKey',
  'DescribeKey',
  'EnableKey',
  'DisableKey',
  'ScheduleKeyDeletion',
  'CancelKeyDeletion',
  'GenerateDataKey',
  'Encrypt',
  'Decrypt',
  'ReEncrypt',
  'CreateAlias',
  'UpdateAlias',
  'DeleteAlias',
  'ListAliases',
  'ListKeys',
]);

export interface KmsCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** Operations this principal is refused (AccessDeniedException), as a narrow key policy would. */
  deny?: KmsOperation[];
}

type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface Key {
  keyId: string;
  arn: string;
  state: KeyState;
  material: Buffer;
  description: string;
  created: Date;
  deletionDate?: Date;
  tags: Array<{ TagKey: string; TagValue: string }>;
}

/** A failure to answer with instead of the real result. */
export type KmsFault = { kind: 'error'; type: string; status?: number; message?: string } | { kind: 'reset' };

class KmsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const MAX_SKEW_MS = 5 * 60_000;
const BLOB_VERSION = 1;

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
  private readonly keys = new Map<string, Key>();
  private readonly aliases = new Map<string, string>();
  private readonly credentials = new Map<string, KmsCredential>();
  private readonly faults: Array<{ operation: KmsOperation | '*'; fault: KmsFault; times: number }> = [];
  private readonly sockets = new Set<Socket>();
  /** Requests allowed per second (ThrottlingException past it); undefined is no limit. */
  private rate: { perSecond: number; windowStart: number; used: number } | undefined;

  private constructor(
    private readonly server: http.Server,
    options: Required<KmsContractServerOptions>,
  ) {
    this.region = options.region;
    this.account = options.account;
    for (const credential of options.credentials) this.credentials.set(credential.accessKeyId, credential);
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(options: KmsContractServerOptions = {}): Promise<KmsContractServer> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const contract = new KmsContractServer(server, {
      region: options.region ?? 'eu-west-1',
      account: options.account ?? '111122223333',
      credentials: options.credentials ?? [{ accessKeyId: 'AKIAGATEWAYTEST', secretAccessKey: 'gateway-kms-contract-secret' }],
    });
    server.on('connection', (socket) => {
      contract.sockets.add(socket);
      socket.once('close', () => contract.sockets.delete(socket));
    });
    server.on('request', (req, res) => void contract.handle(req, res));
    return contract;
  }

  /** Creates a key (and its alias) directly, as an operator's Terraform would. */
  createKey(alias?: string, description = ''): Key {
    const keyId = randomUUID();
    const key: Key = { keyId, arn: `arn:aws:kms:${this.region}:${this.account}:key/${keyId}`, state: 'Enabled', material: randomBytes(32), description, created: new Date(), tags: [] };
    this.keys.set(keyId, key);
    if (alias) this.aliases.set(alias, keyId);
    return key;
  }

  /** A key by id, ARN or alias, as the API resolves it. */
  key(id: string): Key | undefined {
    return this.resolve(id);
  }

  /** The key an alias points at. */
  aliasTarget(alias: string): Key | undefined {
    const id = this.aliases.get(alias);
    return id ? this.keys.get(id) : undefined;
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
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const requestId = randomUUID();
    let operation: KmsOperation | undefined;
    try {
      const target = header(req, 'x-amz-target') ?? '';
      const name = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : '';
      if (req.method !== 'POST' || (req.url ?? '') !== '/') throw new KmsError('UnknownOperationException', 'Unknown operation');
      if (!operations.has(name)) throw new KmsError('UnknownOperationException', `Unknown operation ${target}`);
      operation = name as KmsOperation;
      this.calls.set(operation, (this.calls.get(operation) ?? 0) + 1);
      if (header(req, 'content-type') !== 'application/x-amz-json-1.1') throw new KmsError('SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      const principal = this.authenticate(req, body);
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
      let input: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(body.length ? body.toString('utf8') : '{}');
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
        input = parsed as Record<string, unknown>;
      } catch {
        throw new KmsError('SerializationException', 'Start of structure or map found where not expected.');
      }
      const output = this.dispatch(operation, input);
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

  /** Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), service `kms`. */
  private authenticate(req: http.IncomingMessage, body: Buffer): KmsCredential {
    const authorization = header(req, 'authorization');
    if (!authorization) throw new KmsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    const match = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(authorization);
    if (!match) throw new KmsError('IncompleteSignatureException', 'Authorization header requires Credential, SignedHeaders and Signature.');
    const [, credential, signedHeaderList, signature] = match as unknown as [string, string, string, string];
    const [accessKeyId, day, region, service, terminator, ...rest] = credential.split('/');
    if (!accessKeyId || !day || !/^\d{8}$/.test(day) || service !== 'kms' || terminator !== 'aws4_request' || rest.length > 0) {
      throw new KmsError('IncompleteSignatureException', 'Credential should be scoped to a valid region, service kms and aws4_request.');
    }
    if (region !== this.region) throw new KmsError('InvalidSignatureException', `Credential should be scoped to a valid region, not '${region}'.`);
    const principal = this.credentials.get(accessKeyId);
    if (!principal) throw new KmsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
    const amzDate = header(req, 'x-amz-date');
    if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate) || amzDate.slice(0, 8) !== day) throw new KmsError('IncompleteSignatureException', 'X-Amz-Date must be given and match the credential scope.');
    const time = Date.parse(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
    if (Math.abs(Date.now() - time) > MAX_SKEW_MS) throw new KmsError('InvalidSignatureException', 'Signature expired.');
    const signedHeaders = signedHeaderList.split(';');
    if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-target')) throw new KmsError('InvalidSignatureException', 'The host and x-amz-target headers must be signed.');
    const canonicalRequest = ['POST', '/', '', signedHeaders.map((name) => `${name}:${headerValues(req, name)}\n`).join(''), signedHeaderList, createHash('sha256').update(body).digest('hex')].join(
      '\n',
    );
    const scope = `${day}/${region}/kms/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
    let key: Buffer = createHmac('sha256', `AWS4${principal.secretAccessKey}`).update(day).digest();
    for (const part of [region, 'kms', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
    const expected = createHmac('sha256', key).update(stringToSign).digest();
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
      throw new KmsError('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
    }
    return principal;
  }

  private resolve(id: string): Key | undefined {
    if (id.startsWith('alias/')) return this.aliasTarget(id);
    const aliasArn = /^arn:aws:kms:([^:]+):(\d{12}):(alias\/.+)$/.exec(id);
    if (aliasArn) return aliasArn[1] === this.region && aliasArn[2] === this.account ? this.aliasTarget(aliasArn[3]!) : undefined;
    const keyArn = /^arn:aws:kms:([^:]+):(\d{12}):key\/(.+)$/.exec(id);
    if (keyArn) return keyArn[1] === this.region && keyArn[2] === this.account ? this.keys.get(keyArn[3]!) : undefined;
    return this.keys.get(id);
  }

  /** The key a request names; NotFoundException when there is none. */
  private named(input: Record<string, unknown>, field = 'KeyId'): Key {
    const id = input[field];
    if (typeof id !== 'string' || id.length < 1 || id.length > 2048)
      throw new KmsError('ValidationException', `1 validation error detected: Value at '${lower(field)}' failed to satisfy constraint: Member must have length between 1 and 2048`);
    const key = this.resolve(id);
    if (!key) throw new KmsError('NotFoundException', id.includes('alias/') ? `Alias ${id} is not found.` : `Key '${id}' does not exist`);
    return key;
  }

  /** A key used for a cryptographic operation must be enabled. */
  private usable(key: Key): Key {
    if (key.state === 'Disabled') throw new KmsError('DisabledException', `${key.arn} is disabled.`);
    if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    return key;
  }

  private dispatch(operation: KmsOperation, input: Record<string, unknown>): Record<string, unknown> {
    switch (operation) {
      case 'CreateKey': {
        if (input.KeyUsage !== undefined && input.KeyUsage !== 'ENCRYPT_DECRYPT') throw new KmsError('ValidationException', 'This contract server makes symmetric ENCRYPT_DECRYPT keys only.');
        if (input.KeySpec !== undefined && input.KeySpec !== 'SYMMETRIC_DEFAULT') throw new KmsError('ValidationException', 'This contract server makes SYMMETRIC_DEFAULT keys only.');
        const key = this.createKey(undefined, typeof input.Description === 'string' ? input.Description : '');
        if (Array.isArray(input.Tags)) key.tags = input.Tags as Key['tags'];
        return { KeyMetadata: metadata(key, this.account) };
      }
      case 'DescribeKey':
        return { KeyMetadata: metadata(this.named(input), this.account) };
      case 'EnableKey': {
        const key = this.named(input);
        if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
        key.state = 'Enabled';
        return {};
      }
      case 'DisableKey': {
        const key = this.named(input);
        if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
        key.state = 'Disabled';
        return {};
      }
      case 'ScheduleKeyDeletion': {
        const key = this.named(input);
        const days = input.PendingWindowInDays ?? 30;
        if (typeof days !== 'number' || !Number.isInteger(days) || days < 7 || days > 30)
          throw new KmsError('ValidationException', "1 validation error detected: Value at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30");
        if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
        key.state = 'PendingDeletion';
        key.deletionDate = new Date(Date.now() + days * 86_400_000);
        return { KeyId: key.arn, DeletionDate: key.deletionDate.getTime() / 1000, KeyState: key.state, PendingWindowInDays: days };
      }
      case 'CancelKeyDeletion': {
        const key = this.named(input);
        if (key.state !== 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${key.arn} is not pending deletion.`);
        key.state = 'Disabled';
        delete key.deletionDate;
        return { KeyId: key.arn };
      }
      case 'GenerateDataKey': {
        const key = this.usable(this.named(input));
        const bytes = input.NumberOfBytes ?? (input.KeySpec === 'AES_128' ? 16 : input.KeySpec === 'AES_256' ? 32 : undefined);
        if (typeof bytes !== 'number' || bytes < 1 || bytes > 1024 || (input.NumberOfBytes !== undefined && input.KeySpec !== undefined)) {
          throw new KmsError('ValidationException', 'Please specify either number of bytes or key spec.');
        }
        const plaintext = randomBytes(bytes);
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), CiphertextBlob: seal(key, plaintext, context(input.EncryptionContext)).toString('base64') };
      }
      case 'Encrypt': {
        const key = this.usable(this.named(input));
        const plaintext = blob(input.Plaintext, 'plaintext', 4096);
        return { KeyId: key.arn, CiphertextBlob: seal(key, plaintext, context(input.EncryptionContext)).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'Decrypt': {
        const { key, plaintext } = this.open(blob(input.CiphertextBlob, 'ciphertextBlob', 6144), input.KeyId, context(input.EncryptionContext));
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'ReEncrypt': {
        const { key: source, plaintext } = this.open(blob(input.CiphertextBlob, 'ciphertextBlob', 6144), input.SourceKeyId, context(input.SourceEncryptionContext));
        const destination = this.usable(this.named(input, 'DestinationKeyId'));
        return {
          KeyId: destination.arn,
          SourceKeyId: source.arn,
          CiphertextBlob: seal(destination, plaintext, context(input.DestinationEncryptionContext)).toString('base64'),
          SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        };
      }
      case 'CreateAlias':
      case 'UpdateAlias': {
        const name = input.AliasName;
        if (typeof name !== 'string' || !/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(name))
          throw new KmsError('ValidationException', "Value at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$");
        if (name.startsWith('alias/aws/')) throw new KmsError('NotFoundException', 'Alias names starting with alias/aws/ are reserved for AWS managed keys.');
        const target = this.named(input, 'TargetKeyId');
        if (operation === 'CreateAlias' && this.aliases.has(name))
          throw new KmsError('AlreadyExistsException', `An alias with the name arn:aws:kms:${this.region}:${this.account}:${name} already exists`);
        if (operation === 'UpdateAlias' && !this.aliases.has(name)) throw new KmsError('NotFoundException', `Alias arn:aws:kms:${this.region}:${this.account}:${name} is not found.`);
        if (target.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${target.arn} is pending deletion.`);
        this.aliases.set(name, target.keyId);
        return {};
      }
      case 'DeleteAlias': {
        const name = input.AliasName;
        if (typeof name !== 'string' || !this.aliases.has(name)) throw new KmsError('NotFoundException', `Alias ${String(name)} is not found.`);
        this.aliases.delete(name);
        return {};
      }
      case 'ListKeys':
        return { Keys: [...this.keys.values()].map((key) => ({ KeyId: key.keyId, KeyArn: key.arn })), Truncated: false };
      case 'ListAliases': {
        const filter = typeof input.KeyId === 'string' ? this.named(input).keyId : undefined;
        const aliases = [...this.aliases]
          .filter(([, keyId]) => filter === undefined || keyId === filter)
          .map(([name, keyId]) => ({ AliasName: name, AliasArn: `arn:aws:kms:${this.region}:${this.account}:${name}`, TargetKeyId: keyId }));
        return { Aliases: aliases, Truncated: false };
      }
    }
  }

  /** Opens a CiphertextBlob: the key it names (which `keyId`, when given, must be), enabled, and the same context. */
  private open(ciphertext: Buffer, keyId: unknown, encryptionContext: Buffer): { key: Key; plaintext: Buffer } {
    if (ciphertext.length < 1 + 36 + 12 + 16 || ciphertext[0] !== BLOB_VERSION) throw new KmsError('InvalidCiphertextException', '');
    const key = this.keys.get(ciphertext.subarray(1, 37).toString('latin1'));
    if (!key) throw new KmsError('InvalidCiphertextException', '');
    if (keyId !== undefined) {
      const named = this.named({ KeyId: keyId });
      if (named.keyId !== key.keyId) throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify a KMS key that can perform this operation.');
    }
    this.usable(key);
    const iv = ciphertext.subarray(37, 49);
    const decipher = createDecipheriv('aes-256-gcm', key.material, iv).setAAD(Buffer.concat([ciphertext.subarray(0, 37), encryptionContext]));
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    try {
      return { key, plaintext: Buffer.concat([decipher.update(ciphertext.subarray(49, ciphertext.length - 16)), decipher.final()]) };
    } catch {
      // AWS says nothing more, whatever did not match (the context, the bytes).
      throw new KmsError('InvalidCiphertextException', '');
    }
  }
}

/** version (1) | key id (36) | iv (12) | ciphertext | tag (16); the header and the context are authenticated. */
function seal(key: Key, plaintext: Buffer, encryptionContext: Buffer): Buffer {
  const head = Buffer.concat([Buffer.from([BLOB_VERSION]), Buffer.from(key.keyId, 'latin1')]);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.material, iv).setAAD(Buffer.concat([head, encryptionContext]));
  return Buffer.concat([head, iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The EncryptionContext, canonical (sorted), as bytes bound to a ciphertext. */
function context(value: unknown): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    throw new KmsError('ValidationException', 'EncryptionContext must be a map of strings.');
  }
  return Buffer.from(JSON.stringify(Object.entries(value as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

function blob(value: unknown, field: string, max: number): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new KmsError('SerializationException', `${field} must be a base64 blob`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length < 1 || bytes.length > max)
    throw new KmsError('ValidationException', `1 validation error detected: Value at '${field}' failed to satisfy constraint: Member must have length between 1 and ${max}`);
  return bytes;
}

function metadata(key: Key, account: string): Record<string, unknown> {
  return {
    AWSAccountId: account,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: key.created.getTime() / 1000,
    Enabled: key.state === 'Enabled',
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: key.state,
    ...(key.deletionDate ? { DeletionDate: key.deletionDate.getTime() / 1000 } : {}),
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    KeySpec: 'SYMMETRIC_DEFAULT',
    CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
    EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    MultiRegion: false,
  };
}

function lower(field: string): string {
  return field.charAt(0).toLowerCase() + field.slice(1);
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** A header's value as SigV4 canonicalizes it: trimmed, inner spaces collapsed. */
function headerValues(req: http.IncomingMessage, name: string): string {
  return (header(req, name) ?? '').trim().replace(/\s+/g, ' ');
}
