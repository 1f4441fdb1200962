/** What the org answers: a status, a JSON body, headers; errors in Salesforce's shape ("Status Codes and Error Responses"). */

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** The connection is cut once the request took effect (a fault on a Composite subrequest): the answer is lost. */
  resetConnection?: boolean;
}

/** `[{message, errorCode, fields}]`, the body of every REST API error. */
export const error = (status: number, errorCode: string, message: string, fields: string[] = []): Reply => ({ status, body: [{ message, errorCode, fields }] });
