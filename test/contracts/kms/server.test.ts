import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  KMSServiceException,
  ListAliasesCommand,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
  UpdateAliasCommand,
} from '@aws-sdk/client-kms';
import { KmsContractServer } from './server.js';

/**
 * The contract server against the AWS SDK's own signing and parsing: what it accepts and refuses
 * must be what KMS accepts and refuses (as documented), or the keyring's tests prove nothing.
 */
describe('KMS contract server', () => {
  let server: KmsContractServer;
  const client = (overrides: { accessKeyId?: string; secretAccessKey?: string; region?: string } = {}) =>
    new KMSClient({
      region: overrides.region ?? server.region,
      endpoint: server.url,
      maxAttempts: 1,
      credentials: { accessKeyId: overrides.accessKeyId ?? 'AKIAGATEWAYTEST', secretAccessKey: overrides.secretAccessKey ?? 'gateway-kms-contract-secret' },
    });
  const codeOf = async (promise: Promise<unknown>) =>
    promise.then(
      () => 'ok',
      (e: unknown) => (e instanceof KMSServiceException ? `${e.name} ${e.$metadata.httpStatusCode}` : String(e)),
    );

  beforeAll(async () => {
    server = await KmsContractServer.start({
      credentials: [
        { accessKeyId: 'AKIAGATEWAYTEST', secretAccessKey: 'gateway-kms-contract-secret' },
        { accessKeyId: 'AKIANARROW', secretAccessKey: 'narrow-secret', deny: ['Decrypt', 'DisableKey'] },
      ],
    });
  });
  afterAll(async () => server?.close());

  it('checks SigV4: the key id, the signature, the region of the scope', async () => {
    const describeKey = (c: KMSClient) => c.send(new CreateKeyCommand({}));
    expect(await codeOf(describeKey(client()))).toBe('ok');
    expect(await codeOf(describeKey(client({ accessKeyId: 'AKIAUNKNOWN' })))).toBe('UnrecognizedClientException 400');
    expect(await codeOf(describeKey(client({ secretAccessKey: 'wrong' })))).toBe('InvalidSignatureException 400');
    expect(await codeOf(describeKey(client({ region: 'us-east-1' })))).toBe('InvalidSignatureException 400');
  });

  it('encrypts and decrypts under a key named by alias, bound to the encryption context', async () => {
    const kms = client();
    const { KeyMetadata } = await kms.send(new CreateKeyCommand({ Description: 'tenant acme' }));
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/contract/acme', TargetKeyId: KeyMetadata!.KeyId }));
    expect(await codeOf(kms.send(new CreateAliasCommand({ AliasName: 'alias/contract/acme', TargetKeyId: KeyMetadata!.KeyId })))).toBe('AlreadyExistsException 400');
    const plaintext = randomBytes(32);
    const context = { tenant: 'acme', purpose: 'test' };
    const sealed = await kms.send(new EncryptCommand({ KeyId: 'alias/contract/acme', Plaintext: plaintext, EncryptionContext: context }));
    expect(sealed.KeyId).toBe(KeyMetadata!.Arn);
    const opened = await kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context }));
    expect(Buffer.from(opened.Plaintext!).equals(plaintext)).toBe(true);
    expect(opened.KeyId).toBe(KeyMetadata!.Arn);
    // Another context, no context, or altered bytes: one answer, whatever did not match.
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: { tenant: 'globex', purpose: 'test' } })))).toBe('InvalidCiphertextException 400');
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob })))).toBe('InvalidCiphertextException 400');
    const tampered = Buffer.from(sealed.CiphertextBlob!);
    tampered[tampered.length - 1]! ^= 1;
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: context })))).toBe('InvalidCiphertextException 400');
    // A KeyId that is not the ciphertext's key is refused, not tried.
    const other = await kms.send(new CreateKeyCommand({}));
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context, KeyId: other.KeyMetadata!.Arn })))).toBe('IncorrectKeyException 400');
    expect(await codeOf(kms.send(new DescribeKeyCommand({ KeyId: 'alias/contract/none' })))).toBe('NotFoundException 400');
    const generated = await kms.send(new GenerateDataKeyCommand({ KeyId: KeyMetadata!.Arn, KeySpec: 'AES_256', EncryptionContext: context }));
    expect(generated.Plaintext).toHaveLength(32);
    const again = await kms.send(new DecryptCommand({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: context }));
    expect(Buffer.from(again.Plaintext!).equals(Buffer.from(generated.Plaintext!))).toBe(true);
  });

  it("re-encrypts under the alias's new key; key states refuse what AWS documents", async () => {
    const kms = client();
    const first = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/contract/rotating', TargetKeyId: first.KeyId }));
    const context = { tenant: 'acme' };
    const sealed = await kms.send(new EncryptCommand({ KeyId: 'alias/contract/rotating', Plaintext: Buffer.from('data key'), EncryptionContext: context }));
    const second = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    await kms.send(new UpdateAliasCommand({ AliasName: 'alias/contract/rotating', TargetKeyId: second.KeyId }));
    const aliases = await kms.send(new ListAliasesCommand({ KeyId: second.KeyId }));
    expect(aliases.Aliases?.map((a) => a.AliasName)).toEqual(['alias/contract/rotating']);
    const moved = await kms.send(
      new ReEncryptCommand({ CiphertextBlob: sealed.CiphertextBlob, SourceEncryptionContext: context, DestinationKeyId: 'alias/contract/rotating', DestinationEncryptionContext: context }),
    );
    expect(moved.SourceKeyId).toBe(first.Arn);
    expect(moved.KeyId).toBe(second.Arn);
    await kms.send(new DisableKeyCommand({ KeyId: first.Arn }));
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context })))).toBe('DisabledException 400');
    expect(Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob, EncryptionContext: context }))).Plaintext!).toString()).toBe('data key');
    await kms.send(new EnableKeyCommand({ KeyId: first.Arn }));
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context })))).toBe('ok');
    expect(await codeOf(kms.send(new ScheduleKeyDeletionCommand({ KeyId: first.Arn, PendingWindowInDays: 3 })))).toBe('ValidationException 400');
    const scheduled = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: first.Arn, PendingWindowInDays: 7 }));
    expect(scheduled.KeyState).toBe('PendingDeletion');
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob, EncryptionContext: context })))).toBe('KMSInvalidStateException 400');
    expect(await codeOf(kms.send(new EnableKeyCommand({ KeyId: first.Arn })))).toBe('KMSInvalidStateException 400');
  });

  it('refuses what a narrow policy denies, throttles past its rate, and injects faults', async () => {
    const kms = client();
    const key = server.createKey('alias/contract/limits');
    const sealed = await kms.send(new EncryptCommand({ KeyId: key.arn, Plaintext: Buffer.from('x') }));
    expect(await codeOf(client({ accessKeyId: 'AKIANARROW', secretAccessKey: 'narrow-secret' }).send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob })))).toBe('AccessDeniedException 400');
    server.rateLimit(2);
    const answers = await Promise.all(Array.from({ length: 5 }, () => codeOf(kms.send(new DescribeKeyCommand({ KeyId: key.arn })))));
    server.rateLimit(undefined);
    expect(answers.filter((a) => a === 'ThrottlingException 400').length).toBeGreaterThanOrEqual(3);
    server.inject('Decrypt', { kind: 'error', type: 'KMSInternalException', status: 500 });
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob })))).toBe('KMSInternalException 500');
    expect(await codeOf(kms.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob })))).toBe('ok');
  });
});
