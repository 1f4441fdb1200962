import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { z } from 'zod';

/** kubectl against the kind cluster of scripts/kind/up.sh (GATEWAY_CNI: calico or cilium). */

const run = promisify(execFile);
export const cni = z.enum(['calico', 'cilium']).parse(process.env.GATEWAY_CNI ?? 'calico');
const context = `kind-gateway-${cni}`;

export async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run('kubectl', ['--context', context, ...args], { maxBuffer: 16 * 1024 * 1024, env: process.env });
  return stdout;
}

export async function json<T>(...args: string[]): Promise<T> {
  return JSON.parse(await kubectl(...args, '-o', 'json')) as T;
}

/** The first tenant's credentials of the gateway-tenants Secret (the chart's development placeholders). */
export async function tenantCredentials(): Promise<{ name: string; apiKey: string; apiSecret: string }> {
  const secret = await json<{ data: Record<string, string> }>('-n', 'gateway', 'get', 'secret', 'gateway-tenants');
  const tenants = z
    .array(z.object({ name: z.string(), apiKey: z.string(), apiSecret: z.string() }).passthrough())
    .min(1)
    .parse(JSON.parse(Buffer.from(secret.data.GATEWAY_TENANTS ?? '', 'base64').toString('utf8')));
  return tenants[0]!;
}

async function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** `kubectl port-forward` to a Service, until stopped; resolves once it listens. */
export async function portForward(namespace: string, service: string, port: number): Promise<{ url: string; stop(): void }> {
  const local = await freeLocalPort();
  const child: ChildProcess = spawn('kubectl', ['--context', context, '-n', namespace, 'port-forward', `svc/${service}`, `${local}:${port}`], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`port-forward to ${service} did not start`)), 30_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('Forwarding from')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`port-forward to ${service} exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${local}`, stop: () => child.kill('SIGTERM') };
}

interface PodList {
  items: Array<{ metadata: { name: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { phase: string; conditions?: Array<{ type: string; status: string }> } }>;
}

/** The pods of an app (app.kubernetes.io/name), with whether each is Ready and going away. */
export async function pods(namespace: string, app: string): Promise<Array<{ name: string; node: string; ready: boolean; terminating: boolean }>> {
  const list = await json<PodList>('-n', namespace, 'get', 'pods', '-l', `app.kubernetes.io/name=${app}`);
  return list.items.map((pod) => ({
    name: pod.metadata.name,
    node: pod.spec.nodeName ?? '',
    ready: pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    terminating: pod.metadata.deletionTimestamp !== undefined,
  }));
}
