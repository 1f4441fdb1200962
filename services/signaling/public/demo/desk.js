// What the contact-center pages share: the desk token and options from the URL hash, and how
// statuses, channels and waits read.

/** The page's hash as parameters: `desk` (a desk token), `queue`, `channel`, `context.<field>`. */
export function hashParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

const STATUS_LABELS = { available: 'Available', away: 'Away', busy: 'Busy', after_contact_work: 'Wrapping up', offline: 'Offline' };
const CHANNEL_LABELS = { video: 'Video', voice: 'Voice', chat: 'Chat' };

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

export function channelLabel(channel) {
  return CHANNEL_LABELS[channel] || channel;
}

/** A wait in minutes as people say it: "about 3 min", "under a minute"; empty when unknown (0). */
export function waitText(seconds) {
  if (!seconds) return '';
  return seconds < 60 ? 'under a minute' : `about ${Math.round(seconds / 60)} min`;
}

/** Seconds as m:ss. */
export function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** A share (0..1) as a whole percentage. */
export function percent(share) {
  return `${Math.round((share || 0) * 100)}%`;
}
