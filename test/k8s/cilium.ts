import type { Json } from './objects.js';

/**
 * CiliumNetworkPolicy (cilium.io/v2), the part of its CRD the chart uses (templates/cilium-policies.yaml):
 * no model package ships Cilium's schema, so this checks the fields, entities and ports the way
 * Cilium's own validation would refuse them.
 */

const entities = new Set(['host', 'remote-node', 'kube-apiserver', 'ingress', 'cluster', 'init', 'health', 'unmanaged', 'world', 'all']);
const protocols = new Set(['TCP', 'UDP', 'SCTP', 'ANY']);

function unknownKeys(value: Json, allowed: string[], where: string): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${where} is not an object`];
  return Object.keys(value)
    .filter((key) => !allowed.includes(key))
    .map((key) => `${where}.${key} is not a field of CiliumNetworkPolicy`);
}

function ruleProblems(rule: Json, where: string, peers: 'fromEntities' | 'toEntities'): string[] {
  const problems = unknownKeys(rule, [peers, 'toPorts', peers === 'fromEntities' ? 'fromEndpoints' : 'toEndpoints'], where);
  for (const entity of rule[peers] ?? []) if (!entities.has(entity)) problems.push(`${where}.${peers}: ${entity} is not a Cilium entity`);
  for (const [i, toPort] of (rule.toPorts ?? []).entries()) {
    problems.push(...unknownKeys(toPort, ['ports'], `${where}.toPorts[${i}]`));
    for (const [j, port] of (toPort.ports ?? []).entries()) {
      const at = `${where}.toPorts[${i}].ports[${j}]`;
      problems.push(...unknownKeys(port, ['port', 'endPort', 'protocol'], at));
      if (typeof port.port !== 'string' || !/^\d{1,5}$/.test(port.port) || Number(port.port) > 65535) problems.push(`${at}.port must be a port number as a string`);
      if (port.endPort !== undefined && !(Number.isInteger(port.endPort) && port.endPort >= Number(port.port) && port.endPort <= 65535)) problems.push(`${at}.endPort must be a port at or above port`);
      if (!protocols.has(port.protocol ?? 'ANY')) problems.push(`${at}.protocol ${port.protocol} is none of ${[...protocols].join(', ')}`);
    }
  }
  return problems;
}

export class CiliumNetworkPolicy {
  constructor(private readonly data: Json) {}

  validate(): void {
    const { spec } = this.data;
    const problems = unknownKeys(this.data, ['apiVersion', 'kind', 'metadata', 'spec'], 'object');
    problems.push(...unknownKeys(spec, ['endpointSelector', 'ingress', 'egress', 'description'], 'spec'));
    if (typeof spec?.endpointSelector !== 'object' || spec.endpointSelector === null) problems.push('spec.endpointSelector is required');
    for (const [i, rule] of (spec?.ingress ?? []).entries()) problems.push(...ruleProblems(rule, `spec.ingress[${i}]`, 'fromEntities'));
    for (const [i, rule] of (spec?.egress ?? []).entries()) problems.push(...ruleProblems(rule, `spec.egress[${i}]`, 'toEntities'));
    if (problems.length > 0) throw new Error(problems.join('; '));
  }
}
