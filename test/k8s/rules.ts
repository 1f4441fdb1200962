import * as certManagerV1 from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import * as externalSecretsV1 from '@kubernetes-models/external-secrets/external-secrets.io/v1';
import * as gatewayApiV1 from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import * as kedaV1alpha1 from '@kubernetes-models/keda/keda.sh/v1alpha1';
import * as kyvernoV1 from '@kubernetes-models/kyverno/kyverno.io/v1';
import * as monitoringV1 from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as autoscalingV2 from 'kubernetes-models/autoscaling/v2';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as rbacV1 from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as coreV1 from 'kubernetes-models/v1';
import * as batchV1 from 'kubernetes-models/batch/v1';
import * as schedulingV1 from 'kubernetes-models/scheduling.k8s.io/v1';
import { CiliumNetworkPolicy } from './cilium.js';
import { configRules, containerRules, graceRules, probeRules } from './containerRules.js';
import { grpcIdentityRules, natsRules, serviceAccountRules } from './identityRules.js';
import { drainRules, sfuRules } from './mediaRules.js';
import { egressRules, exposureRules, ingressRules, networkPolicyRules, nodeFlowRules, routeRules } from './networkRules.js';
import { objectId, type K8sObject, type Rule, type Violation } from './objects.js';
import { alertRules, monitoringSelectionRules } from './monitoringRules.js';
import { autoscalerFallbackRules, availabilityRules, scalingRules } from './scalingRules.js';
import { turnRules } from './turnRules.js';
import { imageSupplyRules } from './supplyChainRules.js';
import { nodeTuningRules, schedulingRules } from './schedulingRules.js';

/**
 * The rules every rendered Kubernetes environment (k8s/overlays/*) must follow, as functions
 * from the rendered objects to the violations found. Each rule names itself in its violations,
 * so a test can show that a broken object is caught by the rule meant for it. The rules live by
 * concern: containers and their configuration (containerRules.ts), the SFU and the drain
 * (mediaRules.ts), the TURN server (turnRules.ts), what images run and who signed them (supplyChainRules.ts), who a workload is to gRPC, NATS and the Kubernetes API (identityRules.ts), what
 * is reachable (networkRules.ts), replicas and autoscalers (scalingRules.ts), and what Prometheus
 * selects and alerts on (monitoringRules.ts); objects.ts reads the rendered objects.
 */

const models: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'batch/v1': batchV1,
  'scheduling.k8s.io/v1': schedulingV1,
  'autoscaling/v2': autoscalingV2,
  'policy/v1': policyV1,
  'networking.k8s.io/v1': networkingV1,
  'rbac.authorization.k8s.io/v1': rbacV1,
  'keda.sh/v1alpha1': kedaV1alpha1,
  'monitoring.coreos.com/v1': monitoringV1,
  'cert-manager.io/v1': certManagerV1,
  'external-secrets.io/v1': externalSecretsV1,
  'kyverno.io/v1': kyvernoV1,
  'gateway.networking.k8s.io/v1': gatewayApiV1,
  'cilium.io/v2': { CiliumNetworkPolicy },
};

type Model = new (data: unknown) => { validate(): void };

/** Validates each object against the JSON schema of its kind (kubernetes-models and the CRD models). */
export function checkSchemas(objects: K8sObject[]): Violation[] {
  const found: Violation[] = [];
  for (const o of objects) {
    const model = models[o.apiVersion]?.[o.kind] as Model | undefined;
    if (typeof model !== 'function') {
      found.push({ rule: 'schema', object: objectId(o), message: `no schema known for ${o.apiVersion} ${o.kind}` });
      continue;
    }
    try {
      new model(o).validate();
    } catch (error) {
      found.push({ rule: 'schema', object: objectId(o), message: error instanceof Error ? error.message : String(error) });
    }
  }
  return found;
}

export const allRules: Rule[] = [
  containerRules,
  probeRules,
  graceRules,
  configRules,
  sfuRules,
  drainRules,
  grpcIdentityRules,
  exposureRules,
  networkPolicyRules,
  egressRules,
  scalingRules,
  autoscalerFallbackRules,
  availabilityRules,
  ingressRules,
  routeRules,
  nodeFlowRules,
  natsRules,
  monitoringSelectionRules,
  alertRules,
  serviceAccountRules,
  turnRules,
  imageSupplyRules,
  schedulingRules,
  nodeTuningRules,
];

export function checkManifests(objects: K8sObject[]): Violation[] {
  return [...checkSchemas(objects), ...allRules.flatMap((rule) => rule(objects))];
}
