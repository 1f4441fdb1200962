// The admin page's editors: one form per kind of directory record (people, teams, queues,
// routing profiles), built from the record being edited, and read back into the record the
// directory API takes. The API checks every record (docs/openapi/routing-admin.yaml); the forms
// only turn text into its shape, so a value the API refuses comes back with the API's own words.

/** A form's input that cannot be turned into a record at all (the API never saw it). */
export class FormError extends Error {
  constructor(message, path) {
    super(message);
    this.code = 'CHECK_THE_FORM';
    this.path = path;
  }
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

// ---- text <-> values ----

/** `{billing: 5, support: 3}` as "billing:5, support:3". */
export const skillsText = (skills = {}) =>
  Object.entries(skills)
    .map(([name, level]) => `${name}:${level}`)
    .join(', ');

/** "billing:5, support:3" as `{billing: 5, support: 3}`; a level that is not a number is sent as is, for the API to name. */
export function parseSkills(text, path) {
  const skills = {};
  for (const token of text.split(/[,\s]+/).filter(Boolean)) {
    const match = /^([^:=]+)[:=](.*)$/.exec(token);
    if (!match) throw new FormError(`${path}: write each skill as name:level, e.g. billing:5 (not "${token}")`, path);
    skills[match[1]] = Number(match[2]);
  }
  return skills;
}

export const listText = (list = []) => list.join(', ');
export const parseList = (text) => text.split(/[,\s]+/).filter(Boolean);

/** A number field: empty leaves it out (the API's default applies). */
export const numberOrUndefined = (value) => (value.trim() === '' ? undefined : Number(value));

/** Weekly spans as lines: "Mon 09:00-17:00". */
export const weeklyText = (weekly = []) => weekly.map((span) => `${DAYS[span.day] ?? span.day} ${span.open}-${span.close}`).join('\n');

/** Lines "Mon 09:00-17:00" or "Mon-Fri 09:00-17:00" as weekly spans (one per day). */
export function parseWeekly(text) {
  const spans = [];
  for (const line of text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const match = /^([A-Za-z]{3})[a-z]*(?:\s*-\s*([A-Za-z]{3})[a-z]*)?\s+(\S+)\s*-\s*(\S+)$/.exec(line);
    const first = match && DAYS.findIndex((d) => d.toLowerCase() === match[1].toLowerCase());
    const last = match && (match[2] ? DAYS.findIndex((d) => d.toLowerCase() === match[2].toLowerCase()) : first);
    if (!match || first < 0 || last < 0) throw new FormError(`businessHours: write each line as "Mon 09:00-17:00" or "Mon-Fri 09:00-17:00" (not "${line}")`, 'businessHours');
    for (let day = first; ; day = (day + 1) % 7) {
      spans.push({ day, open: match[3], close: match[4] });
      if (day === last) break;
    }
  }
  return spans;
}

/** Business hours in a line of a table. */
export function hoursSummary(hours) {
  if (!hours) return 'Always open';
  const closed = hours.closedDates?.length ? `; closed ${hours.closedDates.length} date(s)` : '';
  return `${hours.timeZone}: ${weeklyText(hours.weekly).replaceAll('\n', ', ') || 'never'}${closed}`;
}

// ---- building forms ----

function element(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children);
  return el;
}

/** A labelled input; `path` is the record's field the API names when it refuses the value. */
function field(label, { name, value = '', type = 'text', path = name, hint, ...rest }) {
  const input =
    type === 'textarea'
      ? element('textarea', { name, rows: 3, spellcheck: 'false', dataset: { path, testid: `field-${name}` }, ...rest })
      : element('input', { name, type, spellcheck: 'false', dataset: { path, testid: `field-${name}` }, ...rest });
  input.value = value ?? '';
  return element('label', {}, [label, input, ...(hint ? [element('small', { text: hint })] : [])]);
}

function select(label, { name, value = '', options, path = name }) {
  const input = element('select', { name, dataset: { path, testid: `field-${name}` } }, [
    element('option', { value: '', text: '(none)' }),
    ...options.map((o) => element('option', { value: o.value, text: o.label })),
  ]);
  input.value = value ?? '';
  return element('label', {}, [label, input]);
}

