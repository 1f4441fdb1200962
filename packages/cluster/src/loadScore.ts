import type { NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';

/**
 * What an SFU node carries, as one number, from the load it reports to the registry: consumers
 * dominate the cost of a node; rooms and transports break ties. Placement puts a room on the
 * lowest, and the node's Pod deletion cost is this figure, so a scale-down removes the emptiest.
 */
export function sfuLoadScore(load: NodeLoad | undefined): number {
  return (load?.consumers ?? 0) + 2 * (load?.transports ?? 0) + 5 * (load?.rooms ?? 0);
}
