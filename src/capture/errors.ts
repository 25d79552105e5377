// Errors of the capture engine: each names the setting (annotation, env var, config key) and value.

export class CaptureError extends Error {
  constructor(
    readonly setting: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(`${setting}=${JSON.stringify(value)}: ${reason}`);
    this.name = 'CaptureError';
  }
}
