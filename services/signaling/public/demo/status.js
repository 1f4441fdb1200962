// What a page says about its call: the connection state on <body data-state>, the texts bound
// with data-bind, and the error banner.

export function setState(state) {
  document.body.dataset.state = state;
  const labels = { idle: 'Not connected', connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', disconnected: 'Disconnected' };
  document.querySelectorAll('[data-bind="state"]').forEach((el) => (el.textContent = labels[state] || state));
}

export function bindText(name, text) {
  document.querySelectorAll(`[data-bind="${name}"]`).forEach((el) => (el.textContent = text));
}

export function showError(error) {
  const box = document.getElementById('error');
  if (!box) return;
  const text = (error?.code ? `${error.code}: ` : '') + (error?.message || String(error));
  box.querySelector('.text').textContent = text;
  box.hidden = false;
}

export function hideError() {
  const box = document.getElementById('error');
  if (box) box.hidden = true;
}
