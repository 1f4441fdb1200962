/**
 * The SOQL subset the Salesforce adapter sends, parsed the way Salesforce reads it ("SOQL and
 * SOSL Reference": SELECT, WHERE with `=` comparisons joined by AND, LIMIT; "Quoted String
 * Escape Sequences" for literals). Anything else is a MALFORMED_QUERY, as in Salesforce.
 */
export interface SoqlQuery {
  fields: string[];
  object: string;
  where: Array<{ field: string; value: string }>;
  limit: number | undefined;
}

export class SoqlError extends Error {}

type Token = { kind: 'word'; text: string } | { kind: 'string'; text: string } | { kind: 'symbol'; text: string };

const escapes: Record<string, string> = { n: '\n', r: '\r', t: '\t', b: '\b', f: '\f', '"': '"', "'": "'", '\\': '\\' };

function tokenize(soql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < soql.length) {
    const c = soql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (/[A-Za-z0-9_]/.test(c)) {
      const start = i;
      while (i < soql.length && /[A-Za-z0-9_.]/.test(soql[i]!)) i++;
      tokens.push({ kind: 'word', text: soql.slice(start, i) });
    } else if (c === "'") {
      let text = '';
      i++;
      for (;;) {
        if (i >= soql.length) throw new SoqlError('unterminated string literal');
        const d = soql[i]!;
        if (d === "'") {
          i++;
          break;
        }
        if (d === '\\') {
          const next = soql[i + 1];
          // "Any other character following a backslash is interpreted as an error."
          if (next === undefined || !(next in escapes)) throw new SoqlError('invalid escape sequence');
          text += escapes[next];
          i += 2;
          continue;
        }
        text += d;
        i++;
      }
      tokens.push({ kind: 'string', text });
    } else if (c === '=' || c === ',') {
      tokens.push({ kind: 'symbol', text: c });
      i++;
    } else {
      throw new SoqlError(`unexpected token: ${c}`);
    }
  }
  return tokens;
}

export function parseSoql(soql: string): SoqlQuery {
  const tokens = tokenize(soql);
  let at = 0;
  const peek = () => tokens[at];
  const keyword = (word: string) => {
    const token = tokens[at];
    if (token?.kind !== 'word' || token.text.toUpperCase() !== word) throw new SoqlError(`expecting ${word}`);
    at++;
  };
  const identifier = () => {
    const token = tokens[at];
    if (token?.kind !== 'word' || !/^[A-Za-z][A-Za-z0-9_]*$/.test(token.text)) throw new SoqlError('expecting an identifier');
    at++;
    return token.text;
  };
  keyword('SELECT');
  const fields = [identifier()];
  while (peek()?.kind === 'symbol' && peek()!.text === ',') {
    at++;
    fields.push(identifier());
  }
  keyword('FROM');
  const object = identifier();
  const where: SoqlQuery['where'] = [];
  if (peek()?.kind === 'word' && peek()!.text.toUpperCase() === 'WHERE') {
    at++;
    for (;;) {
      const field = identifier();
      const op = tokens[at++];
      if (op?.kind !== 'symbol' || op.text !== '=') throw new SoqlError('only = comparisons are supported');
      const value = tokens[at++];
      if (value?.kind !== 'string') throw new SoqlError('expecting a string literal');
      where.push({ field, value: value.text });
      if (peek()?.kind === 'word' && peek()!.text.toUpperCase() === 'AND') {
        at++;
        continue;
      }
      break;
    }
  }
  let limit: number | undefined;
  if (peek()?.kind === 'word' && peek()!.text.toUpperCase() === 'LIMIT') {
    at++;
    const value = tokens[at++];
    if (value?.kind !== 'word' || !/^\d+$/.test(value.text)) throw new SoqlError('expecting a number after LIMIT');
    limit = Number(value.text);
  }
  if (at !== tokens.length) throw new SoqlError('unexpected token after the query');
  return { fields, object, where, limit };
}
