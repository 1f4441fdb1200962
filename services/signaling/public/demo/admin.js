// The contact center's admin page (/admin): signs in with one of the tenant's API keys and
// manages the directory (people, teams, queues, routing profiles: routing's /v1/directory) and
// the tenant's API keys (crm-sync's /v1/api-keys). Where the two APIs are comes from the hash
// (#directoryApi=…&keysApi=…, as `make up` prints it) or the sign-in form; the secret only ever
// from the form.

import { AdminApi, ApiError, baseUrl, session } from './adminApi.js';
import { editors, FormError, hoursSummary, listText, refusedPaths, skillsText } from './adminForms.js';
import { hashParams } from './desk.js';
import { hideError, showError } from './status.js';

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

let api;
let directory = { people: [], teams: [], queues: [], profiles: [] };
let keys = [];

const errorText = (error) => `${error.code ? `${error.code}: ` : ''}${error.message || String(error)}`;

/** Shows an error in a form's own line (or hides it when `error` is undefined). */
function formError(line, error) {
  line.hidden = !error;
  line.textContent = error ? errorText(error) : '';
}

function cell(text, field) {
  const td = document.createElement('td');
  if (field) td.dataset.field = field;
  td.textContent = text ?? '';
  return td;
}

function button(text, testId, onClick, className = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.className = className;
  b.dataset.testid = testId;
  b.addEventListener('click', onClick);
  return b;
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : '');

// ---- signing in ----

/** The two APIs' defaults: the hash's, else this host on the ports `make up` uses. */
function defaultServices() {
  const params = hashParams();
  const here = `${location.protocol}//${location.hostname}`;
  return { directoryApi: params.get('directoryApi') || `${here}:8091`, keysApi: params.get('keysApi') || `${here}:8090` };
}

async function signIn(credentials) {
  const candidate = new AdminApi(credentials);
  // Both APIs must take the key: a failure names the one that did not.
  const [found] = await Promise.all([
    candidate.directory().catch((error) => {
      throw new ApiError(error.code, `the directory API (${credentials.directoryApi}): ${error.message}`);
    }),
    candidate.apiKeys().catch((error) => {
      throw new ApiError(error.code, `the API keys API (${credentials.keysApi}): ${error.message}`);
    }),
  ]);
  api = candidate;
  session.write(credentials);
  directory = found;
  document.body.dataset.session = 'signed-in';
  $('#sign-in').hidden = true;
  $('#console').hidden = false;
  $('#sign-out').hidden = false;
  const badge = $('#signed-in-as');
  badge.hidden = false;
  badge.textContent = `Signed in with ${credentials.apiKey}`;
  renderDirectory();
  await refreshKeys();
  showTab(sessionStorage.getItem('gateway.admin.tab') || 'people');
}

function signOut(reason) {
  api = undefined;
  session.clear();
  directory = { people: [], teams: [], queues: [], profiles: [] };
  keys = [];
  document.body.dataset.session = 'signed-out';
  $('#console').hidden = true;
  $('#sign-in').hidden = false;
  $('#sign-out').hidden = true;
  $('#signed-in-as').hidden = true;
  $('#new-secret').hidden = true;
  $('[data-field="secret"]', $('#new-secret')).textContent = '';
  $$('tbody').forEach((t) => t.replaceChildren());
  if (reason) formError($('[data-testid="sign-in-error"]'), reason);
}

/** A call whose refusal for credentials ends the session (a key revoked or rotated elsewhere). */
async function guarded(action) {
  try {
    return await action();
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED') signOut(new ApiError('UNAUTHENTICATED', 'the API key was refused (revoked, or its secret rotated): sign in again'));
    throw error;
  }
}

// ---- tabs ----

function showTab(name) {
  if (!$(`[data-panel="${name}"]`)) name = 'people';
  sessionStorage.setItem('gateway.admin.tab', name);
  $$('[data-panel]').forEach((panel) => (panel.hidden = panel.dataset.panel !== name));
  $$('[data-tab]').forEach((tab) => tab.setAttribute('aria-selected', String(tab.dataset.tab === name)));
}

// ---- the directory ----

const nameOf = (kind, id) => {
  const record = directory[kind].find((r) => r[editors[kind].idKey] === id);
  return record ? record.name : id;
};

