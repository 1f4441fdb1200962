import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { repoRoot } from './services.js';

/**
 * The media node pools' own settings (deploy/node-pools), per cloud: the kubelet's static CPU
 * manager (the SFU's Guaranteed pod then has whole cores of its own, with its Node.js process on
 * one of them: schedulingRules), and socket buffers at least the chart's media-node-tuning
 * DaemonSet sets, so the two never disagree downwards.
 */
const read = (file: string) => readFileSync(path.join(repoRoot, 'deploy/node-pools', file), 'utf8');
const chartBuffer = Number(parse(readFileSync(path.join(repoRoot, 'deploy/helm/gateway/values.yaml'), 'utf8')).nodeTuning.socketBufferBytes);

const staticKubelet = z.object({ cpuManagerPolicy: z.literal('static'), cpuCfsQuota: z.literal(true) }).passthrough();

describe('media node pools (deploy/node-pools)', () => {
  it('GKE: static CPU manager, socket buffers no smaller than the chart sets', () => {
    const config = z.object({ kubeletConfig: staticKubelet, linuxConfig: z.object({ sysctl: z.record(z.string(), z.string()) }) }).parse(parse(read('gke-media-system-config.yaml')));
    for (const key of ['net.core.rmem_max', 'net.core.wmem_max']) expect(Number(config.linuxConfig.sysctl[key])).toBeGreaterThanOrEqual(chartBuffer);
  });

  it('AKS: static CPU manager, socket buffers no smaller than the chart sets', () => {
    staticKubelet.parse(JSON.parse(read('aks-media-kubelet-config.json')));
    const os = z.object({ sysctls: z.object({ netCoreRmemMax: z.number(), netCoreWmemMax: z.number() }).passthrough() }).parse(JSON.parse(read('aks-media-linux-os-config.json')));
    expect(os.sysctls.netCoreRmemMax).toBeGreaterThanOrEqual(chartBuffer);
    expect(os.sysctls.netCoreWmemMax).toBeGreaterThanOrEqual(chartBuffer);
  });

  it('EKS: static CPU manager with CPU reserved for the system, which the static policy needs', () => {
    const cores = (quantity: string) => (quantity.endsWith('m') ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity));
    const config = z
      .object({
        apiVersion: z.literal('node.eks.aws/v1alpha1'),
        kind: z.literal('NodeConfig'),
        spec: z.object({ kubelet: z.object({ config: staticKubelet.extend({ systemReserved: z.object({ cpu: z.string() }), kubeReserved: z.object({ cpu: z.string() }) }) }) }),
      })
      .parse(parse(read('eks-media-nodeconfig.yaml')));
    const { systemReserved, kubeReserved } = config.spec.kubelet.config;
    expect(cores(systemReserved.cpu) + cores(kubeReserved.cpu)).toBeGreaterThanOrEqual(1);
  });

  it('refuses a pool without the static CPU manager', () => {
    expect(staticKubelet.safeParse({ cpuManagerPolicy: 'none', cpuCfsQuota: true }).success).toBe(false);
  });
});
