import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What the gauges read when scraped. */
export interface SignalingGauges {
  connections(): number;
  sessions(): number;
  chatKeysCached(): number;
}

/** The replica's metrics: gauges read at scrape time, and the counters its parts feed. */
export function createSignalingMetrics(registry: Registry, gauges: SignalingGauges) {
  new Gauge({
    name: 'gateway_signaling_connections',
    help: 'Open WebSocket connections',
    registers: [registry],
    collect() {
      this.set(gauges.connections());
    },
  });
  new Gauge({
    name: 'gateway_signaling_sessions',
    help: 'Sessions held by this replica (connected or within the resume window)',
    registers: [registry],
    collect() {
      this.set(gauges.sessions());
    },
  });
  new Gauge({
    name: 'gateway_signaling_chat_keys_cached',
    help: 'Unwrapped conversation keys this replica holds (bounded in number and time, dropped on erasure)',
    registers: [registry],
    collect() {
      this.set(gauges.chatKeysCached());
    },
  });
  const requests = new Counter({
    name: 'gateway_signaling_requests_total',
    help: 'Client requests by method and result code',
    labelNames: ['method', 'code'] as const,
    registers: [registry],
  });
  const rateLimited = new Counter({ name: 'gateway_signaling_rate_limited_total', help: 'Requests refused by the rate limit', registers: [registry] });
  const joinSeconds = new Histogram({
    name: 'gateway_signaling_join_duration_seconds',
    help: 'Time to serve a join: token check, placement, room open, state',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const roomApi = new Counter({
    name: 'gateway_signaling_room_api_requests_total',
    help: "Room API requests of tenants' backends by operation and result code (OK or the error's)",
    labelNames: ['operation', 'code'] as const,
    registers: [registry],
  });
  const resumes = new Counter({ name: 'gateway_signaling_resumes_total', help: 'Resume attempts by result', labelNames: ['result'] as const, registers: [registry] });
  return {
    joinSeconds,
    resumes,
    /** What the room API reports (http/rooms.ts). */
    roomApi: (operation: string, code: string) => roomApi.inc({ operation, code }),
    /** What connections report (ws/Connection's ConnectionObserver). */
    observer: {
      request: (method: string, code: string) => requests.inc({ method, code }),
      rateLimited: () => rateLimited.inc(),
    },
  };
}