const columns = {
  people: (p) => [
    cell(p.name, 'name'),
    cell(p.roles.join(', '), 'roles'),
    cell(skillsText(p.skills), 'skills'),
    cell(p.teamId ? nameOf('teams', p.teamId) : '', 'team'),
    cell(p.profileId ? nameOf('profiles', p.profileId) : '', 'profile'),
  ],
  teams: (t) => [
    cell(t.name, 'name'),
    cell(t.supervisorIds.map((id) => nameOf('people', id)).join(', '), 'supervisors'),
    cell(String(directory.people.filter((p) => p.teamId === t.teamId).length), 'members'),
  ],
  queues: (q) => [
    cell(q.name, 'name'),
    cell(String(q.priority), 'priority'),
    cell(skillsText(q.requiredSkills), 'skills'),
    cell(`${q.serviceLevelSeconds} s`, 'service-level'),
    cell(q.overflow ? `${nameOf('queues', q.overflow.queueId)} after ${q.overflow.afterSeconds} s` : '', 'overflow'),
    cell(q.maxWaitSeconds ? `${q.maxWaitSeconds} s` : '', 'max-wait'),
    cell(`${q.offerTimeoutSeconds} s`, 'offer-timeout'),
    cell(hoursSummary(q.businessHours), 'hours'),
    cell(listText(q.contextFields), 'context-fields'),
  ],
  profiles: (p) => [
    cell(p.name, 'name'),
    cell(p.queues.map((q) => `${nameOf('queues', q.queueId)} (${q.priority}${q.delaySeconds ? `, after ${q.delaySeconds} s` : ''})`).join(', '), 'queues'),
    cell(`${p.capacity.call} call(s), ${p.capacity.chat} chat(s)`, 'capacity'),
    cell(String(directory.people.filter((person) => person.profileId === p.profileId).length), 'agents'),
  ],
};

function renderDirectory() {
  for (const kind of Object.keys(editors)) {
    const { idKey } = editors[kind];
    const panel = $(`[data-panel="${kind}"]`);
    const rows = directory[kind].map((record) => {
      const id = record[idKey];
      const tr = document.createElement('tr');
      tr.dataset.id = id;
      const actions = document.createElement('td');
      actions.className = 'actions';
      actions.append(
        button('Edit', `edit-${kind}-${id}`, () => openEditor(kind, record)),
        button('Delete', `delete-${kind}-${id}`, () => removeRecord(kind, id), 'danger'),
      );
      tr.append(cell(id, 'id'), ...columns[kind](record), actions);
      return tr;
    });
    $('tbody', panel).replaceChildren(...rows);
    $('.empty', panel).hidden = rows.length > 0;
  }
}

async function reloadDirectory() {
  directory = await guarded(() => api.directory());
  renderDirectory();
}

function openEditor(kind, record) {
  const editor = editors[kind];
  const form = $(`[data-editor="${kind}"]`);
  const title = document.createElement('h3');
  title.textContent = record ? `Edit ${editor.singular} ${record[editor.idKey]}` : `New ${editor.singular}`;
  const error = document.createElement('p');
  error.className = 'form-error';
  error.setAttribute('role', 'alert');
  error.dataset.testid = `${kind}-error`;
  error.hidden = true;
  const save = document.createElement('button');
  save.className = 'primary';
  save.textContent = 'Save';
  save.dataset.testid = `save-${kind}`;
  const cancel = button('Cancel', `cancel-${kind}`, () => closeEditor(kind));
  const buttons = document.createElement('div');
  buttons.className = 'form-buttons';
  buttons.append(error, save, cancel);
  const fields = document.createElement('div');
  fields.className = 'fields';
  fields.append(...editor.build(record, directory));
  form.replaceChildren(title, fields, buttons);
  form.dataset.editing = record ? record[editor.idKey] : '';
  form.hidden = false;
  $('input:not([readonly])', form)?.focus();
}

function closeEditor(kind) {
  const form = $(`[data-editor="${kind}"]`);
  form.hidden = true;
  form.replaceChildren();
}

async function saveRecord(kind, form) {
  const editor = editors[kind];
  const error = $('.form-error', form);
  $$('[aria-invalid]', form).forEach((el) => el.removeAttribute('aria-invalid'));
  formError(error);
  const editing = form.dataset.editing;
  const id = editing || new FormData(form).get(editor.idKey).trim();
  try {
    if (!editing && directory[kind].some((r) => r[editor.idKey] === id)) throw new FormError(`a ${editor.singular} with the id ${id} exists: edit it instead`, editor.idKey);
    await guarded(() => api.putRecord(kind, id, editor.read(form)));
  } catch (refusal) {
    formError(error, refusal);
    // The fields the refusal names are marked where they are.
    const paths = refusal instanceof FormError ? [refusal.path] : refusedPaths(refusal.message || '');
    for (const path of paths) $$(`[data-path="${path}"]`, form).forEach((el) => el.setAttribute('aria-invalid', 'true'));
    return;
  }
  closeEditor(kind);
  await reloadDirectory().catch(showError);
}

async function removeRecord(kind, id) {
  if (!confirm(`Delete the ${editors[kind].singular} ${id}?`)) return;
  hideError();
  try {
    await guarded(() => api.removeRecord(kind, id));
  } catch (error) {
    // 409 INVALID_STATE names what still refers to it.
    showError(error);
    return;
  }
  await reloadDirectory().catch(showError);
}

// ---- API keys ----

