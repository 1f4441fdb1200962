import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary, grpcClientCredentials } from '@gateway/common';
import { NatsServer, grpcTlsOf, startRecorderProcess, startSfuProcess } from '@gateway/testing';

/** An address of this machine that is not loopback: a request to it comes from it, as a neighbour's would. */
function nonLoopbackAddress(): string {
  const addresses = Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a && !a.internal);
  const chosen = addresses.find((a) => a!.family === 'IPv4') ?? addresses.find((a) => a!.family === 'IPv6' && !a!.address.startsWith('fe80'));
  if (!chosen) throw new Error('this machine has no address but loopback: the test needs one to call from');
  return chosen.family === 'IPv6' ? `[${chosen.address}]` : chosen.address;
}

/** The preStop hook's command of a Deployment in k8s/base, as Kubernetes runs it in the container. */
function preStopHook(file: string, deployment: string): string[] {
  const docs = parseAllDocuments(readFileSync(path.join(import.meta.dirname, '../../k8s/base', file), 'utf8')).map((d) => d.toJS());
  const found = docs.find((d) => d?.kind === 'Deployment' && d.metadata.name === deployment);
  return found.spec.template.spec.containers[0].lifecycle.preStop.exec.command as string[];
}

/** Runs a hook's command with the container's environment; resolves with its exit code. */
async function runHook(command: string[], env: Record<string, string>): Promise<number> {
  const [program, ...args] = command;
  try {
    await promisify(execFile)(program === 'node' ? process.execPath : program!, args, { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 10_000 });
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? 1;
  }
}

/**
 * /drain on the SFU's and the recorder's ops ports: only the node itself (loopback) or a caller
 * with the drain token may start a drain. Anyone else on the network gets 403 and the node
 * keeps serving.
 */
describe('/drain needs the node itself or the drain token', () => {
  let nats: NatsServer;
  let dir: string;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let sfuClient: SfuClient;
  const neighbour = nonLoopbackAddress();
  const drain = (host: string, port: number, init: RequestInit = {}) => fetch(`http://${host}:${port}/drain`, { method: 'POST', ...init }).then((r) => r.status);
  const ready = (port: number) => fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status);

  beforeAll(async () => {
    nats = await NatsServer.start();
    dir = mkdtempSync(path.join(os.tmpdir(), 'gateway-drain-'));
    // The token files do not exist yet: each node makes its own.
    [sfu, recorder] = await Promise.all([
      startSfuProcess({ natsUrl: nats.url, env: { SFU_OPS_HOST: '0.0.0.0', OPS_DRAIN_TOKEN_FILE: path.join(dir, 'sfu-drain-token') } }),
      startRecorderProcess({ natsUrl: nats.url, workDir: path.join(dir, 'work'), env: { OPS_DRAIN_TOKEN_FILE: path.join(dir, 'recorder-drain-token') } }),
    ]);
    const { credentials, options } = grpcClientCredentials(grpcTlsOf('signaling'), 'sfu');
    sfuClient = new SfuClient(`127.0.0.1:${sfu.grpcPort}`, credentials, options);
  }, 60_000);

  afterAll(async () => {
    sfuClient?.close();
    await Promise.all([sfu?.stop(), recorder?.stop()]);
    await nats?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('makes a private random token when its file does not exist', () => {
    for (const name of ['sfu-drain-token', 'recorder-drain-token']) {
      const file = path.join(dir, name);
      expect(readFileSync(file, 'utf8')).toMatch(/^[0-9a-f]{64}$/);
      expect(statSync(file).mode & 0o077).toBe(0);
    }
  });

  it('refuses a drain from another address without the token, and the SFU keeps serving', async () => {
    expect(await drain(neighbour, sfu.opsPort)).toBe(403);
    expect(await drain(neighbour, sfu.opsPort, { headers: { authorization: 'Bearer not-the-token-not-the-token-not-the-token' } })).toBe(403);
    // What a preStop httpGet from the kubelet would send.
    expect(await fetch(`http://${neighbour}:${sfu.opsPort}/drain`, { headers: { 'x-gateway-drain': '1' } }).then((r) => r.status)).toBe(403);
    expect(await ready(sfu.opsPort)).toBe(200);
    const info = await callUnary(sfuClient, sfuClient.getNodeInfo, {});
    expect(info.draining).toBe(false);
    await expect(callUnary(sfuClient, sfuClient.openRoom, { room: { tenant: 'demo', room: `still-open-${Date.now()}` } })).resolves.toMatchObject({ created: true });
  });

  it('drains the SFU for a caller with the token: the Kubernetes preStop hook, run as the container would', async () => {
    const hook = preStopHook('sfu.yaml', 'sfu');
    // Without the token file the hook cannot drain (and says so by its exit code).
    const host = neighbour.replace(/^\[|\]$/g, '');
    expect(await runHook(hook, { SFU_OPS_HOST: host, SFU_OPS_PORT: String(sfu.opsPort), OPS_DRAIN_TOKEN_FILE: path.join(dir, 'missing') })).not.toBe(0);
    expect(await ready(sfu.opsPort)).toBe(200);
    // On the host network the ops port is on the node's address: the hook calls it there, with the token the SFU made.
    expect(await runHook(hook, { SFU_OPS_HOST: host, SFU_OPS_PORT: String(sfu.opsPort), OPS_DRAIN_TOKEN_FILE: path.join(dir, 'sfu-drain-token') })).toBe(0);
    expect(await ready(sfu.opsPort)).toBe(503);
    expect((await callUnary(sfuClient, sfuClient.getNodeInfo, {})).draining).toBe(true);
  });

  it("refuses the recorder's drain from another address, and takes it from the node itself (its preStop hook)", async () => {
    expect(await drain(neighbour, recorder.opsPort)).toBe(403);
    expect(await ready(recorder.opsPort)).toBe(200);
    expect(await runHook(preStopHook('recorder.yaml', 'recorder'), { RECORDER_OPS_PORT: String(recorder.opsPort) })).toBe(0);
    expect(await ready(recorder.opsPort)).toBe(503);
  });
});
