import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CloudMetadataServer } from './server.js';

/** The contract server answers as each cloud's metadata service documents it. */

const ask = async (server: CloudMetadataServer, path: string, init: RequestInit = {}) => {
  const res = await fetch(`${server.url}${path}`, init);
  return { status: res.status, body: await res.text(), flavor: res.headers.get('metadata-flavor') };
};

describe('the AWS IMDSv2 contract server', () => {
  let imds: CloudMetadataServer;
  beforeAll(async () => {
    imds = await CloudMetadataServer.start('aws');
  });
  afterAll(() => imds?.close());
  beforeEach(() => {
    imds.honest();
    imds.publicAddress = '52.95.110.1';
  });
  const token = async () => (await ask(imds, '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).body;

  it('gives a token only for a PUT with its lifetime (400 without it or out of range)', async () => {
    expect((await ask(imds, '/latest/api/token', { method: 'PUT' })).status).toBe(400);
    expect((await ask(imds, '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '0' } })).status).toBe(400);
    expect((await ask(imds, '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21601' } })).status).toBe(400);
    expect(await token()).toMatch(/^AQAEA/);
  });

  it('answers the public address only with a token it gave (401 otherwise), 404 without one', async () => {
    expect((await ask(imds, '/latest/meta-data/public-ipv4')).status).toBe(401);
    expect((await ask(imds, '/latest/meta-data/public-ipv4', { headers: { 'x-aws-ec2-metadata-token': 'AQAEAforged==' } })).status).toBe(401);
    expect(await ask(imds, '/latest/meta-data/public-ipv4', { headers: { 'x-aws-ec2-metadata-token': await token() } })).toMatchObject({ status: 200, body: '52.95.110.1' });
    imds.publicAddress = undefined;
    expect((await ask(imds, '/latest/meta-data/public-ipv4', { headers: { 'x-aws-ec2-metadata-token': await token() } })).status).toBe(404);
  });

  it('refuses a forwarded request (403)', async () => {
    expect((await ask(imds, '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60', 'x-forwarded-for': '10.0.0.1' } })).status).toBe(403);
  });

  it('answers injected bursts in order, then honestly', async () => {
    imds.failNext({ kind: 'status', status: 429 }, { kind: 'status', status: 500 });
    expect((await ask(imds, '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).status).toBe(429);
    expect((await ask(imds, '/latest/api/token', { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).status).toBe(500);
    expect(await token()).toMatch(/^AQAEA/);
  });
});

describe('the GCP metadata contract server', () => {
  let metadata: CloudMetadataServer;
  const path = '/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip';
  beforeAll(async () => {
    metadata = await CloudMetadataServer.start('gcp');
  });
  afterAll(() => metadata?.close());

  it('needs Metadata-Flavor: Google (403 without it), marks its answers, 404 without an external address', async () => {
    expect(await ask(metadata, path)).toMatchObject({ status: 403, flavor: 'Google' });
    expect(await ask(metadata, path, { headers: { 'metadata-flavor': 'Google' } })).toMatchObject({ status: 200, body: '52.95.110.1', flavor: 'Google' });
    expect((await ask(metadata, path, { headers: { 'metadata-flavor': 'Google', 'x-forwarded-for': '10.0.0.1' } })).status).toBe(403);
    metadata.publicAddress = undefined;
    expect((await ask(metadata, path, { headers: { 'metadata-flavor': 'Google' } })).status).toBe(404);
  });
});

describe('the Azure IMDS contract server', () => {
  let imds: CloudMetadataServer;
  const path = '/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress';
  beforeAll(async () => {
    imds = await CloudMetadataServer.start('azure');
  });
  afterAll(() => imds?.close());

  it('needs Metadata: true and api-version (400 without either), answers text, empty without a public address', async () => {
    expect((await ask(imds, `${path}?api-version=2021-02-01&format=text`)).status).toBe(400);
    expect((await ask(imds, `${path}?format=text`, { headers: { metadata: 'true' } })).status).toBe(400);
    expect(await ask(imds, `${path}?api-version=2021-02-01&format=text`, { headers: { metadata: 'true' } })).toMatchObject({ status: 200, body: '52.95.110.1' });
    imds.publicAddress = undefined;
    expect(await ask(imds, `${path}?api-version=2021-02-01&format=text`, { headers: { metadata: 'true' } })).toMatchObject({ status: 200, body: '' });
  });
});
