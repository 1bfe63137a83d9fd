import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';

/** Config values that end up in response headers are checked when the config is read. */
describe('config: values lb puts on the wire', () => {
  const config = (domain: string): string => `
listeners:
  - { name: web, port: 8080, pool: app }
pools:
  app:
    affinity:
      mode: cookie
      cookie: { name: lb_affinity, secrets: [ "a-long-enough-secret" ], domain: ${JSON.stringify(domain)} }
    backends: [ { id: n1, url: "http://127.0.0.1:9001" } ]
`;
  const parse = (text: string) => parseConfig(text, { file: 'lb.yaml', env: {}, baseDir: '/tmp' });

  it.each(['example.com', '.example.com', 'app-1.internal', 'svc_a.cluster.local'])('accepts the cookie domain %s', (domain) => {
    expect(parse(config(domain)).pools.app.affinity.cookie.domain).toBe(domain);
  });

  it.each(['exa mple.com', 'example.com\r\nSet-Cookie: x=1', 'example.com;', ''])('refuses the cookie domain %j with the key path and line', (domain) => {
    let err: unknown;
    try {
      parse(config(domain));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).toMatch(/pools\.app\.affinity\.cookie\.domain: expected a domain name like example\.com \(punycode for IDNs\), got .*\(line 8\)/);
  });
});
