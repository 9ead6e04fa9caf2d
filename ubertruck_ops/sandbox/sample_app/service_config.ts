// The service's configuration, from the environment the deploy gives every process (the guide's
// .env.production): refuse to start without what it cannot work without, naming it (never a value).
export interface Config {
  databaseUrl: string;
  jwtSecret: string;
  apiVersion: string;
}

const REQUIRED = ['DATABASE_URL', 'JWT_SECRET'];

export function loadConfig(env: Record<string, string | undefined>): Config {
  const missing = REQUIRED.filter((name) => !env[name]);
  if (missing.length) throw new Error(`missing configuration: ${missing.join(', ')}`);
  return { databaseUrl: env.DATABASE_URL as string, jwtSecret: env.JWT_SECRET as string,
           apiVersion: env.API_VERSION || 'v1' };
}
