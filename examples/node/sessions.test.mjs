// zipline-sessions in a Node test suite (node --test): started once on port 0, reset to the
// seed before each test, stopped at the end. ZIPLINE_SESSIONS_DIR: where it is checked out.
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const dir = process.env.ZIPLINE_SESSIONS_DIR;
const python = process.env.ZIPLINE_SESSIONS_PYTHON ?? join(dir, ".venv/bin/python");
const seed = readFileSync(join(dir, "examples/seed.json"), "utf8");
let server, base;

before(async () => {
  const work = mkdtempSync(join(tmpdir(), "zipline-sessions-"));
  const ready = join(work, "ready");
  server = spawn(python, ["serve.py"], { cwd: dir, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env,
    SESSIONS_BIND: "127.0.0.1:0", SESSIONS_READY_FILE: ready, SESSIONS_TEST_CONTROL: "true",
    SESSIONS_DATABASE_URL: `sqlite:///${join(work, "sessions.db")}`, SESSIONS_WORKERS: "2", SESSIONS_ACCESS_LOG: "off" } });
  while (!existsSync(ready)) { assert.equal(server.exitCode, null, "zipline-sessions exited"); await sleep(20); }
  base = readFileSync(ready, "utf8").trim();
});
after(() => server.kill());
beforeEach(() => fetch(`${base}/__test__/reset`, { method: "POST", headers: { "Content-Type": "application/json" }, body: seed }));

test("maya's live sessions, and an outage the client must survive", async () => {
  const list = await fetch(`${base}/api/user/sessions`, { headers: { Authorization: "tok-maya" } });
  assert.deepEqual((await list.json()).other.map((s) => s.id), ["sess_maya_laptop", "sess_maya_phone"]);
  await fetch(`${base}/__test__/faults`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ route: "GET /api/user/sessions", status: 503, times: 1 }) });
  assert.equal((await fetch(`${base}/api/user/sessions`, { headers: { Authorization: "tok-maya" } })).status, 503);
});