function checks(legend, { name, options, selected = [], path = name, empty }) {
  const boxes = options.map((o) =>
    element('label', { class: 'check' }, [
      element('input', { type: 'checkbox', name, value: o.value, checked: selected.includes(o.value), dataset: { path, testid: `field-${name}-${o.value}` } }),
      o.label,
    ]),
  );
  return element('fieldset', { dataset: { path } }, [element('legend', { text: legend }), ...(boxes.length ? boxes : [element('span', { class: 'note', text: empty })])]);
}

const idField = (label, name, value) =>
  field(label, { name, value, required: true, pattern: '[A-Za-z0-9_\\-]{1,64}', readonly: value ? true : undefined, hint: value ? undefined : 'letters, digits, _ or -; it cannot change later' });

const named = (records, idKey) => records.map((r) => ({ value: r[idKey], label: r.name ? `${r.name} (${r[idKey]})` : r[idKey] }));

/** Each kind: its id field, how its form is built from a record (undefined: a new one), and how a record is read back. */
export const editors = {
  people: {
    idKey: 'personId',
    singular: 'person',
    build(person, dir) {
      return [
        idField('ID', 'personId', person?.personId),
        field('Name', { name: 'name', value: person?.name, required: true, maxlength: 128 }),
        checks('Roles', { name: 'roles', options: ['agent', 'supervisor', 'admin'].map((r) => ({ value: r, label: r })), selected: person?.roles ?? ['agent'] }),
        field('Skills', { name: 'skills', value: skillsText(person?.skills), placeholder: 'billing:5, support:3', hint: 'name:level, levels 1-10' }),
        select('Team', { name: 'teamId', value: person?.teamId, options: named(dir.teams, 'teamId') }),
        select('Routing profile', { name: 'profileId', value: person?.profileId, options: named(dir.profiles, 'profileId') }),
        element('p', { class: 'note', text: 'Every agent needs a routing profile; the capacity per channel (calls, chats) is the profile’s.' }),
      ];
    },
    read(form) {
      const f = new FormData(form);
      return {
        name: f.get('name'),
        roles: f.getAll('roles'),
        skills: parseSkills(f.get('skills'), 'skills'),
        teamId: f.get('teamId') || undefined,
        profileId: f.get('profileId') || undefined,
      };
    },
  },
  teams: {
    idKey: 'teamId',
    singular: 'team',
    build(team, dir) {
      const supervisors = dir.people.filter((p) => p.roles.includes('supervisor'));
      return [
        idField('ID', 'teamId', team?.teamId),
        field('Name', { name: 'name', value: team?.name, required: true, maxlength: 128 }),
        checks('Supervisors', { name: 'supervisorIds', options: named(supervisors, 'personId'), selected: team?.supervisorIds ?? [], empty: 'Nobody has the supervisor role yet.' }),
      ];
    },
    read(form) {
      const f = new FormData(form);
      return { name: f.get('name'), supervisorIds: f.getAll('supervisorIds') };
    },
  },
  queues: {
    idKey: 'queueId',
    singular: 'queue',
    build(queue, dir) {
      const others = dir.queues.filter((q) => q.queueId !== queue?.queueId);
      return [
        idField('ID', 'queueId', queue?.queueId),
        field('Name', { name: 'name', value: queue?.name, required: true, maxlength: 128 }),
        field('Priority', { name: 'priority', type: 'number', value: queue?.priority ?? 0, hint: 'lower is served first' }),
        field('Skills required', { name: 'requiredSkills', value: skillsText(queue?.requiredSkills), placeholder: 'billing:1', hint: 'name:minimum level' }),
        field('Service level (s)', { name: 'serviceLevelSeconds', type: 'number', value: queue?.serviceLevelSeconds ?? 20, hint: 'target: answered within' }),
        field('Offer timeout (s)', { name: 'offerTimeoutSeconds', type: 'number', value: queue?.offerTimeoutSeconds ?? 15, hint: 'then the next agent' }),
        field('Max wait (s)', { name: 'maxWaitSeconds', type: 'number', value: queue?.maxWaitSeconds, hint: 'then a callback is offered; empty: none' }),
        select('Overflow to', { name: 'overflowQueueId', path: 'overflow', value: queue?.overflow?.queueId, options: named(others, 'queueId') }),
        field('Overflow after (s)', { name: 'overflowAfterSeconds', path: 'overflow', type: 'number', value: queue?.overflow?.afterSeconds }),
        field('Context fields shown', { name: 'contextFields', value: listText(queue?.contextFields), placeholder: 'accountId, product', hint: 'of the app’s context; the rest is withheld' }),
        field('Time zone', { name: 'timeZone', path: 'businessHours', value: queue?.businessHours?.timeZone, placeholder: 'Europe/Berlin', hint: 'empty with no hours: always open' }),
        field('Opening hours', { name: 'weekly', path: 'businessHours', type: 'textarea', value: weeklyText(queue?.businessHours?.weekly), placeholder: 'Mon-Fri 09:00-17:00\nSat 10:00-14:00' }),
        field('Closed dates', { name: 'closedDates', path: 'businessHours', value: listText(queue?.businessHours?.closedDates), placeholder: '2026-12-25, 2026-12-26' }),
      ];
    },
    read(form) {
      const f = new FormData(form);
      const overflowQueue = f.get('overflowQueueId');
      const timeZone = f.get('timeZone').trim();
      const weekly = parseWeekly(f.get('weekly'));
      const closedDates = parseList(f.get('closedDates'));
      const contextFields = parseList(f.get('contextFields'));
      const hoursGiven = timeZone || weekly.length || closedDates.length;
      return {
        name: f.get('name'),
        priority: numberOrUndefined(f.get('priority')),
        requiredSkills: parseSkills(f.get('requiredSkills'), 'requiredSkills'),
        serviceLevelSeconds: numberOrUndefined(f.get('serviceLevelSeconds')),
        offerTimeoutSeconds: numberOrUndefined(f.get('offerTimeoutSeconds')),
        maxWaitSeconds: numberOrUndefined(f.get('maxWaitSeconds')),
        overflow: overflowQueue ? { queueId: overflowQueue, afterSeconds: numberOrUndefined(f.get('overflowAfterSeconds')) } : undefined,
        contextFields: contextFields.length ? contextFields : undefined,
        businessHours: hoursGiven ? { timeZone, weekly, ...(closedDates.length ? { closedDates } : {}) } : undefined,
      };
    },
  },
  profiles: {
    idKey: 'profileId',
    singular: 'routing profile',
    build(profile, dir) {
      const served = new Map((profile?.queues ?? []).map((q) => [q.queueId, q]));
      const rows = dir.queues.map((q, i) => {
        const entry = served.get(q.queueId);
        return element('div', { class: 'queue-row', dataset: { queue: q.queueId } }, [
          element('label', { class: 'check' }, [
            element('input', { type: 'checkbox', name: 'serves', value: q.queueId, checked: Boolean(entry), dataset: { testid: `field-serves-${q.queueId}` } }),
            q.name,
          ]),
          field('priority', { name: `priority.${q.queueId}`, path: 'queues', type: 'number', value: entry?.priority ?? i + 1 }),
          field('after (s)', { name: `delay.${q.queueId}`, path: 'queues', type: 'number', value: entry?.delaySeconds, placeholder: 'at once' }),
        ]);
      });
      return [
        idField('ID', 'profileId', profile?.profileId),
        field('Name', { name: 'name', value: profile?.name, required: true, maxlength: 128 }),
        element('fieldset', { dataset: { path: 'queues' } }, [
          element('legend', { text: 'Queues served (lower priority first; "after" holds a queue’s contacts back until they waited that long)' }),
          ...(rows.length ? rows : [element('span', { class: 'note', text: 'Add a queue first.' })]),
        ]),
        field('Calls at once', { name: 'call', path: 'capacity', type: 'number', value: profile?.capacity.call ?? 1, hint: 'voice and video, 0-5' }),
        field('Chats at once', { name: 'chat', path: 'capacity', type: 'number', value: profile?.capacity.chat ?? 0, hint: '0-10' }),
      ];
    },
    read(form) {
      const f = new FormData(form);
      return {
        name: f.get('name'),
        queues: f.getAll('serves').map((queueId) => ({ queueId, priority: numberOrUndefined(f.get(`priority.${queueId}`)), delaySeconds: numberOrUndefined(f.get(`delay.${queueId}`)) })),
        capacity: { call: numberOrUndefined(f.get('call')), chat: numberOrUndefined(f.get('chat')) },
      };
    },
  },
};

/**
 * The record fields an API refusal names ("the body is invalid: overflow.afterSeconds: …; name: …"),
 * by their first segment, to mark the inputs that hold them.
 */
export function refusedPaths(message) {
  const issues = message.replace(/^.*? is invalid: /, '').split('; ');
  return issues.map((issue) => issue.split(':')[0].split('.')[0].trim()).filter(Boolean);
}
