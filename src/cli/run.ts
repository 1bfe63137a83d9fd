import { resolve } from 'node:path';
import { loadConfigFile } from '../config/load.js';
import { parseArgs, str, UsageError } from './args.js';
import { demo, serve } from './serve.js';
import { ADMIN_COMMANDS, runAdminCommand } from './admin-commands.js';
import { CliError } from './client.js';

const HELP = `lb — session-affinity load balancer

Usage: lb <command> [options]

Server:
  start [-c FILE]           run lb from a YAML config (default config/lb.yaml)
  demo                      three demo app servers + lb in front of them (config/demo.yaml)
  check-config FILE         validate a config file; exit 0, or 1 listing every error

Operations (talk to the admin API):
  backends [--json]         list backends: status, weight, sessions, WebSockets, in-flight
  status [--json]           pools and backends at a glance, with drain progress
  add ID URL [--pool P] [--weight W] [--check]
                            add a backend live (--check: probe its health first)
  drain ID [--wait] [--deadline 30m]
                            no new sessions on ID; --wait shows progress until drained
  enable ID                 back to service (cancels drain or maint)
  maint ID                  no traffic at all; its sessions are re-pinned
  remove ID [--force]       remove (refused while it has sessions, unless --force)
  weight ID W               set the weight for new sessions
  plan drain ID | plan add ID URL
                            dry run: sessions and hash keys that would move
  explain --cookie V | --key K --pool P
                            why a request goes where it goes
  broadcast METHOD PATH [--pool P] [--data BODY]
                            one request to every active backend of a pool
  reload                    re-read the config file and apply it live

Options:
  --admin URL               admin API (env LB_ADMIN_URL, default http://127.0.0.1:9090)
  --token TOKEN             bearer token (env LB_ADMIN_TOKEN)
  --json                    machine-readable output on read commands
  -h, --help                this help (also: lb <command> --help)

Exit status: 0 ok, 1 failed, 2 usage error.
`;

const COMMAND_HELP: Record<string, string> = {
  start: 'Usage: lb start [-c|--config FILE]\n\nRun lb from FILE (default config/lb.yaml). SIGTERM/SIGINT stop gracefully; SIGHUP reloads the config.\n',
  demo: 'Usage: lb demo [-c FILE]\n\nStart the three demo app servers of config/demo.yaml and lb in front of them.\n',
  'check-config': 'Usage: lb check-config FILE\n\nValidate FILE. Exit 0 when valid; else 1 and one line per error:\n  key.path: expected …, got … (line N)\n',
};

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  async start(argv) {
    const p = parseArgs(argv, { alias: { c: 'config' } });
    return serve(resolve(str(p, 'config') ?? 'config/lb.yaml'));
  },
  async demo(argv) {
    const p = parseArgs(argv, { alias: { c: 'config' } });
    const file = str(p, 'config');
    return demo(file ? resolve(file) : undefined);
  },
  async 'check-config'(argv) {
    const p = parseArgs(argv);
    const file = p.positional[0];
    if (!file) throw new UsageError('check-config needs a FILE');
    try {
      loadConfigFile(resolve(file));
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 1;
    }
    process.stdout.write(`${file}: ok\n`);
    return 0;
  },
};

/** Dispatch a command line; returns the exit status (0 ok, 1 failed, 2 usage). */
export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(HELP);
    return name ? 0 : 2;
  }
  const admin = ADMIN_COMMANDS[name];
  const command = COMMANDS[name] ?? (admin ? (argv: string[]) => runAdminCommand(name, argv) : undefined);
  if (!command) {
    process.stderr.write(`lb: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(COMMAND_HELP[name] ?? (admin ? `Usage: ${admin.usage}\n\nOptions: --admin URL, --token TOKEN, --json\n` : HELP));
    return 0;
  }
  try {
    return await command(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`lb ${name}: ${err.message}\n\n${COMMAND_HELP[name] ?? (admin ? `Usage: ${admin.usage}\n` : '')}`);
      return 2;
    }
    process.stderr.write(`lb ${name}: ${(err as Error).message}\n`);
    return err instanceof CliError || !(err instanceof UsageError) ? 1 : 2;
  }
}
