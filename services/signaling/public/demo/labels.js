// How the pages name and draw things: role and source labels, initials, and the icons of
// buttons (drawn once from their data-icon).

const ICONS = {
  microphone: '<path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3Z"/><path d="M19 11a7 7 0 0 1-14 0M12 18v3"/>',
  camera: '<rect x="3" y="6" width="13" height="12" rx="2"/><path d="m16 10 5-3v10l-5-3"/>',
  screen: '<rect x="3" y="4" width="18" height="12" rx="2"/><path d="M8 20h8M12 16v4"/>',
  flip: '<path d="M4 12a8 8 0 0 1 13.7-5.6L20 9M20 4v5h-5"/><path d="M20 12a8 8 0 0 1-13.7 5.6L4 15M4 20v-5h5"/>',
  chat: '<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12Z"/>',
  requests: '<path d="M9 5h10M9 12h10M9 19h10"/><path d="m4 5 1 1 2-2M4 12l1 1 2-2M4 19l1 1 2-2"/>',
  leave: '<path d="M16 17l5-5-5-5M21 12H9M12 19H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h7"/>',
};

export function icon(name) {
  return `<svg class="icon" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name] || ''}</svg>`;
}

/** What to call a participant: the name their token or app gave, else their identity. */
export function displayName(participant) {
  return participant.name || participant.identity;
}

const ROLE_LABELS = { agent: 'Agent', end_user: 'Customer', observer: 'Observer' };
const SOURCE_LABELS = { camera: 'Camera', microphone: 'Microphone', screen: 'Screen share', screen_audio: 'Screen audio' };

export function roleLabel(role) {
  return ROLE_LABELS[role] || role;
}

export function sourceLabel(source) {
  return SOURCE_LABELS[source] || source;
}

export function initials(name) {
  const parts = String(name || '?')
    .split(/[\s._@-]+/)
    .filter(Boolean);
  return ((parts[0] || '?')[0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

/** Buttons declare their icon with data-icon; fills them in. */
export function fillIcons() {
  document.querySelectorAll('[data-icon]').forEach((el) => el.insertAdjacentHTML('afterbegin', icon(el.dataset.icon)));
}
