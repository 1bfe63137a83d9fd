#!/usr/bin/env node
import cluster from 'node:cluster';
import { run } from './run.js';
import { serveWorker } from './serve.js';

// A cluster worker runs no command of its own: it serves what the primary sends it.
(cluster.isWorker ? serveWorker() : run(process.argv.slice(2))).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`lb: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
