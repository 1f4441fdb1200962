/**
 * When each agent's and end user's app was last reported connected. In memory only: a new owner
 * gives everyone the grace period, counted from when it started.
 */
export class AppPresence {
  private readonly agents = new Map<string, number>();
  private readonly contacts = new Map<string, number>();

  constructor(private readonly startedAtMs: number) {}

  agentSeen(agentId: string, nowMs: number): void {
    this.agents.set(agentId, nowMs);
  }

  /** The end user's app of this contact was seen. */
  contactSeen(contactId: string, nowMs: number): void {
    this.contacts.set(contactId, nowMs);
  }

  /** The contact ended: nothing more to watch. */
  forgetContact(contactId: string): void {
    this.contacts.delete(contactId);
  }

  /** Whether the agent's app has not been seen for `graceMs`. */
  agentSilent(agentId: string, graceMs: number, nowMs: number): boolean {
    return (this.agents.get(agentId) ?? this.startedAtMs) + graceMs <= nowMs;
  }

  /** Whether the end user's app of this contact has not been seen for `graceMs`. */
  contactSilent(contactId: string, graceMs: number, nowMs: number): boolean {
    return (this.contacts.get(contactId) ?? this.startedAtMs) + graceMs <= nowMs;
  }
}