async function refreshKeys() {
  keys = await guarded(() => api.apiKeys());
  const rows = keys.map((key) => {
    const tr = document.createElement('tr');
    tr.dataset.id = key.keyId;
    tr.dataset.status = key.status;
    const actions = document.createElement('td');
    actions.className = 'actions';
    if (key.status === 'active') {
      actions.append(
        button('Rotate', `rotate-${key.keyId}`, () => rotateKey(key.keyId)),
        button('Revoke', `revoke-${key.keyId}`, () => revokeKey(key.keyId), 'danger'),
      );
    }
    tr.append(
      cell(key.keyId, 'id'),
      cell(key.label, 'label'),
      cell(key.status + (key.keyId === api.apiKey ? ' (this page’s)' : ''), 'status'),
      cell(when(key.createdAtMs), 'created'),
      cell(when(key.rotatedAtMs), 'rotated'),
      cell(when(key.previousSecretValidUntilMs), 'previous-valid-until'),
      actions,
    );
    return tr;
  });
  const panel = $('[data-panel="api-keys"]');
  $('tbody', panel).replaceChildren(...rows);
  $('.empty', panel).hidden = rows.length > 0;
}

/** The one time a secret is shown; gone from the page when dismissed. */
function showSecret(made, note) {
  const box = $('#new-secret');
  $('[data-field="keyId"]', box).textContent = made.keyId;
  $('[data-field="secret"]', box).textContent = made.secret;
  $('[data-field="note"]', box).textContent = note;
  box.hidden = false;
}

function hideSecret() {
  const box = $('#new-secret');
  box.hidden = true;
  $('[data-field="secret"]', box).textContent = '';
}

async function keyAction(action, note) {
  const line = $('[data-testid="key-error"]');
  formError(line);
  hideSecret();
  try {
    const made = await guarded(action);
    if (made?.secret) showSecret(made, note(made));
  } catch (error) {
    formError(line, error);
  }
  await refreshKeys().catch((error) => formError(line, error));
}

function rotateKey(keyId) {
  const overlapSeconds = Number($('#overlap-seconds').value);
  return keyAction(
    async () => {
      const made = await api.rotateKey(keyId, overlapSeconds);
      // The page's own key: it goes on with the new secret (the old one ends with the overlap).
      if (keyId === api.apiKey) {
        api.credentials.apiSecret = made.secret;
        session.write(api.credentials);
      }
      return made;
    },
    (made) => (made.previousSecretValidUntilMs ? `The old secret is still taken until ${when(made.previousSecretValidUntilMs)}.` : 'The old secret is refused from now on.'),
  );
}

async function revokeKey(keyId) {
  if (!confirm(`Revoke ${keyId}? Everything that uses it is refused from now on.`)) return;
  const own = keyId === api.apiKey;
  await keyAction(
    () => api.revokeKey(keyId),
    () => '',
  );
  if (own) signOut(new ApiError('UNAUTHENTICATED', 'this page’s key was revoked: sign in with another'));
}

// ---- start ----

export function startAdmin() {
  const form = $('#sign-in-form');
  const stored = session.read();
  const services = stored ?? defaultServices();
  form.elements.directoryApi.value = services.directoryApi;
  form.elements.keysApi.value = services.keysApi;
  $$('#error .close').forEach((b) => (b.onclick = hideError));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const line = $('[data-testid="sign-in-error"]');
    formError(line);
    const submit = $('[data-testid="sign-in"]');
    submit.disabled = true;
    try {
      await signIn({
        apiKey: form.elements.apiKey.value.trim(),
        apiSecret: form.elements.apiSecret.value.trim(),
        directoryApi: baseUrl(form.elements.directoryApi.value),
        keysApi: baseUrl(form.elements.keysApi.value),
      });
      form.elements.apiSecret.value = '';
    } catch (error) {
      formError(line, error);
    } finally {
      submit.disabled = false;
    }
  });
  $('#sign-out').addEventListener('click', () => signOut());
  $$('[data-tab]').forEach((tab) => tab.addEventListener('click', () => showTab(tab.dataset.tab)));
  $$('[data-add]').forEach((add) => add.addEventListener('click', () => openEditor(add.dataset.add)));
  $$('[data-editor]').forEach((editor) =>
    editor.addEventListener('submit', (event) => {
      event.preventDefault();
      saveRecord(editor.dataset.editor, editor);
    }),
  );
  $('#create-key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const label = event.target.elements.label;
    keyAction(
      () => api.createKey(label.value.trim()),
      () => '',
    ).then(() => (label.value = ''));
  });
  $('[data-action="done"]', $('#new-secret')).addEventListener('click', hideSecret);
  $('[data-action="copy"]', $('#new-secret')).addEventListener('click', () => navigator.clipboard?.writeText($('[data-field="secret"]', $('#new-secret')).textContent).catch(showError));

  // Back in a tab that was signed in: the same session, checked again.
  if (stored) signIn(stored).catch((error) => signOut(error));
}

startAdmin();
