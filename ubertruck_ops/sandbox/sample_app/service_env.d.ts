// What the service uses of Node, declared here instead of pulling @types/node into every build.
declare const process: {
  env: Record<string, string | undefined>;
  pid: number;
  send?: (message: string) => void;
  on(event: string, listener: (...args: any[]) => void): void;
  exit(code?: number): never;
};
declare function require(name: string): any;
declare const console: { log(...args: unknown[]): void; error(...args: unknown[]): void };
declare function setTimeout(callback: () => void, ms: number): { unref(): void };
declare const Buffer: { byteLength(text: string): number };
