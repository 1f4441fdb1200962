import { randomBytes, randomUUID } from 'node:crypto';
import { blob, context, seal, sealedKeyId, unseal } from './ciphertext.js';
import { KmsError, type KmsOperation } from './protocol.js';

/**
 * The account's keys and aliases and the operations on them, with what AWS documents for each:
 * key states (Enabled, Disabled, PendingDeletion) and what each refuses, keys named by id, ARN,
 * alias or alias ARN, aliases reserved under `alias/aws/`.
 */

type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

export interface Key {
  keyId: string;
  arn: string;
  state: KeyState;
  material: Buffer;
  description: string;
  created: Date;
  deletionDate?: Date;
  tags: Array<{ TagKey: string; TagValue: string }>;
}

export class KeyStore {
  private readonly keys = new Map<string, Key>();
  private readonly aliases = new Map<string, string>();

  constructor(
    private readonly region: string,
    private readonly account: string,
  ) {}

  create(alias?: string, description = ''): Key {
    const keyId = randomUUID();
    const key: Key = { keyId, arn: `arn:aws:kms:${this.region}:${this.account}:key/${keyId}`, state: 'Enabled', material: randomBytes(32), description, created: new Date(), tags: [] };
    this.keys.set(keyId, key);
    if (alias) this.aliases.set(alias, keyId);
    return key;
  }

  /** A key by id, ARN, alias or alias ARN, as the API resolves it. */
  resolve(id: string): Key | undefined {
    if (id.startsWith('alias/')) return this.aliasTarget(id);
    const aliasArn = /^arn:aws:kms:([^:]+):(\d{12}):(alias\/.+)$/.exec(id);
    if (aliasArn) return aliasArn[1] === this.region && aliasArn[2] === this.account ? this.aliasTarget(aliasArn[3]!) : undefined;
    const keyArn = /^arn:aws:kms:([^:]+):(\d{12}):key\/(.+)$/.exec(id);
    if (keyArn) return keyArn[1] === this.region && keyArn[2] === this.account ? this.keys.get(keyArn[3]!) : undefined;
    return this.keys.get(id);
  }

  aliasTarget(alias: string): Key | undefined {
    const id = this.aliases.get(alias);
    return id ? this.keys.get(id) : undefined;
  }

  /** Runs one operation on its parsed input: its output, or a KmsError. */
  run(operation: KmsOperation, input: Record<string, unknown>): Record<string, unknown> {
    switch (operation) {
      case 'CreateKey': {
        if (input.KeyUsage !== undefined && input.KeyUsage !== 'ENCRYPT_DECRYPT') throw new KmsError('ValidationException', 'This contract server makes symmetric ENCRYPT_DECRYPT keys only.');
        if (input.KeySpec !== undefined && input.KeySpec !== 'SYMMETRIC_DEFAULT') throw new KmsError('ValidationException', 'This contract server makes SYMMETRIC_DEFAULT keys only.');
        const key = this.create(undefined, typeof input.Description === 'string' ? input.Description : '');
        if (Array.isArray(input.Tags)) key.tags = input.Tags as Key['tags'];
        return { KeyMetadata: this.metadata(key) };
      }
      case 'DescribeKey':
        return { KeyMetadata: this.metadata(this.named(input)) };
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

  /** Opens a CiphertextBlob: the key it names (which `keyId`, when given, must be), enabled, and the same context. */
  private open(ciphertext: Buffer, keyId: unknown, encryptionContext: Buffer): { key: Key; plaintext: Buffer } {
    const key = this.keys.get(sealedKeyId(ciphertext));
    if (!key) throw new KmsError('InvalidCiphertextException', '');
    if (keyId !== undefined) {
      const named = this.named({ KeyId: keyId });
      if (named.keyId !== key.keyId) throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify a KMS key that can perform this operation.');
    }
    this.usable(key);
    return { key, plaintext: unseal(key, ciphertext, encryptionContext) };
  }

  private metadata(key: Key): Record<string, unknown> {
    return {
      AWSAccountId: this.account,
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
}

function lower(field: string): string {
  return field.charAt(0).toLowerCase() + field.slice(1);
}
