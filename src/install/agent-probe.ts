// Whether a meshcni agent answers on the shim's socket: what `install` checks before chaining meshcni in, since
// a chained shim with no agent behind it fails every new captured pod's ADD.
import { connect } from 'node:net';

/**
 * Resolves true once something on socketPath answers an HTTP request (any status: the agent serves only
 * POST /v1/cni, so this GET gets a 404), false when nothing listens, the socket is missing, or no answer
 * comes within timeoutMs.
 */
export function agentAnswers(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(socketPath);
    let got = '';
    const done = (answer: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write('GET /v1/probe HTTP/1.1\r\nHost: meshcni\r\nConnection: close\r\n\r\n'));
    sock.on('data', (chunk: string) => {
      got += chunk;
      if (got.length >= 9) done(/^HTTP\/1\.[01] \d{3}/.test(got));
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(/^HTTP\/1\.[01] \d{3}/.test(got)));
  });
}
